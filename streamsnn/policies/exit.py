"""Exit policies: decide per stream and per slice whether the prediction is final.

A policy sees the prediction just made and returns the exit reason, or ``None`` to keep going.
The runtime makes a prediction final on its own at the end of a sample (``end_of_sample``). Each
policy is registered by name with its options in ``EXIT_POLICIES``.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from streamsnn.options import Options, Registry
from streamsnn.policies.calibration import load_calibration
from streamsnn.prediction import Prediction, softmax


class ExitPolicy:
    """Decides whether a prediction is final. Capabilities (class attributes): ``needs_labels``,
    it reads the label (so it is refused on live or unlabelled sources); ``needs_input``, it reads
    the slice's input tensor (which the runtime then passes on ``pred.input``)."""

    needs_labels: ClassVar[bool] = False
    needs_input: ClassVar[bool] = False
    threshold: float | None = None  # the confidence it decides above, if it has one (shown live)

    def decide(self, pred: Prediction) -> str | None:
        """The exit reason if ``pred`` is final, else ``None``."""
        raise NotImplementedError


EXIT_POLICIES: Registry[ExitPolicy] = Registry("exit policy")

_MAX_STEPS = "final at the latest after this many slices (null: only at the end of the sample)"


class FixedExitConfig(Options):
    """Final after a fixed number of slices (or at the end of the sample): the fixed-T baseline."""

    type: Literal["fixed"] = "fixed"
    steps: PositiveInt = Field(description="slices per decision")


@EXIT_POLICIES.register(FixedExitConfig)
class FixedSteps(ExitPolicy):
    """Final after ``steps`` slices."""

    def __init__(self, config: FixedExitConfig) -> None:
        self.steps = config.steps

    def decide(self, pred: Prediction) -> str | None:
        return "max_steps" if pred.step >= self.steps else None


def normalised_entropy_score(probs: list[float]) -> float:
    """1 − H(p)/log K: 1 for a one-hot distribution, 0 for a uniform one."""
    h = -sum(p * math.log(p) for p in probs if p > 0)
    return 1.0 - h / math.log(len(probs))


class ConfidenceExitConfig(Options):
    """SEENN-I: final as soon as the confidence of the accumulated output exceeds a threshold."""

    type: Literal["confidence"] = "confidence"
    threshold: float = Field(0.9, gt=0.0, le=1.0, description="final when the score is strictly above this")
    max_steps: PositiveInt | None = Field(None, description=_MAX_STEPS)
    score: Literal["max_softmax", "entropy"] = Field(
        "max_softmax", description="max softmax probability, or 1 − normalised entropy"
    )


@EXIT_POLICIES.register(ConfidenceExitConfig)
class Confidence(ExitPolicy):
    """SEENN-I: final as soon as the score of the accumulated output exceeds ``threshold``
    (strictly); otherwise at ``max_steps`` if given. Score: the prediction's confidence (max
    softmax probability) or 1 − normalised entropy."""

    def __init__(self, config: ConfidenceExitConfig) -> None:
        self.threshold, self.max_steps, self.score = config.threshold, config.max_steps, config.score

    def decide(self, pred: Prediction) -> str | None:
        value = pred.confidence if self.score == "max_softmax" else normalised_entropy_score(pred.probs)
        if value > self.threshold:
            return "confident"
        if self.max_steps is not None and pred.step >= self.max_steps:
            return "max_steps"
        return None


class DynamicConfidenceExitConfig(Options):
    """Dynamic Confidence: final when ``max softmax(O_t / (α·τ)) > threshold``; the values come
    from a calibration file of ``streamsnn calibrate``, and values given here override the file's."""

    type: Literal["dynamic_confidence"] = "dynamic_confidence"
    calibration: str | None = Field(None, description="the calibration file (JSON of `streamsnn calibrate`)")
    threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="final when the confidence is above this"
    )
    alpha: PositiveFloat | None = Field(None, description="α: the output is divided by α·τ (T for QCFS)")
    temperature: PositiveFloat | None = Field(
        None, description="τ, the temperature (null: the file's, else 1)"
    )
    max_steps: PositiveInt | None = Field(None, description=_MAX_STEPS + "; default: the file's")


@EXIT_POLICIES.register(DynamicConfidenceExitConfig)
class DynamicConfidence(ExitPolicy):
    """Dynamic Confidence (Li & Furber): confidence ``max softmax(O_t / (α·τ))`` of the
    accumulated output O_t, with α (T for QCFS, 2^b − 1 for QFFS) and the temperature τ and
    threshold chosen by ``streamsnn calibrate``; final when the confidence exceeds the threshold."""

    def __init__(self, config: DynamicConfidenceExitConfig) -> None:
        threshold, alpha, temperature = config.threshold, config.alpha, config.temperature
        max_steps = config.max_steps
        if config.calibration:
            cal = load_calibration(config.calibration)
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


class DeadlineExitConfig(Options):
    """Anytime: final at a budget of sensor time waited, of wall time computed or of steps,
    whichever comes first, with the best-so-far prediction (give at least one)."""

    type: Literal["deadline"] = "deadline"
    input_ms: PositiveFloat | None = Field(
        None, description="budget of sensor time since the sample began (ms)"
    )
    compute_ms: PositiveFloat | None = Field(
        None, description="budget of wall time computed for the sample (ms)"
    )
    max_steps: PositiveInt | None = Field(None, description="budget of slices")

    @model_validator(mode="after")
    def _a_budget(self) -> DeadlineExitConfig:
        if self.input_ms is None and self.compute_ms is None and self.max_steps is None:
            raise ValueError("deadline needs input_ms, compute_ms or max_steps")
        return self


@EXIT_POLICIES.register(DeadlineExitConfig)
class Deadline(ExitPolicy):
    """Final once the sensor time waited or the wall time computed reaches its budget (ms), or
    at ``max_steps``: the best-so-far prediction at the deadline."""

    def __init__(self, config: DeadlineExitConfig) -> None:
        self.input_ms, self.compute_ms, self.max_steps = config.input_ms, config.compute_ms, config.max_steps

    def decide(self, pred: Prediction) -> str | None:
        if self.input_ms is not None and pred.input_latency_ms >= self.input_ms:
            return "input_deadline"
        if self.compute_ms is not None and pred.compute_latency_ms >= self.compute_ms:
            return "compute_deadline"
        if self.max_steps is not None and pred.step >= self.max_steps:
            return "max_steps"
        return None


class OracleExitConfig(Options):
    """Upper bound of any exit policy: final at the first correct prediction (needs labels;
    offline replay only)."""

    type: Literal["oracle"] = "oracle"
    max_steps: PositiveInt | None = Field(None, description=_MAX_STEPS)


@EXIT_POLICIES.register(OracleExitConfig)
class Oracle(ExitPolicy):
    """Upper bound of any exit policy: final at the first correct prediction (samples never
    correct run to the end). Needs labels, so it is refused on live sources."""

    needs_labels = True

    def __init__(self, config: OracleExitConfig) -> None:
        self.max_steps = config.max_steps

    def decide(self, pred: Prediction) -> str | None:
        if pred.label is None:
            raise ValueError("the oracle policy needs labels; this stream has none")
        if pred.cls == pred.label:
            return "correct"
        if self.max_steps is not None and pred.step >= self.max_steps:
            return "max_steps"
        return None
