"""A labelled live benchmark (``streamsnn evaluate PIPELINE --live``): a digits-dvs scenario
(``streamsnn.sources.scenarios``) played through a pipeline, its final decisions scored against
the scenario's timeline the way event detection is scored.

**Scoring rules** (``score_live``). A decision is a final prediction; its time is the end of its
slice (``t_end_us``, sensor time, on the timeline's clock). A digit segment [start, end) is *in
view* at t when start < t ≤ end (a slice ending at the onset has seen none of it), and a decision
*may detect* it while it is in view or within one slice after it leaves (start < t ≤ end +
slice_us). Decisions are taken in time order:

- ``detection``: its class is that of a digit it may detect and that has no detection yet (when
  two may be detected, the earlier one: at the boundary of two back-to-back digits of one class
  the first is credited, then the second);
- ``repeat``: its class is that of a digit it may detect, already detected (not false: the
  digit is there; only a digit's first matching decision counts);
- ``wrong``: any other class while a digit is in view;
- ``false``: any other class while no digit is in view (empty input: noise, silence, or beyond
  the timeline).

Left out (``ignored``): finals with reason ``end_of_stream`` (the measurement ended the stream,
no policy decided) and decisions later than one slice after the timeline's end (the unpaced
stream ends there; over UDP the pipeline runs a little longer).

Figures: detection rate (detected digits / digits); false decisions per minute of empty input
(the empty segments' total length); wrong decisions (``wrong`` + ``false``: every decision whose
class is not that of a digit it may detect, as % of the scored decisions); decision latency from
onset (t − start of each detected digit, at its detection; p50 and p99, ms of sensor time);
compute per decision (``compute_latency_ms``: wall time encoding, stepping and deciding; p50,
p99, mean).

**Playing** (``measure_live``): the pipeline's source is replaced by the scenario played as one
unsegmented stream, unpaced (``pace: false``: as fast as the pipeline takes it, nothing dropped,
deterministic), through the pipeline's own slicing, encoder, model and policies. A pipeline whose
source is ``udp`` instead gets the scenario sent to its own port in real time while it runs
(``send_scenario``, from a process of its own, as ``streamsnn send --scenario`` sends it); its
source stamps events on arrival, so the timeline is aligned on the first event (its arrival stamp
minus its scenario time; off by at most the sender's 1 ms datagrams plus the socket's latency).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from streamsnn.config import ConfigError, PipelineConfig, format_validation_error
from streamsnn.events import Packet, Sensor
from streamsnn.prediction import Prediction
from streamsnn.runtime import RunResult, build_pipeline
from streamsnn.runtime.runner import Runner
from streamsnn.sinks import Sink
from streamsnn.sources import DigitsDVS, DigitsDVSSourceConfig, UDPSource, UDPSourceConfig
from streamsnn.sources.digits import DIGITS_DVS_SENSOR
from streamsnn.sources.scenarios import Segment
from streamsnn.sources.udp import send_events

Verdict = Literal["detection", "repeat", "wrong", "false"]
VERDICTS: tuple[Verdict, ...] = ("detection", "repeat", "wrong", "false")
PLOT_US = 20_000_000  # the PNG shows the first 20 s


@dataclass
class ScoredDecision:
    """A final decision and its verdict. ``t_us``: its time on the timeline's clock (µs);
    ``digit``: the timeline index of the digit it detects or repeats (None: wrong or false)."""

    t_us: int
    cls: int
    confidence: float
    step: int
    compute_ms: float
    reason: str
    verdict: Verdict
    digit: int | None = None


@dataclass
class LiveScore:
    """The figures of ``score_live`` (see the module docstring); a figure without anything to
    measure (no digit, no empty input, no decision) is None."""

    digits: int
    detected: int
    decisions: int
    verdicts: dict[str, int]
    empty_s: float
    detection_rate: float | None
    false_per_min: float | None
    wrong_pct: float | None
    latency_ms: dict[str, float | None]  # onset → detection, sensor time: p50, p99, mean
    compute_ms: dict[str, float | None]  # per decision, wall time: p50, p99, mean
    mean_steps: float | None
    ignored: int  # finals left out: end_of_stream, or after the timeline's end + one slice
    scored: list[ScoredDecision] = field(repr=False)
    detections: dict[int, int] = field(repr=False)  # digit's timeline index → its detection's index

    def figures(self) -> dict[str, Any]:
        """The figures without the per-decision lists."""
        return {k: v for k, v in asdict(self).items() if k not in ("scored", "detections")}


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "mean": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "mean": float(np.mean(values))}


def score_live(
    segments: Sequence[Segment], finals: Iterable[Prediction], slice_us: int, offset_us: int = 0
) -> LiveScore:
    """Score the final predictions ``finals`` (others are skipped) against the timeline
    ``segments`` with a grace of ``slice_us`` after each digit's offset; a decision's time is
    ``t_end_us − offset_us`` (the stream's clock minus the timeline's). Rules: the module
    docstring."""
    digit_ix = [i for i, s in enumerate(segments) if not s.empty]
    starts = [segments[i].start_us for i in digit_ix]
    decisions = sorted((p for p in finals if p.final), key=lambda p: p.t_end_us)
    end = max((s.end_us for s in segments), default=0) + slice_us + offset_us
    kept = [p for p in decisions if p.reason != "end_of_stream" and p.t_end_us <= end]
    scored: list[ScoredDecision] = []
    detections: dict[int, int] = {}
    for pred in kept:
        t = pred.t_end_us - offset_us
        k = bisect_left(starts, t) - 1  # the last digit with start < t
        candidates: list[int] = []  # digits this decision may detect, earliest first
        while k >= 0 and segments[digit_ix[k]].end_us + slice_us >= t:
            candidates.insert(0, digit_ix[k])
            k -= 1
        in_view = any(segments[i].end_us >= t for i in candidates)
        matching = [i for i in candidates if segments[i].label == pred.cls]
        fresh = [i for i in matching if i not in detections]
        digit: int | None = None
        verdict: Verdict
        if fresh:
            verdict, digit = "detection", fresh[0]
            detections[digit] = len(scored)
        elif matching:
            verdict, digit = "repeat", matching[-1]
        else:
            verdict = "wrong" if in_view else "false"
        scored.append(
            ScoredDecision(
                t,
                pred.cls,
                pred.confidence,
                pred.step,
                pred.compute_latency_ms,
                pred.reason or "",
                verdict,
                digit,
            )
        )
    counts = {v: sum(d.verdict == v for d in scored) for v in VERDICTS}
    empty_s = sum(s.end_us - s.start_us for s in segments if s.empty) / 1e6
    latencies = [(scored[j].t_us - segments[i].start_us) / 1e3 for i, j in detections.items()]
    n = len(scored)
    return LiveScore(
        digits=len(digit_ix),
        detected=len(detections),
        decisions=n,
        verdicts=counts,
        empty_s=empty_s,
        detection_rate=len(detections) / len(digit_ix) if digit_ix else None,
        false_per_min=counts["false"] / (empty_s / 60) if empty_s > 0 else None,
        wrong_pct=100 * (counts["wrong"] + counts["false"]) / n if n else None,
        latency_ms=_stats(latencies),
        compute_ms=_stats([d.compute_ms for d in scored]),
        mean_steps=float(np.mean([d.step for d in scored])) if n else None,
        ignored=len(decisions) - n,
        scored=scored,
        detections=detections,
    )


# -- playing a scenario through a pipeline ---------------------------------------------------
class _Collector(Sink):
    """Keeps the final predictions and the times of the events the source delivered (those of
    the first ``keep_us`` after the first event, for the plot)."""

    needs_events = True

    def __init__(self, keep_us: int = PLOT_US) -> None:
        self.finals: list[Prediction] = []
        self.first_us: int | None = None
        self.keep_us = keep_us
        self.times: list[np.ndarray] = []

    def write(self, pred: Prediction) -> None:
        if pred.final:
            self.finals.append(pred)

    def write_packet(self, packet: Packet, sensor: Sensor) -> None:
        if not len(packet.data):
            return
        t = packet.data["t"]
        if self.first_us is None:
            self.first_us = int(t.min())
        kept = t[t < self.first_us + self.keep_us]
        if len(kept):
            self.times.append(kept.copy())


@dataclass
class LiveRun:
    """A scenario played through a pipeline and scored."""

    pipeline: str
    scenario: DigitsDVSSourceConfig
    transport: Literal["unpaced", "udp"]
    slice_us: int
    segments: list[Segment]
    offset_us: int  # the stream's clock minus the timeline's
    score: LiveScore
    event_times: np.ndarray  # of the first PLOT_US of the stream, on the timeline's clock (µs)
    run: dict[str, Any]  # the run report's counters (drops, source stats, wall time)


def scenario_config(
    cfg: PipelineConfig | None = None, origin: str = "the live scenario", **options: Any
) -> DigitsDVSSourceConfig:
    """The digits-dvs scenario to measure on, played unpaced: the pipeline ``cfg``'s own
    digits_dvs options (offset, limit, seed...) if its source is one, with ``options`` (source
    options; None: not given) over them. Bad options raise ``ConfigError`` naming the option."""
    base = (
        cfg.source.model_dump() if cfg is not None and isinstance(cfg.source, DigitsDVSSourceConfig) else {}
    )
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return DigitsDVSSourceConfig.model_validate({**base, **given, "live": True, "pace": False})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, origin, DigitsDVSSourceConfig)) from None


def measure_live(
    cfg: PipelineConfig,
    scenario: DigitsDVSSourceConfig,
    progress: bool = False,
    unpaced: bool = False,
    origin: str = "pipeline",
) -> LiveRun:
    """Play ``scenario`` (a live digits-dvs stream, ``scenario_config``) through ``cfg``'s pipeline
    and score its final decisions: unpaced in place of the pipeline's source, or, for a ``udp``
    source (unless ``unpaced``), sent to its port in real time. Needs time-window slicing (the
    grace after an offset is one slice) and the local executor."""
    slice_us = cfg.slicing.time_window_us
    if slice_us is None:
        raise ConfigError(
            f"{origin}: slicing: the live benchmark scores with a grace of one slice: give time_window_us"
        )
    if cfg.executor != "local":
        raise ConfigError(f"{origin}: executor: the live benchmark runs in this process (executor: local)")
    udp = cfg.source if isinstance(cfg.source, UDPSourceConfig) and not unpaced else None
    if udp is not None:
        sensor = udp.pixel_array(polarities=2)
        if sensor.size != DIGITS_DVS_SENSOR.size:
            raise ConfigError(
                f"{origin}: source.sensor: the scenario is digits-dvs ({DIGITS_DVS_SENSOR.width}×"
                f"{DIGITS_DVS_SENSOR.height}); the udp source takes {sensor.width}×{sensor.height}"
            )
    # the pipeline's own source port, listening until the scenario's end; else the scenario itself
    source = scenario if udp is None else udp.model_copy(update={"stop_after_silence_s": None})
    # one slice per operator call, as a live stream is stepped; no sinks but the collector
    runtime = cfg.runtime.model_copy(update={"realtime": False, "chunk": 1, "progress": progress})
    run_cfg = cfg.model_copy(update={"source": source, "runtime": runtime, "sinks": []})
    played = DigitsDVS(scenario)
    segments = played.timeline()
    pipe = build_pipeline(run_cfg, origin)
    collector = _Collector()
    pipe.sinks.append(collector)
    runner = Runner(pipe)
    if isinstance(pipe.source, UDPSource):
        result = _run_over_udp(runner, pipe.source, played, collector, slice_us)
    else:
        result = runner.run()
    first = _first_event_us(played, segments)
    offset = 0 if collector.first_us is None or first is None else collector.first_us - first
    times = np.concatenate(collector.times) - offset if collector.times else np.empty(0, np.int64)
    counters = ("wall_s", "dropped_slices", "skipped_slices", "late_events", "source_stats")
    return LiveRun(
        cfg.name,
        scenario,
        "unpaced" if udp is None else "udp",
        slice_us,
        segments,
        offset,
        score_live(segments, collector.finals, slice_us, offset),
        times,
        {k: result.report.get(k) for k in counters},
    )


def _first_event_us(played: DigitsDVS, segments: list[Segment]) -> int | None:
    """The scenario time of its first event (µs), None if it has none."""
    for events in played.segment_events(segments):
        if len(events):
            return int(events["t"][0])
    return None


def send_scenario(
    played: DigitsDVS,
    host: str,
    port: int,
    realtime: bool = True,
    speed: float = 1.0,
    stop: threading.Event | None = None,
) -> int:
    """Send the live stream of ``played`` (a digits-dvs scenario) as SPIF datagrams to
    ``host:port`` (``send_events``: its first event at once, the others at their sensor time
    after it, divided by ``speed``; nothing in silence) and, in real time, wait until the end of
    its timeline; return the number of events sent."""
    events = played.events()
    segments = played.timeline()
    started = time.monotonic()
    sent = send_events(events, host, port, realtime=realtime, speed=speed, stop=stop)
    if realtime and segments:
        first = int(events["t"][0]) if len(events) else 0
        end = started + (segments[-1].end_us - first) * 1e-6 / speed
        while (stop is None or not stop.is_set()) and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))
    return sent


def write_timeline(played: DigitsDVS, path: Path) -> Path:
    """The timeline of ``played`` as JSON: its options, the scenario time of its first event
    (``first_event_us``: a receiver stamping on arrival aligns on it) and the segments
    (``Segment.to_dict()``; ``scenarios.segments_from`` reads them back)."""
    segments = played.timeline()
    doc = {
        "scenario": played.config.model_dump(),
        "first_event_us": _first_event_us(played, segments),
        "segments": [s.to_dict() for s in segments],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def send_process(request: str) -> None:
    """The sender's process (``_run_over_udp``): ``send_scenario`` as ``request`` (JSON: the
    scenario's ``options``, ``host`` and ``port``) asks."""
    r = json.loads(request)
    send_scenario(DigitsDVS(DigitsDVSSourceConfig(**r["options"])), r["host"], r["port"])


def _run_over_udp(
    runner: Runner, source: UDPSource, played: DigitsDVS, collector: _Collector, slice_us: int
) -> RunResult:
    """Run the pipeline while a process of its own (as ``streamsnn send`` would: no share of
    this interpreter) sends the scenario to its UDP source once it reads; close the source one
    slice (and 50 ms) after the timeline's end, on the source's clock aligned on the first event
    (``collector`` saw it arrive)."""
    stop = threading.Event()
    errors: list[BaseException] = []
    host = "127.0.0.1" if source.host in ("0.0.0.0", "") else ("::1" if source.host == "::" else source.host)
    segments = played.timeline()
    first = _first_event_us(played, segments) or 0
    length_us = segments[-1].end_us - first + slice_us + 50_000  # first event → closing

    def clock_us() -> int:  # the source's clock (µs), as it stamps arrivals
        return (time.monotonic_ns() - (source.t0_ns or 0)) // 1_000

    def sender() -> None:
        process = None
        try:
            waited = time.monotonic()
            while source.t0_ns is None and not stop.is_set():  # datagrams before reading are stamped 0
                if time.monotonic() - waited > 30:
                    raise TimeoutError("the pipeline's UDP source did not start reading within 30 s")
                time.sleep(0.001)
            if stop.is_set():
                return
            request = {"options": played.config.model_dump(), "host": host, "port": int(source.port)}
            code = "import sys; from streamsnn.lab.live import send_process; send_process(sys.argv[1])"
            process = subprocess.Popen([sys.executable, "-c", code, json.dumps(request)])
            while not stop.is_set():
                if process.poll() is not None and (process.returncode or collector.first_us is None):
                    break  # failed, or done without a single event arriving
                if collector.first_us is not None and clock_us() >= collector.first_us + length_us:
                    break
                time.sleep(0.005)
            source.close()  # ends the run: open decisions close with end_of_stream
            if process.poll() is None:
                if stop.is_set():  # the run ended first (an error, Ctrl-C)
                    process.terminate()
                try:
                    process.wait(5)  # done with the timeline: it exits by itself
                except subprocess.TimeoutExpired:
                    process.terminate()
                    process.wait(5)
            elif process.returncode:
                raise RuntimeError(f"the scenario's sender failed (exit code {process.returncode})")
        except BaseException as err:
            errors.append(err)
            if process is not None and process.poll() is None:
                process.terminate()
        finally:
            source.close()

    thread = threading.Thread(target=sender, name="streamsnn-live-sender", daemon=True)
    thread.start()
    try:
        result = runner.run()
    finally:
        stop.set()
        thread.join(timeout=10)
    if errors:
        raise errors[0]
    return result


# -- outputs ---------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def format_live(run: LiveRun) -> str:
    """The figures as a table (text)."""
    s, sc = run.score, run.scenario
    digits_s = sum(seg.end_us - seg.start_us for seg in run.segments if not seg.empty) / 1e6
    v = s.verdicts
    rows = [
        (
            "detected",
            f"{s.detected} / {s.digits} digits ({_fmt(_pct(s.detection_rate), '.1f')} %)",
        ),
        (
            "decisions",
            f"{s.decisions}: {v['detection']} detections, {v['repeat']} repeats, {v['wrong']} wrong class, "
            f"{v['false']} on empty input"
            + (f" ({s.ignored} at the stream's end left out)" if s.ignored else ""),
        ),
        ("wrong decisions", f"{_fmt(s.wrong_pct, '.1f')} % of decisions (wrong class, or on empty input)"),
        ("false decisions", f"{_fmt(s.false_per_min, '.2f')} per minute of empty input ({s.empty_s:.1f} s)"),
        (
            "latency from onset",
            f"p50 {_fmt(s.latency_ms['p50'], '.1f')} ms, p99 {_fmt(s.latency_ms['p99'], '.1f')} ms "
            "(sensor time, detected digits)",
        ),
        (
            "compute per decision",
            f"p50 {_fmt(s.compute_ms['p50'], '.2f')} ms, p99 {_fmt(s.compute_ms['p99'], '.2f')} ms, "
            f"mean {_fmt(s.compute_ms['mean'], '.2f')} ms (wall time)",
        ),
        ("mean steps", _fmt(s.mean_steps, ".2f")),
    ]
    width = max(len(k) for k, _ in rows)
    head = (
        f"{run.pipeline}: scenario {sc.scenario} on {sc.split} ({s.digits} digits, {digits_s:.1f} s in view, "
        f"{s.empty_s:.1f} s empty; {run.transport}, slices of {run.slice_us / 1e3:g} ms)"
    )
    return "\n".join([head, *(f"{k:<{width}}  {text}" for k, text in rows)])


def live_json(run: LiveRun) -> dict[str, Any]:
    """Everything ``write_live`` puts in the JSON file."""
    s = run.score
    digits = [
        {
            "segment": i,
            "label": seg.label,
            "sample": seg.sample,
            "onset_us": seg.start_us,
            "detected_by": s.detections.get(i),
            "latency_ms": (s.scored[s.detections[i]].t_us - seg.start_us) / 1e3
            if i in s.detections
            else None,
        }
        for i, seg in enumerate(run.segments)
        if not seg.empty
    ]
    return {
        "pipeline": run.pipeline,
        "scenario": run.scenario.model_dump(),
        "transport": run.transport,
        "slice_us": run.slice_us,
        "offset_us": run.offset_us,
        "figures": s.figures(),
        "run": run.run,
        "timeline": [seg.to_dict() for seg in run.segments],
        "digits": digits,
        "decisions": [asdict(d) for d in s.scored],
    }


def write_live(run: LiveRun, out_dir: Path) -> list[Path]:
    """``live_<scenario>_<split>``.txt (the table), .json (figures, timeline, every decision with
    its verdict, every digit with its detection) and .png (the first 20 s) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"live_{run.scenario.scenario}_{run.scenario.split}"
    table = out_dir / f"{stem}.txt"
    table.write_text(format_live(run) + "\n")
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(live_json(run), indent=2) + "\n")
    return [table, path, plot_live(run, out_dir / f"{stem}.png")]


COLOURS = {"detection": "tab:green", "repeat": "tab:blue", "wrong": "tab:red", "false": "tab:orange"}


def plot_live(run: LiveRun, path: Path, span_us: int = PLOT_US) -> Path:
    """The first ``span_us`` of the stream: event rate per slice, the digits in view (shaded,
    with their label) and the final decisions at their time and confidence, coloured by verdict
    and marked with their class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_ax, dec_ax) = plt.subplots(2, 1, figsize=(12, 5), sharex=True, height_ratios=[1, 1.3])
    edges = np.arange(0, span_us + run.slice_us, run.slice_us)
    counts, _ = np.histogram(run.event_times, bins=edges)
    rate_ax.step(edges[:-1] / 1e6, counts / (run.slice_us / 1e6) / 1e3, where="post", lw=0.8, color="0.3")
    rate_ax.set_ylabel("events (k/s)")
    for seg in run.segments:
        if seg.empty or seg.start_us >= span_us:
            continue
        for ax in (rate_ax, dec_ax):
            ax.axvspan(
                seg.start_us / 1e6, min(seg.end_us, span_us) / 1e6, color="tab:green", alpha=0.12, lw=0
            )
        mid = (seg.start_us + min(seg.end_us, span_us)) / 2e6
        rate_ax.text(
            mid, 1.02, str(seg.label), transform=rate_ax.get_xaxis_transform(), ha="center", fontsize=7
        )
    for verdict in VERDICTS:
        shown = [d for d in run.score.scored if d.verdict == verdict and d.t_us < span_us]
        dec_ax.scatter(
            [d.t_us / 1e6 for d in shown],
            [d.confidence for d in shown],
            s=18,
            color=COLOURS[verdict],
            label=f"{verdict} ({run.score.verdicts[verdict]})",
            zorder=3,
        )
        for d in shown:
            dec_ax.annotate(
                str(d.cls),
                (d.t_us / 1e6, d.confidence),
                xytext=(0, 4),
                textcoords="offset points",
                fontsize=6,
                ha="center",
            )
    dec_ax.set_ylim(0, 1.1)
    dec_ax.set_ylabel("confidence of final decisions")
    dec_ax.set_xlabel("sensor time (s); shaded: a digit in view (its label above)")
    dec_ax.set_xlim(0, span_us / 1e6)
    dec_ax.legend(fontsize=7, loc="lower right", ncol=4)
    sc = run.scenario
    rate_ax.set_title(
        f"{run.pipeline}: {sc.scenario} on {sc.split} ({run.transport}), first {span_us / 1e6:g} s",
        fontsize=9,
        pad=14,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
