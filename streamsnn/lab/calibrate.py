"""Calibration of Dynamic Confidence (Li & Furber) on a validation split (``streamsnn calibrate``).

1. One pass over the split at full length, collecting every sample's accumulated output after
   every slice (O_t, N×T×K) and the quantised ANN's logits on the same samples.
2. Temperature scaling (Guo et al.) of the ANN logits: τ minimising the validation NLL.
3. α: T for QCFS (the number of steps), 2^b − 1 = L for QFFS, or a given value.
4. The threshold scan: confidence ``max softmax(O_t / (α·τ))``; a sample exits at the first step
   whose confidence is above the threshold c. The exit step is non-decreasing in c, so one
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
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamsnn.config import PipelineConfig
from streamsnn.policies.calibration import CALIBRATION_FORMAT, Calibration
from streamsnn.policies.exit import FixedExitConfig
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sinks import Sink
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.counting import counted_run
from streamsnn.snn.quant import QCFS


@dataclass
class Collected:
    """Per-step accumulated outputs of a split: ``outputs`` N×T×K, ``labels`` N, ``ann_logits``
    N×K (the quantised ANN on each sample's mean input)."""

    outputs: np.ndarray
    labels: np.ndarray
    ann_logits: np.ndarray
    spikes: np.ndarray  # N×T, spikes of all layers since the start of the sample (cumulative)
    neurons: int
    energy_uj: np.ndarray  # N×T, estimated energy since the start of the sample (cumulative, µJ)
    ann_energy_uj: float  # one dense pass of the same network


class OutputCollector(Sink):
    """A sink keeping every prediction's accumulated output by (sample, step)."""

    def __init__(self) -> None:
        self.rows: dict[int, list[np.ndarray]] = {}
        self.spikes: dict[int, list[float]] = {}
        self.energy: dict[int, list[float]] = {}

    def write(self, pred: Any) -> None:
        assert pred.output is not None
        self.rows.setdefault(pred.sample, []).append(np.asarray(pred.output, dtype=np.float64))
        self.spikes.setdefault(pred.sample, []).append(float(pred.spikes))
        self.energy.setdefault(pred.sample, []).append(pred.energy_uj)


def collect(cfg: PipelineConfig, split: str, steps: int | None = None, progress: bool = True) -> Collected:
    """Run ``cfg``'s pipeline on ``split`` without early exit and collect per-step outputs.
    ``steps``: T (default: the exit policy's max steps, else every slice of the sample)."""
    t_max = steps or exit_max_steps(cfg)
    exit_cfg = FixedExitConfig(type="fixed", steps=t_max or 1_000_000)
    policy = cfg.policy.model_copy(update={"exit": exit_cfg})
    runtime = cfg.runtime.model_copy(update={"full_t": True, "progress": progress, "count_operations": True})
    run_cfg = cfg.on_split(split).model_copy(update={"policy": policy, "runtime": runtime, "sinks": []})
    pipe = build_pipeline(run_cfg)
    collector = OutputCollector()
    pipe.sinks.append(collector)
    result = run_pipeline(pipe)
    outcomes = sorted(result.outcomes, key=lambda o: o.sample)
    t_n = t_max or max(len(r) for r in collector.rows.values())
    outputs = np.stack([_pad(collector.rows[o.sample], t_n) for o in outcomes])
    labels = np.array([o.label for o in outcomes])
    ann = np.array([o.ann_output for o in outcomes], dtype=np.float64)
    spikes, energy = (
        np.stack([_pad([np.array(v) for v in per_sample[o.sample]], t_n) for o in outcomes])
        for per_sample in (collector.spikes, collector.energy)
    )
    net = pipe.operator.net
    neurons = sum(int(np.prod(s)) for s in net.neuron_shapes)
    one_step = torch.zeros(1, 1, *pipe.encoder.shape, dtype=pipe.operator.dtype, device=pipe.operator.device)
    ann_energy = counted_run(net, one_step)[1].ann_energy_uj()
    return Collected(outputs, labels, ann, spikes, neurons, energy, ann_energy)


def _pad(rows: list[np.ndarray], t_n: int) -> np.ndarray:
    """A sample's outputs over exactly T steps: a sample with fewer slices keeps its last output
    (its decision was final at its last slice)."""
    rows = rows[:t_n]
    return np.stack(rows + [rows[-1]] * (t_n - len(rows)))


def exit_max_steps(cfg: PipelineConfig) -> int | None:
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


def confidences(outputs: np.ndarray, scale: float) -> np.ndarray:
    """``max softmax(O_t / scale)`` for N×T×K outputs → N×T."""
    z = torch.as_tensor(outputs, dtype=torch.float64) / scale
    return torch.softmax(z, dim=-1).max(dim=-1).values.numpy()


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


def naive_scan(conf: np.ndarray, correct: np.ndarray, thresholds: np.ndarray) -> Scan:
    """The same result, one threshold at a time (reference and benchmark baseline)."""
    n, t_n = conf.shape
    steps, acc = [], []
    rows = np.arange(n)
    for c in thresholds:
        above = conf > c
        exit_t = np.where(above.any(axis=1), above.argmax(axis=1), t_n - 1)
        steps.append(exit_t.mean() + 1)
        acc.append(np.asarray(correct)[rows, exit_t].mean())
    return Scan(np.asarray(thresholds), np.array(steps), np.array(acc))


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
    ``choose_threshold`` for ``tolerance`` and ``target_saving``."""
    if split == "test":
        raise ValueError("calibration chooses thresholds, so it never looks at the test split; use val")
    data = collected or collect(cfg, split, progress=progress)
    t_n = data.outputs.shape[1]
    levels = _qcfs_levels(cfg)
    a = float(alpha) if alpha else default_alpha(cfg, t_n, levels)
    tau = fit_temperature(data.ann_logits, data.labels) if temperature else 1.0
    conf = confidences(data.outputs, a * tau)
    correct = data.outputs.argmax(-1) == data.labels[:, None]
    scan = threshold_scan(conf, correct, resolution)
    full = float(correct[:, -1].mean())
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
    levels = {m.levels for m in load_checkpoint(cfg.model.weights).ann.modules() if isinstance(m, QCFS)}
    return max(levels) if levels else None


def plot_scan(scan: Scan, cal: Calibration, path: Path) -> Path:
    """Accuracy vs mean steps for every threshold, the Pareto front and the chosen point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(scan.mean_steps, 100 * scan.accuracy, ".", ms=2, color="0.7", label="thresholds")
    front = np.array(cal.front)
    ax.plot(front[:, 1], 100 * front[:, 2], "-", color="tab:blue", label="Pareto front")
    ax.axhline(100 * cal.accuracy_full_T, color="tab:gray", ls="--", lw=1, label=f"full T = {cal.steps}")
    ax.plot(
        [cal.mean_steps],
        [100 * cal.accuracy],
        "o",
        color="tab:red",
        label=f"chosen c = {cal.threshold:.4f}: {cal.mean_steps:.2f} steps",
    )
    ax.set_xlabel("mean steps")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(max(0, 100 * cal.accuracy_full_T - 15), 100.5)
    ax.set_title(f"Dynamic Confidence on {cal.split} (α = {cal.alpha:g}, τ = {cal.temperature:.3f})")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = [
    "Collected",
    "Scan",
    "calibrate",
    "choose_threshold",
    "collect",
    "confidences",
    "fit_temperature",
    "naive_scan",
    "pareto_front",
    "plot_scan",
    "threshold_scan",
]
