"""The anytime prediction emitted after every slice of every stream."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Prediction:
    """One stream's prediction after one slice.

    ``step`` counts slices since the last reset (1-based). ``final`` marks the exit decision and
    ``reason`` says why (``confident``, ``max_steps``, ``end_of_sample``...). Latencies in ms:
    ``input_latency_ms`` is the sensor time waited (first event of the sample to the end of this
    slice); ``compute_latency_ms`` the wall time spent encoding, stepping and deciding for this
    sample so far; ``e2e_latency_ms`` the wall time from this slice's arrival to emission.
    ``spikes`` counts spikes of all layers since the last reset; ``synaptic_events`` the
    accumulates and ``energy_uj`` the estimated energy (µJ) since the last reset, when the
    runtime counts operations (``runtime.count_operations``), else 0.
    """

    stream: str
    sample: int
    step: int
    t_start_us: int
    t_end_us: int
    cls: int
    confidence: float
    probs: list[float]
    label: int | None = None
    final: bool = False
    reason: str | None = None
    input_latency_ms: float = 0.0
    compute_latency_ms: float = 0.0
    e2e_latency_ms: float = 0.0
    spikes: int = 0
    synaptic_events: int = 0
    energy_uj: float = 0.0
    emit_time: float = 0.0
    output: list[float] | None = field(default=None, repr=False)  # accumulated output (K values)
    input: Any = field(default=None, repr=False)  # this slice's input (1×C×H×W), for policies that ask

    def to_dict(self) -> dict[str, Any]:
        """Plain-type fields for JSON and msgpack (the output and input tensors are left out)."""
        return {
            "stream": self.stream,
            "sample": self.sample,
            "step": self.step,
            "t_start_us": self.t_start_us,
            "t_end_us": self.t_end_us,
            "class": self.cls,
            "confidence": round(self.confidence, 6),
            "probs": [round(p, 6) for p in self.probs],
            "label": self.label,
            "final": self.final,
            "reason": self.reason,
            "input_latency_ms": round(self.input_latency_ms, 4),
            "compute_latency_ms": round(self.compute_latency_ms, 4),
            "e2e_latency_ms": round(self.e2e_latency_ms, 4),
            "spikes": self.spikes,
            "synaptic_events": self.synaptic_events,
            "energy_uj": round(self.energy_uj, 6),
            "emit_time": self.emit_time,
        }


def softmax(values: list[float], scale: float = 1.0) -> list[float]:
    """softmax(values / scale) in Python floats: for the K values of one prediction this costs
    a fraction of a torch call."""
    top = max(values)
    exps = [math.exp((v - top) / scale) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def read_out(output: list[float], step: float, alpha: float | str) -> tuple[list[float], float, int]:
    """The anytime read-out of the output O_t (K values: accumulated, or a leaky-integrator last
    layer's current membrane, ``SpikingNetwork.readout``) after ``step`` steps: the
    probabilities softmax(O_t / α) with α = ``model.alpha`` (``"t"``: α = ``step``, the running
    mean), the confidence (their maximum) and the class (the first index of the maximum)."""
    probs = softmax(output, step if alpha == "t" else alpha)
    confidence = max(probs)
    return probs, confidence, probs.index(confidence)


def prediction_line(p: dict[str, Any], extra: str = "") -> str:
    """One prediction (``Prediction.to_dict()`` or a wire payload) as a line of text; ``extra``
    goes before the verdict on the label."""
    state = f"final/{p['reason']}" if p["final"] else ("cached" if p.get("cached") else "")
    label = p["label"]
    verdict = "" if label is None else ("  ok" if p["class"] == label else f"  WRONG (label {label})")
    return (
        f"{p['stream']} #{p['sample']:<5} step {p['step']:>3} {state:<20} class {p['class']} "
        f"conf {p['confidence']:.3f}  input {p['input_latency_ms']:7.1f} ms  "
        f"compute {p['compute_latency_ms']:6.2f} ms{extra}{verdict}"
    )
