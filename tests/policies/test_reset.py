"""Reset policies: their declared hypotheses, schedules and what a final does (the rule that
applies them is tested in tests/runtime/test_live.py)."""

import pytest

from streamsnn.policies import RESET_POLICIES
from streamsnn.policies.reset import (
    DecayResetConfig,
    OnExitResetConfig,
    PeriodicResetConfig,
    StaggeredResetConfig,
)
from streamsnn.prediction import Prediction


def pred(step: int) -> Prediction:
    return Prediction("s", 0, step, 0, 0, 0, 0.5, [0.5, 0.5])


def test_each_policy_declares_its_hypotheses_schedule_and_what_a_final_does():
    on_exit = RESET_POLICIES.build(OnExitResetConfig())
    declared = (on_exit.hypotheses, on_exit.period, on_exit.after_final, on_exit.decay)
    assert declared == (1, None, "reset", None)
    assert on_exit.closes(pred(100)) is None and on_exit.first_reset(0) is None
    periodic = RESET_POLICIES.build(PeriodicResetConfig(every_steps=15))
    assert periodic.closes(pred(14)) is None and periodic.closes(pred(15)) == "period"
    assert periodic.after_final == "reset"
    decay = RESET_POLICIES.build(DecayResetConfig(factor=0.8))
    assert (decay.decay, decay.after_final, decay.hypotheses) == (0.8, "restart", 1)


def test_staggered_hypotheses_reset_every_period_evenly_apart():
    r = RESET_POLICIES.build(StaggeredResetConfig(hypotheses=3, every_steps=15, min_steps=5, repeat_steps=10))
    assert (r.hypotheses, r.period, r.min_steps, r.repeat_steps, r.after_final) == (3, 15, 5, 10, "continue")
    assert [r.first_reset(h) for h in range(3)] == [15, 20, 25]  # all start together, then 5 apart
    four = RESET_POLICIES.build(StaggeredResetConfig(hypotheses=4, every_steps=10, min_steps=2))
    assert [four.first_reset(h) for h in range(4)] == [10, 12, 15, 18]  # 10 + round(h · 10 / 4)


def test_staggered_options_that_cannot_work_are_refused():
    with pytest.raises(ValueError, match=r"hypotheses \(16\) must be at most every_steps \(15\)"):
        StaggeredResetConfig(hypotheses=16, every_steps=15)
    with pytest.raises(ValueError, match=r"min_steps \(8\) must be at most every_steps \(6\)"):
        StaggeredResetConfig(every_steps=6, min_steps=8, hypotheses=2)
