import itertools

import numpy as np
import pytest
import torch
from torch import nn

from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.convert import ConversionError, convert_qcfs, fold_batchnorm
from streamsnn.snn.models import digits_cnn
from streamsnn.snn.quant import QCFS
from streamsnn.sources.digits import digit_frames, digits_split


def test_batchnorm_folding_is_exact():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    bn.eval()
    x = torch.randn(4, 3, 10, 10, dtype=torch.float64)
    fused = fold_batchnorm(conv.double(), bn.double())
    torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-12, atol=1e-12)


class Clip(nn.Module):
    def __init__(self, theta: float) -> None:
        super().__init__()
        self.theta = theta

    def forward(self, x):
        return x.clamp(0, self.theta)


def test_qcfs_snn_converges_to_the_quantised_ann():
    """Mean SNN output over T steps against the quantised ANN (shipped frame model, direct input).

    The error shrinks as T grows up to T = L (the QCFS design point, where the SNN reproduces the
    quantised ANN best) and the SNN's decisions agree with the ANN; beyond L the mean output keeps
    converging, at rate 1/T, to the same network with unquantised clip(x, 0, θ) activations, so
    the remaining gap to the quantised ANN is the ANN's own quantisation step.
    """
    model = load_checkpoint("builtin:digits_frames")
    images, _, _ = digits_split("val")
    x = torch.from_numpy(digit_frames(images[:64], 16))[:, None].double()
    ann = model.ann.double()
    clip = nn.Sequential(*[Clip(float(m.theta.detach())) if isinstance(m, QCFS) else m for m in ann])
    levels = next(m.levels for m in ann if isinstance(m, QCFS))
    snn = model.snn().double()
    with torch.no_grad():
        quantised, unquantised = ann(x), clip(x)
        _, outs, _ = snn.run(x.expand(256, *x.shape), snn.init_state(len(x), torch.float64))
    mean = {t: outs[t - 1] / t for t in (1, 2, 4, 8, 16, 32, 64, 128, 256)}
    err_q = {t: float((m - quantised).abs().mean()) for t, m in mean.items()}
    err_c = {t: float((m - unquantised).abs().mean()) for t, m in mean.items()}
    up_to_l = [err_q[t] for t in (1, 2, 4) if t <= levels]
    assert all(b < a for a, b in itertools.pairwise(up_to_l)), err_q
    assert err_q[levels] < 0.2 * err_q[1], err_q
    long = [err_c[t] for t in (8, 16, 32, 64, 128, 256)]
    assert all(b < 0.75 * a for a, b in itertools.pairwise(long)), err_c
    assert err_c[256] < 0.01 * err_c[1], err_c
    gap = float((quantised - unquantised).abs().mean())
    assert abs(err_q[256] - gap) < 0.05 * gap + err_c[256]
    for t in (levels, 16, 256):
        assert float((mean[t].argmax(1) == quantised.argmax(1)).double().mean()) >= 0.98


def test_max_pooling_is_refused_with_a_reason():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ConversionError, match=r"layer 1 \(MaxPool2d\).*average pooling"):
        convert_qcfs(net, (1, 4, 4))


def test_unconvertible_layers_are_named():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ConversionError, match=r"layer 1 \(ReLU\)"):
        convert_qcfs(net, (1, 4, 4))
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ConversionError, match=r"layer 1 \(Sigmoid\)"):
        convert_qcfs(net, (1, 4, 4))


def test_last_layer_accumulates_and_spikes_are_binary():
    torch.manual_seed(1)
    ann = digits_cnn(in_channels=1, size=16).eval()
    snn = convert_qcfs(ann, (1, 16, 16))
    x = torch.rand(2, 1, 16, 16)
    state = snn.init_state(2)
    layer_in = x
    for layer in snn.layers:  # run one step by hand and look at every spiking layer's output
        if hasattr(layer, "init_state"):
            s, _ = layer(layer_in, layer.init_state(layer_in.shape, x.dtype, x.device))
            assert set(np.unique(s.numpy())) <= {0.0, 1.0}
            layer_in = s
        else:
            layer_in = layer(layer_in)
    state, _ = snn.step(x, state)
    state2, _ = snn.step(x, state)
    assert not torch.equal(state.out, state2.out)  # output accumulates step after step
    assert isinstance(snn.layers[-1], nn.Linear)
