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

from typing import Any, Protocol

from streamsnn.prediction import Prediction


class ResetPolicy(Protocol):
    name: str
    decay: float | None  # per-slice decay of the state towards fresh, or None

    def closes(self, pred: Prediction) -> str | None:
        """A reason to make an open decision final now (besides the exit policy), or None."""
        ...

    def after(self, pred: Prediction) -> bool:
        """True if the stream's state is to be cleared after the final ``pred``."""
        ...


class ResetOnExit:
    """Clear the state after every final prediction, so the next slice starts a new decision."""

    name = "on_exit"
    decay = None

    def closes(self, pred: Prediction) -> str | None:
        return None

    def after(self, pred: Prediction) -> bool:
        return pred.final


class PeriodicReset(ResetOnExit):
    """Reset on exit, and close and reset any decision still open after ``every_steps`` slices."""

    name = "periodic"

    def __init__(self, every_steps: int) -> None:
        if every_steps < 1:
            raise ValueError(f"periodic reset needs every_steps >= 1, got {every_steps}")
        self.every_steps = every_steps

    def closes(self, pred: Prediction) -> str | None:
        return "period" if pred.step >= self.every_steps else None


class DecayingReset:
    """No hard reset: the state decays by ``factor`` per slice towards the fresh state."""

    name = "decay"

    def __init__(self, factor: float = 0.9) -> None:
        if not 0 < factor < 1:
            raise ValueError(f"decay factor must be in (0, 1), got {factor}")
        self.decay = factor

    def closes(self, pred: Prediction) -> str | None:
        return None

    def after(self, pred: Prediction) -> bool:
        return False


RESET_POLICIES: dict[str, type] = {"on_exit": ResetOnExit, "periodic": PeriodicReset, "decay": DecayingReset}


def make_reset_policy(name: str, **options: Any) -> ResetPolicy:
    """The reset policy called ``name``."""
    if name not in RESET_POLICIES:
        raise KeyError(f"unknown reset policy '{name}'; known: {', '.join(RESET_POLICIES)}")
    return RESET_POLICIES[name](**options)
