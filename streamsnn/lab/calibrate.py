"""Calibration of Dynamic Confidence (Li & Furber) on a validation split (``streamsnn calibrate``).

1. One pass over the split at full length, collecting every sample's accumulated output after
   every slice (O_t, N×T×K) and the quantised ANN's logits on the same samples.
2. Temperature scaling (Guo et al.) of the ANN logits: τ minimising the validation NLL.
3. α: T for QCFS (the number of steps), 2^b − 1 = L for QFFS, or a given value.
4. The threshold scan over the policy's own confidence (``DynamicConfidence.confidence_of``:
   ``max softmax(O_t / (α·τ))``): a sample exits at the first step whose confidence is above the
   threshold c, else at T or its last slice. The exit step is non-decreasing in c, so one
   linear pass over every (sample, step) pair gives mean steps and accuracy for all thresholds
   of a grid at once (the supplement's monotone scan, like an ROC sweep): O(N·T + grid).
5. The Pareto front of (mean steps, accuracy) and the choice: the lowest mean steps whose
   accuracy is at least the full-T accuracy minus ``tolerance`` (the paper's rule), or, with
   ``target_saving``, the most conservative threshold that still saves that much.

The calibration file (JSON) is what the ``dynamic_confidence`` exit policy reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamsnn.config import PipelineConfig
from streamsnn.lab.progress import Stages
from streamsnn.policies.calibration import CALIBRATION_FORMAT, Calibration
from streamsnn.policies.exit import DynamicConfidence, FixedExitConfig
from streamsnn.prediction import read_out
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.runtime.build import load_model
from streamsnn.sinks import Sink
from streamsnn.snn.counting import counted_run
from streamsnn.snn.quant import QCFS


@dataclass
class Collected:
    """A split collected at full length for replaying exit rules offline (N samples in sample
    order, T steps collected, K classes). A sample with fewer than T slices keeps its last values
    after its end."""

    outputs: np.ndarray  # N×T×K, the accumulated output O_t after each step
    labels: np.ndarray  # N
    lengths: np.ndarray  # N, each sample's number of slices (its steps at full length; may exceed T)
    input_latency_ms: np.ndarray  # N×T, sensor time from the sample's first event to each slice's end
    streams: list[str]  # N, each sample's stream
    samples: np.ndarray  # N, each sample's number in the split
    alpha: float | str  # the pipeline's model.alpha: the read-out of its predictions
    ann_logits: np.ndarray  # N×K, the quantised ANN on each sample's mean input
    spikes: np.ndarray  # N×T, spikes of all layers since the start of the sample (cumulative)
    neurons: int
    energy_uj: np.ndarray  # N×T, estimated energy since the start of the sample (cumulative, µJ)
    ann_energy_uj: float  # one dense pass of the same network

    @property
    def steps(self) -> int:
        """T, the steps collected."""
        return int(self.outputs.shape[1])

    @cached_property
    def classes(self) -> np.ndarray:
        """N×T: the class the runtime reads out after each step (``read_out``)."""
        rows = [[read_out(o, t + 1, self.alpha)[2] for t, o in enumerate(r)] for r in self.outputs.tolist()]
        return np.array(rows, dtype=np.int64).reshape(self.outputs.shape[:2])


class OutputCollector(Sink):
    """A sink keeping every sample's predictions in step order: accumulated output, spikes,
    energy (µJ) and input latency (ms)."""

    def __init__(self) -> None:
        self.rows: dict[int, list[tuple[np.ndarray, float, float, float]]] = {}
        self.streams: dict[int, str] = {}

    def write(self, pred: Any) -> None:
        assert pred.output is not None
        output = np.asarray(pred.output, dtype=np.float64)
        row = (output, float(pred.spikes), pred.energy_uj, pred.input_latency_ms)
        self.rows.setdefault(pred.sample, []).append(row)
        self.streams[pred.sample] = pred.stream


def collect(cfg: PipelineConfig, split: str, steps: int | None = None, progress: bool = True) -> Collected:
    """Run ``cfg``'s pipeline on ``split`` without early exit and collect each sample's first
    ``steps`` predictions (T; default: all of them, T = the longest sample)."""
    exit_cfg = FixedExitConfig(type="fixed", steps=steps or 1_000_000)
    policy = cfg.policy.model_copy(update={"exit": exit_cfg})
    runtime = cfg.runtime.model_copy(update={"full_t": True, "progress": progress, "count_operations": True})
    run_cfg = cfg.on_split(split).model_copy(update={"policy": policy, "runtime": runtime, "sinks": []})
    pipe = build_pipeline(run_cfg)
    collector = OutputCollector()
    pipe.sinks.append(collector)
    result = run_pipeline(pipe)
    outcomes = sorted(result.outcomes, key=lambda o: o.sample)
    t_n = steps or max(len(r) for r in collector.rows.values())
    outputs, spikes, energy, latency = (
        np.stack([_pad([np.asarray(r[k]) for r in collector.rows[o.sample]], t_n) for o in outcomes])
        for k in range(4)
    )
    net = pipe.operator.net
    one_step = torch.zeros(1, 1, *pipe.encoder.shape, dtype=pipe.operator.dtype, device=pipe.operator.device)
    return Collected(
        outputs=outputs,
        labels=np.array([o.label for o in outcomes]),
        lengths=np.array([o.steps_full_t for o in outcomes], dtype=np.int64),
        input_latency_ms=latency,
        streams=[collector.streams[o.sample] for o in outcomes],
        samples=np.array([o.sample for o in outcomes], dtype=np.int64),
        alpha=cfg.model.alpha,
        ann_logits=np.array([o.ann_output for o in outcomes], dtype=np.float64),
        spikes=spikes,
        neurons=sum(int(np.prod(s)) for s in net.neuron_shapes),
        energy_uj=energy,
        ann_energy_uj=counted_run(net, one_step)[1].ann_energy_uj(),
    )


def collecting(cfg: PipelineConfig, split: str) -> str:
    """The stage line of ``collect``: what the pass over ``split`` does."""
    return (
        f"running {cfg.name} on the {split} split at full length, keeping every step's output; "
        "then the quantised ANN on each sample's mean input"
    )


def _pad(rows: list[np.ndarray], t_n: int) -> np.ndarray:
    """A sample's values over exactly T steps: a sample with fewer slices keeps its last values
    (its decision was final at its last slice)."""
    rows = rows[:t_n]
    return np.stack(rows + [rows[-1]] * (t_n - len(rows)))


def exit_max_steps(cfg: PipelineConfig) -> int | None:
    """The steps of a fixed exit, else its ``max_steps`` (None: none)."""
    e = cfg.policy.exit
    if isinstance(e, FixedExitConfig):
        return e.steps
    return getattr(e, "max_steps", None)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature τ > 0 minimising the negative log-likelihood of softmax(logits / τ)."""
    from scipy.optimize import minimize_scalar

    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels)

    def nll(log_t: float) -> float:
        return float(torch.nn.functional.cross_entropy(z / math.exp(log_t), y))

    res = minimize_scalar(nll, bounds=(math.log(0.05), math.log(20.0)), method="bounded")
    return float(math.exp(res.x))


def confidences(data: Collected, alpha: float, temperature: float = 1.0) -> np.ndarray:
    """N×T: Dynamic Confidence's confidence after each step, by the policy's own scoring
    (``DynamicConfidence.confidence_of``)."""
    score = DynamicConfidence.confidence_of
    return np.array(
        [[score(o, alpha, temperature) for o in rows] for rows in data.outputs.tolist()], dtype=np.float64
    ).reshape(data.outputs.shape[:2])


@dataclass
class Scan:
    """Mean steps and accuracy for every threshold of a grid."""

    thresholds: np.ndarray
    mean_steps: np.ndarray
    accuracy: np.ndarray


def threshold_grid(resolution: float) -> np.ndarray:
    """0, r, 2r, …, 1 (r = ``resolution``)."""
    k = round(1 / resolution)
    return np.arange(k + 1, dtype=np.float64) * resolution


def threshold_scan(conf: np.ndarray, correct: np.ndarray, resolution: float) -> Scan:
    """The monotone linear scan. A sample exits at the first step t with ``conf_t > c`` (strict),
    else at T. With m_t the running maximum of its confidence, it exits at t < T exactly for
    m_{t−1} ≤ c < m_t, and at T for c ≥ m_{T−1}; each (sample, step) pair therefore adds its step
    and correctness to one contiguous range of the threshold grid (difference arrays)."""
    grid = threshold_grid(resolution)
    n, t_n = conf.shape
    m = np.maximum.accumulate(conf, axis=1)
    lower = np.concatenate([np.full((n, 1), -np.inf), m[:, :-1]], axis=1)  # m_{t−1}
    upper = m.copy()
    upper[:, -1] = np.inf  # the last step takes every threshold above m_{T−1}
    lo = np.searchsorted(grid, lower.ravel(), side="left")
    hi = np.searchsorted(grid, upper.ravel(), side="left")
    step = np.broadcast_to(np.arange(1, t_n + 1, dtype=np.float64), (n, t_n)).ravel()
    ok = np.asarray(correct, dtype=np.float64).ravel()
    k = len(grid)
    d_steps = np.bincount(lo, step, minlength=k + 1) - np.bincount(hi, step, minlength=k + 1)
    d_ok = np.bincount(lo, ok, minlength=k + 1) - np.bincount(hi, ok, minlength=k + 1)
    return Scan(grid, np.cumsum(d_steps)[:k] / n, np.cumsum(d_ok)[:k] / n)


def dynamic_confidence_scan(data: Collected, alpha: float, temperature: float, resolution: float) -> Scan:
    """Mean steps and accuracy of Dynamic Confidence up to T steps at every threshold of the
    grid (``threshold_scan``) on collected outputs: the policy's confidence after each step,
    the runtime's class, and a sample shorter than T ending at its last slice whatever the
    threshold (``end_of_sample``)."""
    conf = confidences(data, alpha, temperature)
    conf[np.arange(data.steps) >= data.lengths[:, None] - 1] = np.inf
    return threshold_scan(conf, data.classes == data.labels[:, None], resolution)


def pareto_front(scan: Scan) -> np.ndarray:
    """Indices of the Pareto-efficient thresholds: no other threshold has fewer or equal mean
    steps and higher accuracy (ties: the lowest threshold)."""
    order = np.lexsort((scan.thresholds, -scan.accuracy, scan.mean_steps))
    front, best = [], -np.inf
    for i in order:
        if scan.accuracy[i] > best + 1e-12:
            front.append(i)
            best = scan.accuracy[i]
    return np.array(front, dtype=np.int64)


def choose_threshold(
    scan: Scan,
    full_accuracy: float,
    tolerance: float = 0.0,
    target_saving: float | None = None,
    steps: int = 1,
) -> int:
    """Index of the chosen threshold among those whose accuracy is at least ``full_accuracy −
    tolerance``: the paper's rule takes the lowest mean steps (ties: the highest threshold);
    with ``target_saving`` the most conservative (highest) threshold that still saves that
    fraction of the ``steps`` — a choice at the edge of the no-loss region of a validation set
    tends to lose a few test samples, one well inside it does not (on digits-dvs the paper's
    rule lost 2.2 pp on test; see the README's Early exit section)."""
    ok = np.flatnonzero(scan.accuracy >= full_accuracy - tolerance - 1e-12)
    if target_saving is not None:
        saving_ok = ok[scan.mean_steps[ok] <= (1 - target_saving) * steps + 1e-12]
        if len(saving_ok):
            return int(saving_ok[np.argmax(scan.thresholds[saving_ok])])
    best_steps = scan.mean_steps[ok].min()
    tied = ok[scan.mean_steps[ok] <= best_steps + 1e-12]
    return int(tied[np.argmax(scan.thresholds[tied])])


def default_alpha(cfg: PipelineConfig, steps: int, levels: int | None) -> float:
    """Dynamic Confidence's α: 2^b − 1 (= L) for QFFS, T for QCFS."""
    if cfg.model.conversion == "qffs" and levels:
        return float(levels)
    return float(steps)


def calibrate(
    cfg: PipelineConfig,
    split: str = "val",
    resolution: float = 1e-4,
    tolerance: float = 0.0,
    alpha: float | None = None,
    temperature: bool = True,
    collected: Collected | None = None,
    progress: bool = True,
    target_saving: float | None = None,
) -> tuple[Calibration, Scan, Collected]:
    """Calibrate Dynamic Confidence for ``cfg`` on ``split`` (never the test split); see
    ``choose_threshold`` for ``tolerance`` and ``target_saving``; ``progress``: stage lines and
    the run's bar on stderr."""
    if split == "test":
        raise ValueError("calibration chooses thresholds, so it never looks at the test split; use val")
    stage = Stages("calibrate", progress)
    if collected is None:
        stage(collecting(cfg, split))
    data = collected or collect(cfg, split, exit_max_steps(cfg), progress=progress)
    t_n = data.steps
    levels = _qcfs_levels(cfg)
    a = float(alpha) if alpha else default_alpha(cfg, t_n, levels)
    grid = len(threshold_grid(resolution))
    # the temperature is fitted on the ANN's logits; a spiking model (trained directly or imported
    # from NIR) has no ANN: τ = 1, said on the stage line
    temperature = temperature and data.ann_logits.ndim == 2
    fitted = "fitting the temperature, " if temperature else "no ANN to fit a temperature on (τ = 1), "
    stage(f"{fitted}scanning {grid:,} thresholds on {len(data.labels)} samples × {t_n} steps")
    tau = fit_temperature(data.ann_logits, data.labels) if temperature else 1.0
    scan = dynamic_confidence_scan(data, a, tau, resolution)
    full = float((data.classes[:, -1] == data.labels).mean())
    k = choose_threshold(scan, full, tolerance, target_saving, t_n)
    pts = pareto_front(scan)
    cal = Calibration(
        format=CALIBRATION_FORMAT,
        pipeline=cfg.name,
        split=split,
        steps=t_n,
        alpha=a,
        temperature=tau,
        threshold=float(scan.thresholds[k]),
        resolution=resolution,
        tolerance=tolerance,
        target_saving=target_saving,
        accuracy_full_T=full,
        accuracy=float(scan.accuracy[k]),
        mean_steps=float(scan.mean_steps[k]),
        saving=float(1 - scan.mean_steps[k] / t_n),
        front=[[float(scan.thresholds[i]), float(scan.mean_steps[i]), float(scan.accuracy[i])] for i in pts],
    )
    return cal, scan, data


def _qcfs_levels(cfg: PipelineConfig) -> int | None:
    levels = {m.levels for m in load_model(cfg.model).ann.modules() if isinstance(m, QCFS)}
    return max(levels) if levels else None


def format_calibration(cal: Calibration, scan: Scan) -> str:
    """The chosen calibration in a few lines of text."""
    grid = f"{len(scan.thresholds)} thresholds, step {cal.resolution:g}"
    return "\n".join(
        [
            f"Dynamic Confidence for {cal.pipeline} on {cal.split} ({grid})",
            f"  alpha {cal.alpha:g}   temperature {cal.temperature:.4f}   threshold {cal.threshold:.4f}",
            f"  accuracy {100 * cal.accuracy:.2f} % (full T: {100 * cal.accuracy_full_T:.2f} %)",
            f"  mean steps {cal.mean_steps:.3f} of {cal.steps}   saving {100 * cal.saving:.1f} %",
            f"  Pareto front: {len(cal.front)} point{'' if len(cal.front) == 1 else 's'}",
        ]
    )


def write_calibration(cal: Calibration, scan: Scan, path: Path) -> list[Path]:
    """The calibration file at ``path`` and its plot beside it (PNG)."""
    return [cal.save(path), plot_scan(scan, cal, path.with_suffix(".png"))]


def plot_scan(scan: Scan, cal: Calibration, path: Path) -> Path:
    """The calibration's PNG (``scan_figure``) at ``path``."""
    import matplotlib.pyplot as plt

    fig = scan_figure(scan, cal)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def scan_figure(scan: Scan, cal: Calibration) -> Any:
    """Accuracy vs mean steps for every threshold, the Pareto front (its points joined; a front
    of one point is that point) and the chosen threshold: a matplotlib figure (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(scan.mean_steps, 100 * scan.accuracy, ".", ms=2, color="0.7", label="every threshold")
    front = np.array(cal.front)
    points = "point" if len(front) == 1 else "points"
    ax.plot(
        front[:, 1],
        100 * front[:, 2],
        "-o",
        ms=2.5,
        lw=1.2,
        color="tab:blue",
        label=f"Pareto front ({len(front)} {points})",
    )
    ax.axhline(100 * cal.accuracy_full_T, color="tab:gray", ls="--", lw=1, label=f"full T = {cal.steps}")
    ax.plot(
        [cal.mean_steps],
        [100 * cal.accuracy],
        "o",
        ms=8,
        mfc="none",
        mew=2,
        color="tab:red",
        label=f"chosen c = {cal.threshold:.4f}: {cal.mean_steps:.2f} steps, {100 * cal.accuracy:.2f} %",
    )
    ax.set_xlabel("mean steps")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0, cal.steps + 0.5)
    # down to 15 points below full T, or to the lowest threshold's accuracy when all are above it
    low = max(100 * cal.accuracy_full_T - 15, 100 * float(scan.accuracy.min()) - 1)
    ax.set_ylim(max(0.0, low), 100.5)
    ax.set_title(
        f"Dynamic Confidence: {cal.pipeline} on {cal.split} (α = {cal.alpha:g}, τ = {cal.temperature:.3f})",
        fontsize=10,
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


__all__ = [
    "Collected",
    "Scan",
    "calibrate",
    "choose_threshold",
    "collect",
    "confidences",
    "dynamic_confidence_scan",
    "exit_max_steps",
    "fit_temperature",
    "format_calibration",
    "pareto_front",
    "plot_scan",
    "scan_figure",
    "threshold_scan",
    "write_calibration",
]
