"""Exit policies: decide per stream and per slice whether the prediction is final.

A policy sees the prediction just made and returns the exit reason, or ``None`` to keep going.
The runtime makes a prediction final on its own at the end of a sample (``end_of_sample``).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from streamsnn.policies.calibration import load_calibration
from streamsnn.policies.policy_net import PolicyNetExit
from streamsnn.prediction import Prediction, softmax


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


class DynamicConfidence:
    """Dynamic Confidence (Li & Furber): confidence ``max softmax(O_t / (α·τ))`` of the
    accumulated output O_t, with α (T for QCFS, 2^b − 1 for QFFS) and the temperature τ and
    threshold chosen by ``streamsnn calibrate``; final when the confidence exceeds the threshold."""

    name = "dynamic_confidence"

    def __init__(
        self,
        calibration: str | None = None,
        threshold: float | None = None,
        alpha: float | None = None,
        temperature: float | None = None,
        max_steps: int | None = None,
    ) -> None:
        if calibration:
            cal = load_calibration(calibration)
            threshold = cal.threshold if threshold is None else threshold
            alpha = cal.alpha if alpha is None else alpha
            temperature = cal.temperature if temperature is None else temperature
            max_steps = cal.steps if max_steps is None else max_steps
        if threshold is None or alpha is None:
            raise ValueError("dynamic_confidence needs a calibration file or both threshold and alpha")
        self.threshold, self.max_steps = float(threshold), max_steps
        self.alpha, self.temperature = float(alpha), float(temperature or 1.0)

    @staticmethod
    def confidence_of(output: list[float], alpha: float, temperature: float = 1.0) -> float:
        """The confidence compared with the threshold: ``max softmax(O_t / (α·τ))`` of the
        accumulated output O_t (K values). ``streamsnn calibrate`` scans thresholds over it."""
        return max(softmax(output, alpha * temperature))

    def confidence(self, pred: Prediction) -> float:
        assert pred.output is not None, "dynamic_confidence reads the accumulated output"
        return self.confidence_of(pred.output, self.alpha, self.temperature)

    def decide(self, pred: Prediction) -> str | None:
        if self.confidence(pred) > self.threshold:
            return "confident"
        if self.max_steps is not None and pred.step >= self.max_steps:
            return "max_steps"
        return None


class Deadline:
    """Final once the sensor time waited or the wall time computed reaches its budget (ms), or
    at ``max_steps``: the best-so-far prediction at the deadline."""

    name = "deadline"

    def __init__(
        self, input_ms: float | None = None, compute_ms: float | None = None, max_steps: int | None = None
    ):
        if input_ms is None and compute_ms is None and max_steps is None:
            raise ValueError("deadline needs input_ms, compute_ms or max_steps")
        self.input_ms, self.compute_ms, self.max_steps = input_ms, compute_ms, max_steps

    def decide(self, pred: Prediction) -> str | None:
        if self.input_ms is not None and pred.input_latency_ms >= self.input_ms:
            return "input_deadline"
        if self.compute_ms is not None and pred.compute_latency_ms >= self.compute_ms:
            return "compute_deadline"
        if self.max_steps is not None and pred.step >= self.max_steps:
            return "max_steps"
        return None


class Oracle:
    """Upper bound of any exit policy: final at the first correct prediction (samples never
    correct run to the end). Needs labels, so it is refused on live sources."""

    name = "oracle"
    needs_labels = True

    def __init__(self, max_steps: int | None = None) -> None:
        self.max_steps = max_steps

    def decide(self, pred: Prediction) -> str | None:
        if pred.label is None:
            raise ValueError("the oracle policy needs labels; this stream has none")
        if pred.cls == pred.label:
            return "correct"
        if self.max_steps is not None and pred.step >= self.max_steps:
            return "max_steps"
        return None


EXIT_POLICIES: dict[str, type] = {
    "fixed": FixedSteps,
    "confidence": Confidence,
    "dynamic_confidence": DynamicConfidence,
    "deadline": Deadline,
    "oracle": Oracle,
    "policy_net": PolicyNetExit,
}


def make_exit_policy(name: str, **options: Any) -> ExitPolicy:
    """The exit policy called ``name`` with its options (as in ``pipeline.yaml``)."""
    if name not in EXIT_POLICIES:
        raise KeyError(f"unknown exit policy '{name}'; known: {', '.join(EXIT_POLICIES)}")
    return EXIT_POLICIES[name](**options)
