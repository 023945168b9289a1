import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.convert import ConversionError, activation_thresholds, convert, fold_batchnorm
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


def outputs_per_step(snn, x, steps):
    """Accumulated output after every step (T×B×K) for constant input ``x``, stepping one
    slice at a time (memory stays at one batch)."""
    state, outs = snn.init_state(len(x), x.dtype), []
    with torch.no_grad():
        for _ in range(steps):
            state, _ = snn.step(x, state)
            outs.append(state.out)
    return torch.stack(outs)


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
    outs = outputs_per_step(snn, x, 256)
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
        convert(net, (1, 4, 4))


def test_unconvertible_layers_are_named():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ConversionError, match=r"layer 1 \(ReLU\): ReLU needs data-based normalisation"):
        convert(net, (1, 4, 4))
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(16, 2))
    with pytest.raises(ConversionError, match=r"layer 1 \(Sigmoid\)"):
        convert(net, (1, 4, 4))


def test_last_layer_accumulates_and_spikes_are_binary():
    torch.manual_seed(1)
    ann = digits_cnn(in_channels=1, size=16).eval()
    snn = convert(ann, (1, 16, 16))
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


def test_data_norm_conversion_of_a_relu_net_approaches_the_ann(relu_digits):
    train_images, _, _ = digits_split("train")
    images, labels, _ = digits_split("val")
    calibration = torch.from_numpy(digit_frames(train_images[:300], 16))[:, None]
    x = torch.from_numpy(digit_frames(images, 16))[:, None]
    with torch.no_grad():
        ann_acc = float((relu_digits.ann(x).argmax(1).numpy() == labels).mean())
    assert ann_acc > 0.95
    acc = {}
    for v0 in (0.0, 0.5):
        snn = convert(
            relu_digits.ann, (1, 16, 16), "data_norm", v0=v0, calibration=calibration, percentile=99.9
        )
        outs = outputs_per_step(snn, x, 256)
        acc[v0] = {t: float((outs[t - 1].argmax(1).numpy() == labels).mean()) for t in (4, 16, 64, 256)}
        assert acc[v0][256] >= ann_acc - 0.01, acc
        assert acc[v0][4] < acc[v0][256], acc
    assert acc[0.5][4] > acc[0.0][4]  # high-entropy V0 = θ/2 is faster early on


def test_data_norm_thresholds_are_activation_percentiles(relu_digits):
    images, _, _ = digits_split("train")
    cal = torch.from_numpy(digit_frames(images[:200], 16))[:, None]
    top = activation_thresholds(relu_digits.ann, cal, 100)
    robust = activation_thresholds(relu_digits.ann, cal, 99.9)
    assert top.keys() == robust.keys() and len(top) == 2
    assert all(0 < robust[k] <= top[k] for k in top)
    with pytest.raises(ConversionError, match="needs calibration inputs"):
        convert(relu_digits.ann, (1, 16, 16), "data_norm")


def test_percentiles_follow_numpys_linear_rule():
    from streamsnn.snn.convert import percentile_of

    gen = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 1000):
        values = torch.randn(n, generator=gen, dtype=torch.float64)
        for q in (0, 12.5, 50, 99, 99.9, 100):
            assert percentile_of(values, q) == float(np.percentile(values.numpy(), q))


def test_qffs_conversion_of_the_quantised_net_matches_it_at_z_max_steps():
    """One QCFS layer → QFFS: after Z_max steps of constant input the spike count times θ/L is
    exactly the quantised activation."""
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(20, 30), QCFS(3, 2.0), nn.Linear(30, 5)).double()
    snn = convert(ann, (20,), "qffs").double()
    x = torch.randn(64, 20, dtype=torch.float64) * 2
    state = snn.init_state(64, torch.float64)
    linear, neuron = snn.layers[0], snn.layers[1]
    ns = neuron.init_state((64, 30), torch.float64, torch.device("cpu"))
    total = torch.zeros(64, 30, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(3):
            z, ns = neuron(linear(x), ns)
            total += z
        torch.testing.assert_close(total * 2.0 / 3, ann[1](ann[0](x)), rtol=0, atol=1e-12)
        _, outs, _ = snn.run(x.expand(3, *x.shape), state)
        torch.testing.assert_close(outs[-1] / 3, ann(x), rtol=0, atol=1e-9)


def test_residual_network_conversion_converges_to_its_clip_network():
    """ResNet (identity and conv shortcuts): the SNN's mean output converges to the same network
    with clip(x, 0, θ) activations, the limit of rate coding."""
    import copy

    from streamsnn.snn.models import build_model

    torch.manual_seed(0)
    ann = build_model({"name": "resnet20", "size": 16, "theta": 1.0}).double()
    for m in ann.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.2, 0.5)
            m.bias.data.uniform_(0, 0.3)
    ann.eval()
    clip = copy.deepcopy(ann)
    for module in list(clip.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, QCFS):
                setattr(module, child_name, Clip(float(child.theta.detach())))
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        target = clip(x)
    snn = convert(ann, (3, 16, 16)).double()
    assert sum(type(m).__name__ == "Merge" for m in snn.layers) == 6
    outs = outputs_per_step(snn, x, 256)
    err = {t: float((outs[t - 1] / t - target).abs().mean() / target.abs().mean()) for t in (4, 16, 64, 256)}
    assert err[4] > err[16] > err[64] > err[256], err
    assert err[256] < 0.01, err


def random_bn(ann: nn.Module, seed: int) -> nn.Module:
    """BatchNorm statistics and affine parameters away from the identity, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in ann.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) * 0.6)
    return ann.eval()


def hand_stepped(ann: nn.Sequential, thresholds: dict[int, float], x: torch.Tensor, steps: int):
    """The reference: ``ann``'s own layers (BatchNorm unfolded), each activation at position i
    replaced by IF neurons of threshold θ_i whose spikes carry amplitude θ_i, V0 = θ_i/2
    (``mem += x; spike = (mem ≥ θ)·θ; mem −= spike``); accumulated output after every step."""
    mem: dict[int, torch.Tensor] = {}
    out, outs = 0.0, []
    with torch.no_grad():
        for _ in range(steps):
            h = x
            for i, m in enumerate(ann):
                if i in thresholds:
                    theta = thresholds[i]
                    mem[i] = mem.get(i, torch.full_like(h, theta / 2)) + h
                    h = (mem[i] >= theta).to(h.dtype) * theta
                    mem[i] = mem[i] - h
                else:
                    h = m(h)
            out = out + h
            outs.append(out)
    return torch.stack(outs)


def test_float64_conversion_equals_the_qcfs_ann_at_t_equal_l():
    """One QCFS layer, constant input, V0 = θ/2: after T = L steps the SNN's mean output is the
    QCFS ANN's output. Converted in float64 it matches the float64 ANN to 1e-12; converted in
    float32 (θ moved into float32 weights) and run in float64 it does not."""
    torch.manual_seed(3)
    ann = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.BatchNorm2d(6), QCFS(4, 1.7), nn.Flatten(), nn.Linear(150, 5)
    )
    ann = random_bn(ann, 3)  # float32 parameters, θ = float32(1.7)
    x = torch.rand(64, 2, 5, 5, dtype=torch.float64) * 2
    with torch.no_grad():
        reference = copy.deepcopy(ann).double()(x)
    exact = convert(ann, (2, 5, 5), "qcfs", dtype=torch.float64)
    assert {n.threshold.dtype for n in exact.neurons} == {torch.float64}
    error = (outputs_per_step(exact, x, 4)[-1] / 4 - reference).abs().max()
    assert error < 1e-12
    rounded = convert(ann, (2, 5, 5), "qcfs").double()
    assert (outputs_per_step(rounded, x, 4)[-1] / 4 - reference).abs().max() > 1e-9


@pytest.mark.parametrize("method", ["qcfs", "data_norm"])
def test_float64_conversion_equals_a_hand_stepped_reference(method):
    """Two spiking layers and average pooling: the float64 conversion (BatchNorm folded, θ moved
    into the next weights, unit spikes) equals the float64 ANN stepped by hand with spikes of
    amplitude θ at every step to 1e-12. For data_norm θ is a float64 percentile, which a float32
    threshold would round."""
    torch.manual_seed(4)
    act = (lambda: QCFS(4, 1.3)) if method == "qcfs" else nn.ReLU
    ann = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1),
        nn.BatchNorm2d(6),
        act(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        act(),
        nn.Flatten(),
        nn.Linear(8 * 3 * 3, 5),
    )
    ann = random_bn(ann, 4)
    x = torch.rand(32, 2, 6, 6, dtype=torch.float64) * 2
    ann64 = copy.deepcopy(ann).double()
    if method == "qcfs":
        thresholds = {i: float(m.threshold.detach()) for i, m in enumerate(ann64) if isinstance(m, QCFS)}
    else:
        thresholds = activation_thresholds(ann64, x, 99.9)
    reference = hand_stepped(ann64, thresholds, x, 12)
    exact = convert(ann, (2, 6, 6), method, calibration=x, dtype=torch.float64)
    assert [float(n.threshold) for n in exact.neurons] == list(thresholds.values())
    assert (outputs_per_step(exact, x, 12) - reference).abs().max() < 1e-12
    rounded = convert(ann, (2, 6, 6), method, calibration=x.float()).double()
    assert (outputs_per_step(rounded, x, 12) - reference).abs().max() > 1e-9


def test_a_float64_pipeline_converts_in_float64(root):
    """``model.dtype: float64``: the runtime's network is the float64 conversion, thresholds
    included, not a float32 conversion widened."""
    cfg = load_pipeline(root / "pipelines" / "digits_frames.yaml", ["model.dtype=float64", "source.limit=2"])
    net = build_pipeline(cfg).operator.net
    expected = load_checkpoint("builtin:digits_frames").snn(dtype=torch.float64)
    assert {n.threshold.dtype for n in net.neurons} == {torch.float64}
    for ours, theirs in zip(net.state_dict().values(), expected.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs)
