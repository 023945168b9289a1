import torch

from streamsnn.snn.neurons import IFNeuron, IFState, if_soft_reset_step


def test_soft_reset_keeps_the_remainder():
    spikes, state = if_soft_reset_step(
        torch.tensor([0.7, 1.6, 0.2]), IFState(torch.tensor([0.5, 0.5, 0.5])), 1.0
    )
    assert spikes.tolist() == [1.0, 1.0, 0.0]
    assert torch.allclose(state.v, torch.tensor([0.2, 1.1, 0.7]))


def test_rate_of_if_neuron_approximates_clipped_input():
    neuron = IFNeuron(threshold=2.0, v0=0.5)
    x = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    state = neuron.init_state((6,), torch.float64, torch.device("cpu"))
    assert torch.allclose(state.v, torch.full((6,), 1.0, dtype=torch.float64))
    total = torch.zeros(6, dtype=torch.float64)
    for _ in range(200):
        s, state = neuron(x.double(), state)
        total += s
    rate = total / 200 * 2.0
    assert torch.allclose(rate, x.clamp(0, 2).double(), atol=0.011)


def test_step_is_pure():
    v = torch.tensor([0.9])
    before = v.clone()
    if_soft_reset_step(torch.tensor([0.5]), IFState(v), 1.0)
    assert torch.equal(v, before)
