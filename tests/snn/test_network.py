import torch

from streamsnn.snn.convert import convert, fold_spiking
from streamsnn.snn.models import build_model


def nets():
    torch.manual_seed(0)
    resnet = build_model({"name": "resnet8", "in_channels": 2, "size": 12, "theta": 1.0}).eval()
    vggsnn = build_model({"name": "vggsnn", "size": 16}).eval()
    qffs = build_model({"name": "digits_cnn", "size": 16, "levels": 3}).eval()
    return [
        (convert(resnet, (2, 12, 12)), (2, 12, 12)),  # residual: Fork / Merge, IF
        (fold_spiking(vggsnn, (2, 16, 16)), (2, 16, 16)),  # LIF, hard reset
        (convert(qffs, (2, 16, 16), method="qffs"), (2, 16, 16)),  # negative spikes
    ]


def test_in_place_step_and_chunked_run_equal_the_differentiable_path():
    """``step_`` (one step in place, spikes written into freed buffers) and ``run_`` (T folded
    into the batch) give exactly what ``run_per_step`` (pure, used for training) gives."""
    for net, shape in nets():
        g = torch.Generator().manual_seed(1)
        xs = torch.rand(6, 3, *shape, generator=g) * 2
        with torch.no_grad():
            layers, per_step, ref_spikes = net.run_per_step(xs, net.init_state(3))
        ref = torch.cumsum(per_step, 0)  # accumulated outputs; exact to rounding only
        state = net.init_state(3)
        for t in range(6):
            spikes = net.step_(xs[t].clone(), state)
            assert torch.equal(spikes, ref_spikes[t]), (type(net.layers[-1]), t)
            torch.testing.assert_close(state.out, ref[t], rtol=1e-6, atol=1e-6)
        for a, b in zip(state.layers, layers, strict=True):
            for fa, fb in zip(a, b, strict=True):
                assert torch.equal(fa, fb)
        chunk_state = net.init_state(3)
        outs, spikes = net.run_(xs, chunk_state)
        assert torch.equal(spikes, ref_spikes)
        # the same additions in the same order, of outputs that the last layer's matrix product
        # may round differently for T·B rows than for B (the kernel's blocking depends on them)
        torch.testing.assert_close(chunk_state.out, state.out, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(outs, ref, rtol=1e-6, atol=1e-6)
        assert spikes.sum() > 0


def test_pure_step_leaves_its_input_state_alone():
    net, shape = nets()[0]
    state = net.init_state(2)
    before = net.clone_state(state)
    new, _ = net.step(torch.rand(2, *shape), state)
    for a, b in zip(state.layers, before.layers, strict=True):
        assert torch.equal(a.v, b.v)
    assert not torch.equal(new.layers[0].v, state.layers[0].v)
