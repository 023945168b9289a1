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


def test_a_leaky_integrator_last_layer_is_read_out_as_its_current_membrane():
    """Ending in a neuron that does not spike (NIR's LI), the read-out is that layer's membrane
    after the latest step, not a sum; its values are not counted as spikes. Networks ending in a
    synapse layer keep the accumulating read-out."""
    from torch import nn

    from streamsnn.snn.network import Fork, Merge, SpikingNetwork
    from streamsnn.snn.neurons import LeakyNeuron

    torch.manual_seed(2)
    layers = [
        nn.Conv2d(2, 3, 3, padding=1),
        LeakyNeuron(0.9, 1.0, 0.0, threshold=0.5),
        Fork("r"),
        nn.Conv2d(3, 3, 3, padding=1),
        Merge("r", nn.Identity()),
        LeakyNeuron(0.8, 1.0, 0.0, threshold=0.5, reset="subtract"),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5),
        LeakyNeuron(0.5, 1.0, 0.0, fires=False),
    ]
    net = SpikingNetwork(layers, (2, 4, 4)).eval()
    assert net.readout == "current" and all(n.readout == "sum" for n, _ in nets())
    xs = torch.rand(7, 2, 2, 4, 4) * 2
    with torch.no_grad():
        _, per_step, ref_spikes = net.run_per_step(xs, net.init_state(2))
    state = net.init_state(2)
    for t in range(7):
        spikes = net.step_(xs[t].clone(), state)
        assert torch.equal(state.out, state.layers[-1].v)  # the membrane itself, not a sum
        torch.testing.assert_close(state.out, per_step[t], rtol=1e-6, atol=1e-6)
        assert torch.equal(spikes, ref_spikes[t])
    outs, spikes = net.run_(xs, net.init_state(2))
    torch.testing.assert_close(outs, per_step, rtol=1e-6, atol=1e-6)
    assert torch.equal(spikes, ref_spikes) and ref_spikes.sum() > 0
    hidden = sum(int(torch.tensor(s).prod()) for s in net.neuron_shapes[:2])
    assert ref_spikes.max() <= hidden  # the integrator's membrane is not counted as spikes
