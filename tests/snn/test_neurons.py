import torch

from streamsnn.snn.neurons import (
    CurrentNeuron,
    IFNeuron,
    IFState,
    LeakyNeuron,
    LIFNeuron,
    QFFSNeuron,
    if_soft_reset_step,
)


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


def qcfs(x, theta, levels):
    return theta * torch.floor(torch.clamp(x / theta, 0, 1) * levels + 0.5) / levels


def test_qffs_reproduces_the_quantised_activation_within_z_max_steps():
    theta, z_max = 1.5, 3
    neuron = QFFSNeuron(theta, v0=0.5, z_max=z_max)
    x = torch.linspace(-1, 3, 401, dtype=torch.float64)
    state = neuron.init_state(x.shape, torch.float64, torch.device("cpu"))
    total = torch.zeros_like(x)
    for _ in range(z_max):
        z, state = neuron(x, state)
        total += z
    assert torch.equal(total * theta / z_max, qcfs(x, theta, z_max))  # exact, every input
    assert torch.equal(state.count, total)
    for _ in range(20):  # the budget holds however long the input stays
        z, state = neuron(x, state)
    assert state.count.max() <= z_max and state.count.min() >= 0


def test_negative_spikes_correct_overshoot():
    neuron = QFFSNeuron(1.0, v0=0.5, z_max=3)
    state = neuron.init_state((1,), torch.float64, torch.device("cpu"))
    seq = [1.0, -0.8, 0.0]  # an early burst, then input that takes most of it back
    zs = []
    for x in seq:
        z, state = neuron(torch.tensor([x], dtype=torch.float64), state)
        zs.append(float(z))
    assert zs == [1.0, -1.0, 0.0]
    assert float(state.count) == 0 == float(qcfs(torch.tensor(sum(seq)), 1.0 * 3, 3) / 1.0)
    plain = IFNeuron(1.0, v0=0.5)  # without negative spikes the premature spike stays
    s = plain.init_state((1,), torch.float64, torch.device("cpu"))
    count = 0.0
    for x in seq:
        z, s = plain(torch.tensor([x], dtype=torch.float64), s)
        count += float(z)
    assert count == 1.0


def test_lif_leaks_resets_hard_and_has_a_surrogate_gradient():
    neuron = LIFNeuron(threshold=1.0, decay=0.5)
    state = neuron.init_state((3,), torch.float32, torch.device("cpu"))
    x = torch.tensor([0.6, 0.6, 1.2], requires_grad=True)
    z1, state = neuron(x, state)
    z2, state = neuron(x, state)
    assert z1.tolist() == [0.0, 0.0, 1.0]  # 0.6 < 1
    assert z2.tolist() == [0.0, 0.0, 1.0]  # 0.6·0.5 + 0.6 = 0.9 < 1; hard reset: 0 + 1.2 fires again
    assert torch.allclose(state.v, torch.tensor([0.9, 0.9, 0.0]))
    z2.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_per_channel_threshold_and_v0():
    neuron = IFNeuron(torch.tensor([1.0, 2.0]).reshape(2, 1, 1), v0=torch.tensor([0.0, 0.5]).reshape(2, 1, 1))
    state = neuron.init_state((1, 2, 3, 3), torch.float32, torch.device("cpu"))
    assert torch.equal(state.v[0, 0], torch.zeros(3, 3)) and torch.equal(state.v[0, 1], torch.ones(3, 3))
    z, _ = neuron(torch.full((1, 2, 3, 3), 1.0), state)
    assert z[0, 0].sum() == 9 and z[0, 1].sum() == 9  # 0 + 1 ≥ 1; 1 + 1 ≥ 2


def test_in_place_inference_steps_equal_the_pure_steps_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    neurons = [
        IFNeuron(torch.rand(4, 1, 1, generator=g) + 0.5, 0.5),  # per-channel threshold
        IFNeuron(1.3, 0.5),
        LIFNeuron(1.0, 0.5),
        LIFNeuron(0.8, 0.7),
        QFFSNeuron(1.2, 0.5, 3),
    ]
    for dtype in (torch.float32, torch.float64):
        for neuron in neurons:
            neuron = neuron.to(dtype)
            pure = neuron.init_state((3, 4, 5, 5), dtype, torch.device("cpu"))
            in_place = neuron.init_state((3, 4, 5, 5), dtype, torch.device("cpu"))
            for t in range(25):
                x = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64).to(dtype)
                z_pure, pure = neuron(x, pure)
                z = neuron.step_(x.clone(), in_place, out=None if t % 2 else x)  # even t: into x
                assert torch.equal(z, z_pure), (neuron, dtype, t)
                for a, b in zip(pure, in_place, strict=True):
                    assert torch.equal(a, b), (neuron, dtype, t)


def both_steps(neuron, xs, dtype=torch.float64):
    """The spikes of the pure step and of the in-place step for the inputs ``xs`` (one a step)."""
    pure = neuron.init_state((1,), dtype, torch.device("cpu"))
    in_place = neuron.init_state((1,), dtype, torch.device("cpu"))
    out_pure, out_in_place = [], []
    for x in xs:
        x = torch.tensor([x], dtype=dtype)
        z, pure = neuron(x, pure)
        out_pure.append(float(z))
        out_in_place.append(float(neuron.step_(x.clone(), in_place)))
    assert out_pure == out_in_place
    return out_pure


def test_threshold_ties():
    """A membrane exactly at the threshold: IF and QFFS fire (v ≥ θ), LIF does not (v > θ); QFFS
    takes a spike back only below zero (v < 0) and never beyond its budget."""
    assert both_steps(IFNeuron(1.5, v0=0.0), [1.5, 0.0]) == [1.0, 0.0]
    assert both_steps(IFNeuron(1.5, v0=0.5), [0.75]) == [1.0]  # θ/2 + θ/2 = θ
    qffs = QFFSNeuron(1.5, v0=0.0, z_max=1)
    assert both_steps(qffs, [1.5, 0.0, -1e-9]) == [1.0, 0.0, -1.0]  # v = 0 keeps the spike
    assert both_steps(qffs, [1.5, 1.5]) == [1.0, 0.0]  # v = θ again, but Z = Z_max
    assert both_steps(LIFNeuron(1.0, decay=0.5), [1.0, 0.5, 0.5 + 1e-9]) == [
        0.0,
        0.0,
        1.0,
    ]  # v: 1, 1, 1 + 1e-9
    assert both_steps(LIFNeuron(1.0, decay=0.5), [1.0], torch.float32) == [0.0]


def test_thresholds_and_v0_keep_the_dtype_they_are_built_with():
    theta = 1 / 3  # not a float32 number
    neuron = IFNeuron(theta, v0=0.3, dtype=torch.float64)
    assert neuron.threshold.dtype == torch.float64 and float(neuron.threshold) == theta
    v = neuron.init_state((2,), torch.float64, torch.device("cpu")).v
    assert torch.equal(v, torch.full((2,), 0.3 * theta, dtype=torch.float64))
    assert QFFSNeuron(theta, 0.5, 3, dtype=torch.float64).threshold.dtype == torch.float64
    assert float(IFNeuron(theta).threshold) != theta  # float32 by default


def nir_neurons(g):
    """The NIR neurons, per-neuron factors (4×5×5) or scalars, both resets, firing or not."""
    shape = (4, 5, 5)

    def rand(lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)

    return [
        LeakyNeuron(rand(0.5, 1), rand(0.5, 1.5), rand(-0.1, 0.1), rand(0.5, 1.5), rand(-0.2, 0.2), "value"),
        LeakyNeuron(0.9, 1.0, 0.0, 1.0, 0.0, "subtract"),
        LeakyNeuron(rand(0.5, 1), 0.3, 0.0, fires=False),  # LI
        CurrentNeuron(rand(0.5, 1), rand(0.5, 2), rand(0.5, 1), 1.0, 0.05, rand(0.5, 1.5), 0.1, "value"),
        CurrentNeuron(0.8, 1.0, 0.9, 1.0, 0.0, 1.0, 0.0, "subtract"),
        CurrentNeuron(0.8, 1.0, 0.9, 0.5, fires=False),  # CubaLI
    ]


def test_nir_neurons_in_place_steps_equal_the_pure_steps_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        for neuron in nir_neurons(g):
            neuron = neuron.to(dtype)
            pure = neuron.init_state((3, 4, 5, 5), dtype, torch.device("cpu"))
            in_place = neuron.init_state((3, 4, 5, 5), dtype, torch.device("cpu"))
            fired = 0.0
            for t in range(25):
                x = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64).to(dtype)
                z_pure, pure = neuron(x, pure)
                z = neuron.step_(x.clone(), in_place, out=None if t % 2 else x)  # even t: into x
                assert torch.equal(z, z_pure), (neuron, dtype, t)
                for a, b in zip(pure, in_place, strict=True):
                    assert torch.equal(a, b), (neuron, dtype, t)
                fired += float(z.sum()) if neuron.spiking else 0.0
            assert not neuron.spiking or fired > 0, neuron


def test_nir_neuron_dynamics_reset_and_integrator_output():
    """v ← decay·v + gain·x + leak; fires at v > θ (NIR's rule: a tie does not fire); reset to
    v_reset or by subtraction; a leaky integrator outputs its membrane and never resets."""
    to_value = LeakyNeuron(0.5, 2.0, 0.25, threshold=1.0, v_reset=-0.25, reset="value", dtype=torch.float64)
    assert both_steps(to_value, [0.375, 0.25, 0.0]) == [0.0, 1.0, 0.0]  # v: 1 (a tie), 1.25 → −0.25, 0.125
    subtract = LeakyNeuron(1.0, 1.0, 0.0, threshold=1.0, reset="subtract", dtype=torch.float64)
    state = subtract.init_state((1,), torch.float64, torch.device("cpu"))
    z, state = subtract(torch.tensor([1.75], dtype=torch.float64), state)
    assert float(z) == 1.0 and float(state.v) == 0.75
    z, state = to_value(
        torch.tensor([1.0], dtype=torch.float64), to_value.init_state((1,), torch.float64, "cpu")
    )
    assert float(z) == 1.0 and float(state.v) == -0.25  # 2.25 > 1 → v_reset
    li = LeakyNeuron(0.5, 1.0, 0.0, fires=False, dtype=torch.float64)
    out, state = li(torch.tensor([4.0], dtype=torch.float64), li.init_state((1,), torch.float64, "cpu"))
    out, state = li(torch.tensor([0.0], dtype=torch.float64), state)
    assert float(out) == 2.0 == float(state.v)
    cuba = CurrentNeuron(0.5, 1.0, 1.0, 1.0, 0.0, threshold=10.0, dtype=torch.float64)
    s = cuba.init_state((1,), torch.float64, "cpu")
    for _ in range(2):
        _, s = cuba(torch.tensor([2.0], dtype=torch.float64), s)
    assert float(s.i) == 3.0 and float(s.v) == 5.0  # i: 2, 3; v: 2, 5 (the new current each step)
