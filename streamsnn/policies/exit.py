"""Exit policies: decide per stream and per slice whether the prediction is final.

A policy sees the prediction just made and returns the exit reason, or ``None`` to keep going.
The runtime makes a prediction final on its own at the end of a sample (``end_of_sample``).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from streamsnn.prediction import Prediction


class ExitPolicy(Protocol):
    name: str

    def decide(self, pred: Prediction) -> str | None:
        """The exit reason if ``pred`` is final, else ``None``."""
        ...


class FixedSteps:
    """Final after ``steps`` slices: the fixed-T baseline."""

    name = "fixed"

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def decide(self, pred: Prediction) -> str | None:
        return "max_steps" if pred.step >= self.steps else None


def normalised_entropy_score(probs: list[float]) -> float:
    """1 − H(p)/log K: 1 for a one-hot distribution, 0 for a uniform one."""
    h = -sum(p * math.log(p) for p in probs if p > 0)
    return 1.0 - h / math.log(len(probs))


class Confidence:
    """SEENN-I: final as soon as the score of the accumulated output exceeds ``threshold``
    (strictly); otherwise at ``max_steps`` if given. Score: the prediction's confidence (max
    softmax probability) or 1 − normalised entropy."""

    name = "confidence"

    def __init__(self, threshold: float, max_steps: int | None = None, score: str = "max_softmax") -> None:
        if score not in ("max_softmax", "entropy"):
            raise ValueError(f"unknown confidence score '{score}'; use max_softmax or entropy")
        self.threshold, self.max_steps, self.score = threshold, max_steps, score

    def decide(self, pred: Prediction) -> str | None:
        value = pred.confidence if self.score == "max_softmax" else normalised_entropy_score(pred.probs)
        if value > self.threshold:
            return "confident"
        if self.max_steps is not None and pred.step >= self.max_steps:
            return "max_steps"
        return None


EXIT_POLICIES: dict[str, type] = {"fixed": FixedSteps, "confidence": Confidence}


def make_exit_policy(name: str, **options: Any) -> ExitPolicy:
    """The exit policy called ``name`` with its options (as in ``pipeline.yaml``)."""
    if name not in EXIT_POLICIES:
        raise KeyError(f"unknown exit policy '{name}'; known: {', '.join(EXIT_POLICIES)}")
    return EXIT_POLICIES[name](**options)
