"""The run report: per-sample outcomes (one per decision) and the report built from them
(table, JSON, PNG)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from streamsnn.prediction import Prediction


@dataclass
class SampleOutcome:
    """The exit decision for one sample (or one decision of a live stream).

    ``cls_full_t``/``steps_full_t``: the prediction the same sample reaches after all its slices;
    ``cls_ann``/``ann_output``: the quantised ANN's class and logits on the sample's mean input
    (``None`` when the run did not compute them)."""

    stream: str
    sample: int
    label: int | None
    cls: int
    steps: int
    reason: str
    input_latency_ms: float
    compute_latency_ms: float
    e2e_latency_ms: float
    spikes: int
    cls_full_t: int | None = None
    steps_full_t: int | None = None
    cls_ann: int | None = None
    ann_output: list[float] | None = None
    synaptic_events: int | None = None  # when the runtime counts operations
    energy_uj: float | None = None

    @classmethod
    def of(
        cls, d: Prediction, counted: bool, full_cls: int | None = None, full_steps: int | None = None
    ) -> SampleOutcome:
        """The outcome of decision ``d`` (a final prediction); ``counted``: the run counted
        operations; ``full_cls``/``full_steps``: the same sample at full length, when known."""
        return cls(
            d.stream,
            d.sample,
            d.label,
            d.cls,
            d.step,
            d.reason or "",
            d.input_latency_ms,
            d.compute_latency_ms,
            d.e2e_latency_ms,
            d.spikes,
            full_cls,
            full_steps,
            synaptic_events=d.synaptic_events if counted else None,
            energy_uj=d.energy_uj if counted else None,
        )


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99, mean and max of ``values`` (ms)."""
    if not values:
        return {
            "p50": float("nan"),
            "p90": float("nan"),
            "p99": float("nan"),
            "mean": float("nan"),
            "max": float("nan"),
        }
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


def _mean_of(values: list[Any]) -> float | None:
    """Mean of the values that are set (None when none is)."""
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def latencies(outcomes: list[SampleOutcome]) -> dict[str, dict[str, float]]:
    """Input (sensor time waited), computational (wall time computed) and end-to-end latency
    percentiles (ms) over ``outcomes``."""
    return {
        key: percentiles([getattr(o, key) for o in outcomes])
        for key in ("input_latency_ms", "compute_latency_ms", "e2e_latency_ms")
    }


def per_stream(outcomes: list[SampleOutcome]) -> dict[str, dict[str, Any]]:
    """Decisions, accuracy (labelled ones), mean steps and latencies of every stream."""
    streams: dict[str, list[SampleOutcome]] = {}
    for o in outcomes:
        streams.setdefault(o.stream, []).append(o)
    result = {}
    for name, group in streams.items():
        labelled = [o for o in group if o.label is not None]
        result[name] = {
            "decisions": len(group),
            "accuracy": float(np.mean([o.cls == o.label for o in labelled])) if labelled else None,
            "mean_steps": float(np.mean([o.steps for o in group])),
            **latencies(group),
        }
    return result


def build_report(outcomes: list[SampleOutcome], extra: dict[str, Any]) -> dict[str, Any]:
    """The run's report: accuracy with and without early exit, steps, latencies (overall and per
    stream), counters."""
    labelled = [o for o in outcomes if o.label is not None]
    # full-T figures only when every sample has them (a subset, e.g. the samples that never
    # exited, would be biased)
    full = [o for o in labelled if o.cls_full_t is not None]
    full = full if len(full) == len(labelled) else []
    ann = [o for o in labelled if o.cls_ann is not None]
    ann = ann if len(ann) == len(labelled) else []
    steps = [o.steps for o in outcomes]
    steps_full = [o.steps_full_t for o in outcomes if o.steps_full_t is not None]
    steps_full = steps_full if len(steps_full) == len(outcomes) else []
    report: dict[str, Any] = {
        "samples": len(outcomes),
        "labelled": len(labelled),
        "accuracy": float(np.mean([o.cls == o.label for o in labelled])) if labelled else None,
        "accuracy_full_T": float(np.mean([o.cls_full_t == o.label for o in full])) if full else None,
        "accuracy_ann": float(np.mean([o.cls_ann == o.label for o in ann])) if ann else None,
        "mean_steps": float(np.mean(steps)) if steps else None,
        "max_steps": int(max(steps)) if steps else None,
        "mean_steps_full_T": float(np.mean(steps_full)) if steps_full else None,
        "step_saving": (1 - float(np.mean(steps)) / float(np.mean(steps_full)))
        if steps and steps_full
        else None,
        "exit_reasons": dict(Counter(o.reason for o in outcomes)),
        "spikes_per_sample": float(np.mean([o.spikes for o in outcomes])) if outcomes else None,
        "synaptic_events_per_sample": _mean_of([o.synaptic_events for o in outcomes]),
        "energy_uj_per_sample": _mean_of([o.energy_uj for o in outcomes]),
        **latencies(outcomes),
        "streams": per_stream(outcomes),
    }
    report.update(extra)
    return report


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{100 * value:.2f} %"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def report_table(report: dict[str, Any]) -> str:
    """The report as a small aligned text table."""
    lat = lambda k: f"p50 {report[k]['p50']:.2f}  p99 {report[k]['p99']:.2f}"  # noqa: E731
    rows = [
        ("samples", _fmt(report["samples"])),
        ("accuracy (early exit)", _fmt(report["accuracy"], pct=True)),
        ("accuracy at full T", _fmt(report["accuracy_full_T"], pct=True)),
        ("quantised ANN accuracy", _fmt(report["accuracy_ann"], pct=True)),
        ("mean steps", f"{_fmt(report['mean_steps'])} of {_fmt(report['mean_steps_full_T'])}"),
        ("step saving", _fmt(report["step_saving"], pct=True)),
        ("max steps", _fmt(report["max_steps"])),
        ("spikes per sample", _fmt(report["spikes_per_sample"])),
        ("energy per sample (µJ)", _fmt(report["energy_uj_per_sample"])),
        ("input latency (ms)", lat("input_latency_ms")),
        ("compute latency (ms)", lat("compute_latency_ms")),
        ("end-to-end latency (ms)", lat("e2e_latency_ms")),
    ]
    for key in ("samples_per_s", "wall_s", "dropped_packets", "out_of_bounds_events", "late_events"):
        if key in report:
            rows.append((key.replace("_", " "), _fmt(report[key])))
    streams = report.get("streams", {})
    if len(streams) > 1:  # one line per stream: decisions, accuracy, steps, latency p50 / p99
        for name, st in streams.items():
            rows.append(
                (
                    f"stream {name}",
                    f"{st['decisions']} decisions, {_fmt(st['accuracy'], pct=True)}, "
                    f"{st['mean_steps']:.2f} steps, input p50/p99 "
                    f"{st['input_latency_ms']['p50']:.2f}/{st['input_latency_ms']['p99']:.2f} ms, "
                    f"compute {st['compute_latency_ms']['p50']:.2f}/{st['compute_latency_ms']['p99']:.2f} ms",
                )
            )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def write_report(report: dict[str, Any], outcomes: list[SampleOutcome], path: str | Path) -> list[Path]:
    """Write ``report.json``, the per-sample outcomes (``<name>_samples.jsonl``) and a PNG of exit
    steps and latencies. Strict JSON (NaN and infinities are null). Each file is written whole
    under a temporary name beside it and renamed once all are: a failure (``OSError``, a full
    disk) leaves what was there before and no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outcomes_path = path.with_name(path.stem + "_samples.jsonl")
    files: list[tuple[Path, Callable[[IO[bytes]], None]]] = [
        (outcomes_path, lambda f: f.writelines(_json_bytes(asdict(o)) + b"\n" for o in outcomes)),
        (path, lambda f: f.write(_json_bytes(report, indent=2) + b"\n")),
    ]
    if outcomes:
        files.append((path.with_suffix(".png"), lambda f: plot_report(outcomes, f)))
    temps: list[tuple[Path, Path]] = []
    try:
        for target, write in files:
            try:
                fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
                temps.append((Path(temp), target))
                with os.fdopen(fd, "wb") as f:
                    write(f)
                os.chmod(temp, 0o666 & ~_UMASK)  # as a plain open() would (mkstemp: 0o600)
            except OSError as err:
                why = f"cannot write {target}: {err.strerror or err}"
                raise OSError(f"{why}; the report's files are left as they were") from None
        for temp, target in temps:
            os.replace(temp, target)
    finally:
        for temp, _ in temps:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    return [target for target, _ in files]


def _json_bytes(value: Any, indent: int | None = None) -> bytes:
    """``value`` as strict JSON: NaN and infinities, which JSON has no words for, become null."""
    return json.dumps(_finite(value), indent=indent, allow_nan=False).encode()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # at import, before the run's threads


def plot_report(outcomes: list[SampleOutcome], path: Path | IO[bytes]) -> Path | IO[bytes]:
    """Exit-step histogram (correct / wrong) and input vs compute latency per sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([o.steps for o in outcomes])
    correct = np.array([o.label is None or o.cls == o.label for o in outcomes])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = np.arange(0.5, steps.max() + 1.5)
    ax1.hist(
        [steps[correct], steps[~correct]],
        bins=bins,
        stacked=True,
        label=["correct", "wrong"],
        color=["tab:green", "tab:red"],
    )
    ax1.set_xlabel("exit step")
    ax1.set_ylabel("samples")
    ax1.set_title(f"exit steps (mean {steps.mean():.2f})")
    ax1.legend()
    ax2.scatter(
        [o.input_latency_ms for o in outcomes],
        [o.compute_latency_ms for o in outcomes],
        s=6,
        c=np.where(correct, "tab:green", "tab:red"),
    )
    ax2.set_xlabel("input latency (ms, sensor time waited)")
    ax2.set_ylabel("compute latency (ms, wall time)")
    ax2.set_title("latency per decision")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path
