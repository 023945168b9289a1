"""The run report: per-sample outcomes (one per decision) and the report built from them
(table, JSON, PNG).

A replay keeps its outcomes (as many as the split has samples) and builds the report from them
at the end. A stream run (continuous streams: a live source may run for days) keeps running
totals (``Totals``) instead, appends each outcome to the per-sample file as it is made and keeps
only its last ``KEEP_LIVE_OUTCOMES`` in memory when it has no such file (``LiveOutcomes``): its
memory stays bounded however long it runs. Both report the same fields, computed by the same
code (``Totals``)."""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import math
import os
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, overload

import numpy as np

from streamsnn.options import ConfigError
from streamsnn.prediction import Prediction
from streamsnn.sinks.jsonl import lock_for_writing

log = logging.getLogger(__name__)

LATENCIES = ("input_latency_ms", "compute_latency_ms", "e2e_latency_ms")
# latency percentiles of a stream run: exact over its first EXACT_UP_TO decisions (per stream and
# overall), then from a log-bucket sketch within SKETCH_ERROR of the value at each rank
EXACT_UP_TO = 1_000
SKETCH_ERROR = 0.01
KEEP_LIVE_OUTCOMES = 1_000  # a stream run without a per-sample file keeps its last outcomes in memory
PLOT_POINTS = 20_000  # most decisions drawn in the PNG's latency scatter (evenly spaced beyond)
_GAMMA = (1 + SKETCH_ERROR) / (1 - SKETCH_ERROR)
_LOG_GAMMA = math.log(_GAMMA)
_TINY = 1e-9  # values at or below this (ms) are counted as 0


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


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99, mean and max of ``values`` (ms; None, JSON's null, when there are none)."""
    if not values:
        return dict.fromkeys(("p50", "p90", "p99", "mean", "max"))
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(a.mean()),
        "max": float(a.max()),
    }


class Quantiles:
    """Percentiles of values (ms, ≥ 0) in bounded memory: exact (``percentiles``) while it holds
    at most ``exact_up_to`` values (None: always), then a log-bucket sketch: each value counted in
    its bucket (γ^(k−1), γ^k], γ = (1 + ε)/(1 − ε), ε = ``SKETCH_ERROR``, and read back as the
    bucket's centre, so every percentile is within ε (relative) of the values at its ranks
    (numpy's linear rule between them); at most ln(max/min)/ln γ buckets (115 per decade).
    The mean and max stay exact."""

    def __init__(self, exact_up_to: int | None = EXACT_UP_TO) -> None:
        self.exact_up_to = exact_up_to
        self.values: list[float] | None = []  # None once sketched
        self.buckets: dict[int, int] = {}
        self.zeros = self.count = 0
        self.total, self.max = 0.0, -math.inf

    def add(self, x: float) -> None:
        self.count += 1
        self.total += x
        self.max = max(self.max, x)
        if self.values is None:
            self._bucket(x)
            return
        self.values.append(x)
        if self.exact_up_to is not None and len(self.values) > self.exact_up_to:
            for v in self.values:
                self._bucket(v)
            self.values = None

    def _bucket(self, x: float) -> None:
        if x <= _TINY:
            self.zeros += 1
        elif x == x:  # NaN has no bucket
            k = math.ceil(math.log(x) / _LOG_GAMMA)
            self.buckets[k] = self.buckets.get(k, 0) + 1

    def summary(self) -> dict[str, float | None]:
        """p50, p90, p99, mean and max (as ``percentiles``)."""
        if self.values is not None:
            return percentiles(self.values)
        keys = sorted(self.buckets)
        counted = self.zeros + sum(self.buckets.values())

        def at(rank: int) -> float:  # the value of the rank-th smallest (0-based), estimated
            seen = self.zeros
            if rank < seen:
                return 0.0
            for k in keys:
                seen += self.buckets[k]
                if rank < seen:
                    return min(2 * _GAMMA**k / (_GAMMA + 1), self.max)
            return self.max

        result = {}
        for q in (50, 90, 99):
            pos = q / 100 * (counted - 1)
            lo = math.floor(pos)
            low, high = at(lo), at(min(lo + 1, counted - 1))
            result[f"p{q}"] = low + (pos - lo) * (high - low)
        return {**result, "mean": self.total / self.count, "max": self.max}


class Figures:
    """Decisions, accuracy (of the labelled ones), steps and latencies of a group of outcomes
    (a run or one stream), as running totals."""

    def __init__(self, exact_up_to: int | None) -> None:
        self.decisions = self.labelled = self.correct = self.steps = 0
        self.latency = {key: Quantiles(exact_up_to) for key in LATENCIES}

    def add(self, o: SampleOutcome) -> None:
        self.decisions += 1
        self.steps += o.steps
        if o.label is not None:
            self.labelled += 1
            self.correct += o.cls == o.label
        for key, quantiles in self.latency.items():
            quantiles.add(getattr(o, key))

    def latencies(self) -> dict[str, dict[str, float | None]]:
        """Input (sensor time waited), computational (wall time computed) and end-to-end latency
        percentiles (ms)."""
        return {key: quantiles.summary() for key, quantiles in self.latency.items()}

    def stream_report(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "accuracy": self.correct / self.labelled if self.labelled else None,
            "mean_steps": self.steps / self.decisions,
            **self.latencies(),
        }


class Totals(Figures):
    """What the report says about a run's outcomes, as running totals (bounded memory but for
    exact percentiles, ``exact_up_to``): ``add`` each outcome once it is complete, ``report`` at
    any time."""

    def __init__(self, exact_up_to: int | None = EXACT_UP_TO) -> None:
        super().__init__(exact_up_to)
        self.exact_up_to = exact_up_to
        self.max_steps = 0
        self.full_labelled = self.full_correct = 0  # labelled outcomes with a full-T class
        self.ann_labelled = self.ann_correct = 0  # labelled outcomes with the ANN's class
        self.full_steps = self.full_steps_n = 0  # outcomes with their full-T steps
        self.reasons: Counter[str] = Counter()
        self.spikes = 0
        self.synaptic_events, self.synaptic_n = 0, 0
        self.energy_uj, self.energy_n = 0.0, 0
        self.exit_steps: Counter[tuple[int, bool]] = Counter()  # (steps, right) → decisions
        self.streams: dict[str, Figures] = {}

    @classmethod
    def of(cls, outcomes: Iterable[SampleOutcome], exact_up_to: int | None = None) -> Totals:
        totals = cls(exact_up_to)
        for o in outcomes:
            totals.add(o)
        return totals

    def add(self, o: SampleOutcome) -> None:
        super().add(o)
        self.max_steps = max(self.max_steps, o.steps)
        if o.label is not None:
            if o.cls_full_t is not None:
                self.full_labelled += 1
                self.full_correct += o.cls_full_t == o.label
            if o.cls_ann is not None:
                self.ann_labelled += 1
                self.ann_correct += o.cls_ann == o.label
        if o.steps_full_t is not None:
            self.full_steps += o.steps_full_t
            self.full_steps_n += 1
        self.reasons[o.reason] += 1
        self.spikes += o.spikes
        if o.synaptic_events is not None:
            self.synaptic_events += o.synaptic_events
            self.synaptic_n += 1
        if o.energy_uj is not None:
            self.energy_uj += o.energy_uj
            self.energy_n += 1
        self.exit_steps[o.steps, o.label is None or o.cls == o.label] += 1
        stream = self.streams.get(o.stream)
        if stream is None:
            stream = self.streams[o.stream] = Figures(self.exact_up_to)
        stream.add(o)

    def report(self, extra: dict[str, Any], stream_run: bool = False) -> dict[str, Any]:
        """The run's report: accuracy with and without early exit, steps, latencies (overall and
        per stream), and ``extra`` (counters). ``stream_run``: the outcomes are a stream's
        decisions, not replayed samples (``samples`` then counts decisions too; see the README's
        Report section)."""
        n, labelled = self.decisions, self.labelled
        # full-T figures only when every sample has them (a subset, e.g. the samples that never
        # exited, would be biased)
        full = labelled > 0 and self.full_labelled == labelled
        ann = labelled > 0 and self.ann_labelled == labelled
        mean_steps = self.steps / n if n else None
        mean_full = self.full_steps / n if n and self.full_steps_n == n else None
        report: dict[str, Any] = {
            "samples": n,
            "decisions": n,
            "stream_run": stream_run,
            "labelled": labelled,
            "accuracy": self.correct / labelled if labelled else None,
            "accuracy_full_T": self.full_correct / labelled if full else None,
            "accuracy_ann": self.ann_correct / labelled if ann else None,
            "mean_steps": mean_steps,
            "max_steps": self.max_steps if n else None,
            "mean_steps_full_T": mean_full,
            "step_saving": 1 - mean_steps / mean_full if mean_steps is not None and mean_full else None,
            "exit_reasons": dict(self.reasons),
            "spikes_per_sample": self.spikes / n if n else None,
            "synaptic_events_per_sample": self.synaptic_events / self.synaptic_n if self.synaptic_n else None,
            "energy_uj_per_sample": self.energy_uj / self.energy_n if self.energy_n else None,
            **self.latencies(),
            "streams": {name: figures.stream_report() for name, figures in self.streams.items()},
        }
        report.update(extra)
        return report


def build_report(outcomes: Iterable[SampleOutcome], extra: dict[str, Any]) -> dict[str, Any]:
    """The report of ``outcomes`` (all of them kept: exact percentiles) and ``extra``."""
    return Totals.of(outcomes).report(extra)


def samples_path(report_path: str | Path) -> Path:
    """The per-sample outcomes beside ``report_path``: ``<stem>_samples.jsonl``."""
    path = Path(report_path)
    return path.with_name(path.stem + "_samples.jsonl")


def outcome_line(o: SampleOutcome) -> str:
    """One outcome as a line of the per-sample file (strict JSON)."""
    return _json_bytes(asdict(o)).decode()


class OutcomeLog(Sequence[SampleOutcome]):
    """A stream run's outcomes on disk: the per-sample file (JSON lines), each outcome written as
    it is made (unbuffered), so a run stopped any way keeps every decision made, as whole lines:
    a write that fails (a full disk) is cut back off and ends the log, logged and kept in
    ``error``. Read back from the file (``len``, iteration; indexing reads up to the index).
    Locked while written, as a jsonl sink's file: a second run given it is refused
    (``ConfigError``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = lock_for_writing(self.path)
        except OSError as err:
            raise ConfigError(f"per-sample file: {err}") from None
        if stat.S_ISREG(os.fstat(fd).st_mode):
            os.ftruncate(fd, 0)
        self._file: Any = os.fdopen(fd, "wb", buffering=0)  # open for the run
        self.count = self._size = 0
        self.error: str | None = None

    def append(self, o: SampleOutcome) -> None:
        if self._file is None:
            return
        line = memoryview(outcome_line(o).encode())
        try:
            done = 0
            while done < len(line):
                done += self._file.write(line[done:])
        except OSError as err:
            self.error = f"{self.path}: {err.strerror or err}"
            log.error("cannot write the per-sample outcomes (%s): later ones are not kept", self.error)
            with contextlib.suppress(OSError):
                self._file.truncate(self._size)  # no half line
            self.close()
            return
        self._size += len(line)
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            file.close()

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[SampleOutcome]:
        with open(self.path, encoding="utf-8") as file:
            for line, _ in zip(file, range(self.count), strict=False):
                yield SampleOutcome(**json.loads(line))

    @overload
    def __getitem__(self, index: int) -> SampleOutcome: ...
    @overload
    def __getitem__(self, index: slice) -> list[SampleOutcome]: ...
    def __getitem__(self, index: int | slice) -> SampleOutcome | list[SampleOutcome]:
        if isinstance(index, slice):
            return list(self)[index]
        i = index + self.count if index < 0 else index
        if not 0 <= i < self.count:
            raise IndexError(index)
        return next(itertools.islice(self, i, None))


class LiveOutcomes:
    """A stream run's outcomes in bounded memory: running totals for the report (``Totals``), each
    outcome appended to the per-sample file as it is made (``samples``: its path), else only the
    last ``KEEP_LIVE_OUTCOMES`` kept in memory."""

    def __init__(self, samples: str | Path | None = None) -> None:
        self.totals = Totals(EXACT_UP_TO)
        self.log = OutcomeLog(samples) if samples is not None else None
        self.recent: collections.deque[SampleOutcome] = collections.deque(maxlen=KEEP_LIVE_OUTCOMES)

    def add(self, o: SampleOutcome) -> None:
        self.totals.add(o)
        if self.log is not None:
            self.log.append(o)
        else:
            self.recent.append(o)

    @property
    def decisions(self) -> int:
        return self.totals.decisions

    @property
    def outcomes(self) -> Sequence[SampleOutcome]:
        """All outcomes (from the per-sample file), else the last ones kept."""
        return self.log if self.log is not None else list(self.recent)

    def report(self, extra: dict[str, Any]) -> dict[str, Any]:
        """The report (``Totals.report``); says where the outcomes are and what was not kept."""
        fields = dict(extra)
        if self.log is not None:
            self.log.close()
            fields["samples_file"] = str(self.log.path)
            if self.log.error is not None:
                fields["samples_file_error"] = self.log.error
        return self.totals.report(fields, stream_run=True)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def _fmt(value: Any, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{100 * value:.2f} %"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def discretisation_line(d: dict[str, Any]) -> str:
    """An imported NIR model's ``discretisation`` (``streamsnn.interop.nir_import``) in one line,
    as a report and ``convert`` print it."""
    line = f"dt {d['dt']:g}, {d['integration']}, reset {d['reset']}"
    if not d.get("exact"):
        return line
    exact = f"dt {d['dt']:g}; {len(d['exact'])} neuron nodes with the exporter's exact semantics"
    others = d.get("nir_rule_neurons", 0)
    return exact + (f"; {others} others {d['integration']}, reset {d['reset']}" if others else "")


def report_table(report: dict[str, Any]) -> str:
    """The report as a small aligned text table; a stream run's outcomes are its decisions (no
    sample boundaries), named so."""
    lat = lambda k: f"p50 {_fmt(report[k]['p50'])}  p99 {_fmt(report[k]['p99'])}"  # noqa: E731
    unit = "decision" if report.get("stream_run") else "sample"
    rows = [
        (f"{unit}s", _fmt(report["samples"])),
        ("accuracy (early exit)", _fmt(report["accuracy"], pct=True)),
        ("accuracy at full T", _fmt(report["accuracy_full_T"], pct=True)),
        ("quantised ANN accuracy", _fmt(report["accuracy_ann"], pct=True)),
        ("mean steps", f"{_fmt(report['mean_steps'])} of {_fmt(report['mean_steps_full_T'])}"),
        ("step saving", _fmt(report["step_saving"], pct=True)),
        ("max steps", _fmt(report["max_steps"])),
        (f"spikes per {unit}", _fmt(report["spikes_per_sample"])),
        (f"energy per {unit} (µJ)", _fmt(report["energy_uj_per_sample"])),
        ("input latency (ms)", lat("input_latency_ms")),
        ("compute latency (ms)", lat("compute_latency_ms")),
        ("end-to-end latency (ms)", lat("e2e_latency_ms")),
    ]
    if report.get("discretisation"):  # an imported continuous-time (NIR) model
        d = report["discretisation"]
        rows.append(("discretisation", discretisation_line(d)))
    if "samples_per_s" in report:
        rows.append((f"{unit}s per s", _fmt(report["samples_per_s"])))
    for key in ("wall_s", "dropped_packets", "out_of_bounds_events", "late_events"):
        if key in report:
            rows.append((key.replace("_", " "), _fmt(report[key])))
    shown = {label for label, _ in rows}
    for key, n in report.get("source_stats", {}).items():  # the source's recovered bad input
        label = "dropped datagrams (kernel)" if key == "dropped_datagrams" else key.replace("_", " ")
        rows.append((f"{label} (source)" if label in shown else label, _fmt(n)))
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


def write_report(report: dict[str, Any], outcomes: Sequence[SampleOutcome], path: str | Path) -> list[Path]:
    """Write ``report.json``, the per-sample outcomes (``<name>_samples.jsonl``, unless a stream
    run already wrote them there as it went: ``outcomes`` is that ``OutcomeLog``) and a PNG of
    exit steps and latencies. Strict JSON (NaN and infinities are null). Each file is written
    whole under a temporary name beside it and renamed once all are: a failure (``OSError``, a
    full disk) leaves what was there before and no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    outcomes_path = samples_path(path)
    files: list[tuple[Path, Callable[[IO[bytes]], None]]] = [
        (path, lambda f: f.write(_json_bytes(report, 2)))
    ]
    if not (isinstance(outcomes, OutcomeLog) and outcomes.path.resolve() == outcomes_path.resolve()):
        files.insert(0, (outcomes_path, lambda f: f.writelines(outcome_line(o).encode() for o in outcomes)))
    png = path.with_suffix(".png")
    if outcomes:
        files.append((png, lambda f: plot_report(outcomes, f, report)))
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
    return [path, outcomes_path, *([png] if outcomes else [])]


def _json_bytes(value: Any, indent: int | None = None) -> bytes:
    """``value`` as strict JSON (a line): NaN and infinities, which JSON has no words for, become null."""
    return json.dumps(_finite(value), indent=indent, allow_nan=False).encode() + b"\n"


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


VERDICT_COLOURS = {"correct": "tab:green", "wrong": "tab:red", "no label": "tab:gray"}


def verdict(o: SampleOutcome) -> str:
    """``correct``, ``wrong``, or ``no label`` (a live or unlabelled source: nothing to score)."""
    if o.label is None:
        return "no label"
    return "correct" if o.cls == o.label else "wrong"


def plot_title(report: dict[str, Any] | None, decided: int) -> str:
    """The PNG's title: pipeline, source, exit policy (its options) and what was decided."""
    if not report:
        return ""
    policy = dict(report.get("policy") or {})
    kind = policy.pop("type", "?")
    options = ", ".join(
        f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in policy.items() if v is not None
    )
    unit = "decisions" if report.get("stream_run") else "samples"
    source = f" ({report['source']})" if report.get("source") else ""
    return (
        f"{report.get('pipeline', '')}{source}: exit {kind}"
        + (f" ({options})" if options else "")
        + f", {decided} {unit}"
    )


def plot_report(
    outcomes: Sequence[SampleOutcome], path: Path | IO[bytes], report: dict[str, Any] | None = None
) -> Path | IO[bytes]:
    """The report's PNG (``report_figure``) at ``path`` (a file name or an open binary file)."""
    import matplotlib.pyplot as plt

    fig = report_figure(outcomes, report)
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def report_figure(outcomes: Sequence[SampleOutcome], report: dict[str, Any] | None = None) -> Any:
    """Exit-step histogram (correct / wrong / no label, stacked) and latencies per decision (at
    most ``PLOT_POINTS`` of them, evenly spaced), in one pass over ``outcomes``; ``report`` (the
    run's) names pipeline and policy in the title. Input latency against compute latency, or
    compute latency against the exit step when no decision waited for sensor time (frames).
    A matplotlib figure (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    every = max(1, math.ceil(len(outcomes) / PLOT_POINTS))
    exits: Counter[tuple[int, str]] = Counter()  # (steps, verdict) → decisions
    points: list[tuple[float, float, int, str]] = []
    waited = False  # any decision with sensor time waited
    for i, o in enumerate(outcomes):
        kind = verdict(o)
        exits[o.steps, kind] += 1
        waited = waited or o.input_latency_ms > _TINY
        if i % every == 0:
            points.append((o.input_latency_ms, o.compute_latency_ms, o.steps, kind))
    decided = sum(exits.values())
    unit = "decisions" if report and report.get("stream_run") else "samples"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2))
    most = max(steps for steps, _ in exits)
    steps = np.arange(1, most + 1)
    bottom = np.zeros(most)
    for kind, colour in VERDICT_COLOURS.items():
        counts = np.array([exits.get((s, kind), 0) for s in steps.tolist()])
        if counts.any():
            ax1.bar(steps, counts, width=0.9, bottom=bottom, color=colour, label=f"{kind} ({counts.sum()})")
            bottom += counts
    mean = sum(s * n for (s, _), n in exits.items()) / decided
    ax1.set_xlim(0.4, most + 0.6)
    ax1.set_ylim(0, 1.08 * bottom.max())
    ax1.set_xlabel("exit step")
    ax1.set_ylabel(unit)
    ax1.set_title(f"exit steps (mean {mean:.2f})", fontsize=10)
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.legend(fontsize=8)
    colours = [VERDICT_COLOURS[kind] for *_, kind in points]
    if waited:
        ax2.scatter([p[0] for p in points], [p[1] for p in points], s=6, c=colours)
        ax2.set_xlabel("input latency (ms, sensor time waited)")
        ax2.set_title("latency per decision" + (f" (every {every}th)" if every > 1 else ""), fontsize=10)
    else:  # frames: the input is there at once, so compute latency is the only latency
        ax2.scatter([p[2] for p in points], [p[1] for p in points], s=8, c=colours, alpha=0.5)
        ax2.set_xlabel("exit step")
        ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_title(
            "compute latency per decision"
            + (f" (every {every}th)" if every > 1 else "")
            + "\n(input latency 0: no sensor time waited)",
            fontsize=10,
        )
    ax2.set_ylabel("compute latency (ms, wall time)")
    title = plot_title(report, decided)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
