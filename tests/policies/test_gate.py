"""Gates: no decision on empty or noise-only input; onsets after a quiet spell."""

import pytest

from streamsnn.policies import GATES, EventRateGateConfig, NoGateConfig

SLICE_US = 20_000


def feed(gate, state, counts):
    """Slices of ``counts`` events; the onsets they mark."""
    return [gate.update(state, n, SLICE_US) for n in counts]


def test_the_event_rate_gate_refuses_empty_and_noise_windows():
    gate = GATES.build(EventRateGateConfig(min_events_per_ms=2.6, over_steps=2))
    state = gate.new_state()
    feed(gate, state, [0] * 10)  # the sensor sends nothing
    assert not gate.open(state, 5) and not gate.open(state, 1)
    feed(gate, state, [12, 9, 14, 11, 13])  # background noise: ~0.6 events per ms
    assert not gate.open(state, 5)
    feed(gate, state, [40, 460])  # a digit: a quiet first slice of a saccade, then full activity
    assert gate.open(state, 5)  # the mean of the last two slices: 12.5 events per ms
    feed(gate, state, [11, 12])  # the digit has left: two noise slices close it again
    assert not gate.open(state, 5)


def test_the_rate_is_the_mean_over_the_decisions_recent_slices():
    gate = GATES.build(EventRateGateConfig(min_events_per_ms=3.0, over_steps=3))
    state = gate.new_state()
    feed(gate, state, [0, 0, 200])  # 10 events per ms in the newest slice only
    assert gate.open(state, 1)  # a decision resting on that slice alone
    assert gate.open(state, 3)  # (0 + 0 + 10) / 3 = 3.33 events per ms
    feed(gate, state, [50])  # the window keeps the last three slices: 0, 10, 2.5 per ms
    assert gate.open(state, 5) and not gate.open(state, 1)


def test_an_onset_is_activity_after_a_quiet_spell():
    gate = GATES.build(EventRateGateConfig(min_events_per_ms=2.6, quiet_steps=3))
    state = gate.new_state()
    assert feed(gate, state, [400, 400]) == [False, False]  # the stream starts busy: no onset
    assert feed(gate, state, [10, 10, 400]) == [False, False, False]  # two quiet slices are not a spell
    assert feed(gate, state, [10, 10, 10, 400, 400]) == [False, False, False, True, False]
    assert feed(gate, state, [0] * 50 + [52]) == [False] * 50 + [True]  # 2.6 events per ms exactly


def test_without_a_gate_every_decision_may_be_final():
    gate = GATES.build(NoGateConfig())
    state = gate.new_state()
    assert feed(gate, state, [0] * 5 + [400]) == [False] * 6
    assert gate.open(state, 5) and not gate.needs_events


def test_gate_options_are_checked():
    with pytest.raises(ValueError, match="min_events_per_ms"):
        EventRateGateConfig()
    with pytest.raises(ValueError, match="greater than 0"):
        EventRateGateConfig(min_events_per_ms=1.0, over_steps=0)
