"""Reset policies: decide when a stream's membrane state is cleared.

Segmented sources (dataset replay, files of samples) always start every sample from a fresh
state; a reset policy decides what happens within an unsegmented (live) stream, so a continuous
camera keeps producing fresh decisions:

- ``on_exit``: clear the state after every final decision.
- ``periodic``: also close a decision that is still open after ``every_steps`` slices
  (reason ``period``) and clear the state, so a scene that never gets confident still yields a
  decision per period.
- ``decay``: never clear; after every slice the state decays towards the fresh state by
  ``factor`` (membranes towards V0, the accumulated output towards 0), so old evidence fades and
  each decision weighs recent slices most.
"""

from __future__ import annotations

from typing import Literal, Protocol

from pydantic import Field, PositiveInt

from streamsnn.options import Options, Registry
from streamsnn.prediction import Prediction


class ResetPolicy(Protocol):
    decay: float | None  # per-slice decay of the state towards fresh, or None

    def closes(self, pred: Prediction) -> str | None:
        """A reason to make an open decision final now (besides the exit policy), or None."""
        ...

    def after(self, pred: Prediction) -> bool:
        """True if the stream's state is to be cleared after the final ``pred``."""
        ...


RESET_POLICIES: Registry[ResetPolicy] = Registry("reset policy")


class OnExitResetConfig(Options):
    """Clear the state after every final decision."""

    type: Literal["on_exit"] = "on_exit"


@RESET_POLICIES.register(OnExitResetConfig)
class ResetOnExit:
    """Clear the state after every final prediction, so the next slice starts a new decision."""

    decay = None

    def __init__(self, config: OnExitResetConfig) -> None:
        pass

    def closes(self, pred: Prediction) -> str | None:
        return None

    def after(self, pred: Prediction) -> bool:
        return pred.final


class PeriodicResetConfig(Options):
    """Live streams: also close and reset a decision still open after a number of slices."""

    type: Literal["periodic"] = "periodic"
    every_steps: PositiveInt = Field(description="close a decision still open after this many slices")


@RESET_POLICIES.register(PeriodicResetConfig)
class PeriodicReset(ResetOnExit):
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
class DecayingReset:
    """No hard reset: the state decays by ``factor`` per slice towards the fresh state."""

    def __init__(self, config: DecayResetConfig) -> None:
        self.decay = config.factor

    def closes(self, pred: Prediction) -> str | None:
        return None

    def after(self, pred: Prediction) -> bool:
        return False
