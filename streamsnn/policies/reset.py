"""Reset policies: decide when a stream's membrane state is cleared.

Segmented sources (dataset replay, files of samples) always start every sample from a fresh
state; a reset policy decides what happens within a stream.
"""

from __future__ import annotations

from typing import Any, Protocol

from streamsnn.prediction import Prediction


class ResetPolicy(Protocol):
    name: str

    def after(self, pred: Prediction) -> bool:
        """True if the stream's state is to be cleared after ``pred``."""
        ...


class ResetOnExit:
    """Clear the state after every final prediction, so the next slice starts a new decision."""

    name = "on_exit"

    def after(self, pred: Prediction) -> bool:
        return pred.final


RESET_POLICIES: dict[str, type] = {"on_exit": ResetOnExit}


def make_reset_policy(name: str, **options: Any) -> ResetPolicy:
    """The reset policy called ``name``."""
    if name not in RESET_POLICIES:
        raise KeyError(f"unknown reset policy '{name}'; known: {', '.join(RESET_POLICIES)}")
    return RESET_POLICIES[name](**options)
