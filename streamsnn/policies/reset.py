"""Reset policies: decide when a live stream's state is cleared.

Segmented sources (dataset replay, files of samples) always start every sample from a fresh
state; a reset policy decides what happens within an unsegmented (live) stream, so a continuous
camera keeps producing fresh decisions. A live stream keeps ``hypotheses`` states (operator
slots), each started afresh at its own times, all stepped on every slice (``runtime/live.py``
applies the rule):

- ``on_exit``: one state, cleared after every final decision.
- ``periodic``: also close a decision that is still open after ``every_steps`` slices
  (reason ``period``) and clear the state, so a scene that never gets confident still yields a
  decision per period.
- ``decay``: never clear; after every slice the state decays towards the fresh state by
  ``factor`` (membranes towards V0, the accumulated output towards 0), so old evidence fades and
  each decision weighs recent slices most.
- ``staggered``: several states, each cleared every ``every_steps`` slices at staggered times
  (``every_steps / hypotheses`` apart after the first period), so one of them always started near
  the onset of what is in view. A state decides only once it has seen ``min_steps`` slices; the
  most confident decides for the stream, a final keeps its state going (clearing it mid-object
  would decide again on a fragment), and a class decided less than ``repeat_steps`` slices ago is
  not decided again.

Every policy also restarts all of a stream's states at an onset (the gate's: activity after a
quiet spell), so a decision starts with what just came into view.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from streamsnn.options import Options, Registry
from streamsnn.prediction import Prediction

AfterFinal = Literal["reset", "restart", "continue"]


class ResetPolicy:
    """When a live stream's states are cleared. Declared per policy:

    - ``hypotheses``: states per stream; ``period``: slices between the scheduled resets of each
      state (None: none scheduled), staggered by ``period / hypotheses`` from a fresh start;
    - ``min_steps``: a state younger than this (slices since its reset) does not decide;
      ``repeat_steps``: a final of the class decided less than this many slices ago is dropped;
    - ``after_final``: what a final does to the state that made it: ``reset`` (fresh state, a new
      decision), ``restart`` (state kept, a new decision counted from step 1) or ``continue``
      (state and count kept);
    - ``decay``: per-slice decay of every state towards fresh, or None.
    """

    hypotheses: int = 1
    period: int | None = None
    min_steps: int = 1
    repeat_steps: int = 0
    after_final: ClassVar[AfterFinal] = "reset"
    decay: float | None = None

    def closes(self, pred: Prediction) -> str | None:
        """A reason to make an open decision final now (besides the exit policy), or None."""
        return None

    def first_reset(self, hypothesis: int) -> int | None:
        """Slices from a fresh start (stream start, onset), at which every hypothesis starts, to
        ``hypothesis``'s first scheduled reset: ``period + round(h · period / hypotheses)``, so
        all begin with what came into view and are staggered from then on; later resets follow
        every ``period`` slices."""
        if self.period is None:
            return None
        return self.period + round(hypothesis * self.period / self.hypotheses)


RESET_POLICIES: Registry[ResetPolicy] = Registry("reset policy")


class OnExitResetConfig(Options):
    """Clear the state after every final decision."""

    type: Literal["on_exit"] = "on_exit"


@RESET_POLICIES.register(OnExitResetConfig)
class ResetOnExit(ResetPolicy):
    """Clear the state after every final prediction, so the next slice starts a new decision."""

    def __init__(self, config: OnExitResetConfig) -> None:
        pass


class PeriodicResetConfig(Options):
    """Live streams: also close and reset a decision still open after a number of slices."""

    type: Literal["periodic"] = "periodic"
    every_steps: PositiveInt = Field(description="close a decision still open after this many slices")


@RESET_POLICIES.register(PeriodicResetConfig)
class PeriodicReset(ResetPolicy):
    """Reset on exit, and close and reset any decision still open after ``every_steps`` slices."""

    def __init__(self, config: PeriodicResetConfig) -> None:
        self.every_steps = config.every_steps

    def closes(self, pred: Prediction) -> str | None:
        return "period" if pred.step >= self.every_steps else None


class DecayResetConfig(Options):
    """Live streams: no hard reset; the state decays towards fresh after every slice."""

    type: Literal["decay"] = "decay"
    factor: float = Field(
        0.9, gt=0, lt=1, description="per slice, the state is multiplied by this (towards fresh)"
    )


@RESET_POLICIES.register(DecayResetConfig)
class DecayingReset(ResetPolicy):
    """No hard reset: the state decays by ``factor`` per slice towards the fresh state; a final
    starts the next decision's step count."""

    after_final = "restart"

    def __init__(self, config: DecayResetConfig) -> None:
        self.decay = config.factor


class StaggeredResetConfig(Options):
    """Live streams: several states per stream, each cleared periodically at staggered times, so
    one always started near an onset; the most confident decides."""

    type: Literal["staggered"] = "staggered"
    hypotheses: PositiveInt = Field(3, description="states per stream (operator slots each)")
    every_steps: PositiveInt = Field(15, description="slices between the resets of each state")
    min_steps: PositiveInt = Field(5, description="a state decides only after this many slices")
    repeat_steps: int = Field(
        15, ge=0, description="a class decided less than this many slices ago is not decided again"
    )

    @model_validator(mode="after")
    def _staggered(self) -> StaggeredResetConfig:
        for key in ("hypotheses", "min_steps"):
            if getattr(self, key) > self.every_steps:
                raise ValueError(
                    f"{key} ({getattr(self, key)}) must be at most every_steps ({self.every_steps})"
                )
        return self


@RESET_POLICIES.register(StaggeredResetConfig)
class StaggeredReset(ResetPolicy):
    """``hypotheses`` states per stream, each reset every ``every_steps`` slices, the resets
    ``every_steps / hypotheses`` apart; finals keep the deciding state going."""

    after_final = "continue"

    def __init__(self, config: StaggeredResetConfig) -> None:
        self.hypotheses, self.period = config.hypotheses, config.every_steps
        self.min_steps, self.repeat_steps = config.min_steps, config.repeat_steps
