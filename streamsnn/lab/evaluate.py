"""Evaluation of exit policies on a split (``streamsnn evaluate``): the papers' table and plots.

One full-length pass collects every sample's accumulated output after every slice; each policy's
exit step is then the first step at which it would have stopped on those outputs (the same rule
the runtime applies slice by slice), so all policies are compared on identical SNN outputs:
fixed T (every T), SEENN-I (max softmax of the running sum / α over a threshold), Dynamic
Confidence (a calibration file chosen on validation), SEENN-II (a trained policy network's step
counts, chosen from each sample's first slice) and the oracle (the first correct step).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamsnn.lab.calibrate import Collected, confidences
from streamsnn.policies.calibration import Calibration


def aet(correct: np.ndarray) -> float:
    """Averaged expected time steps (SEENN): with c_t the number of samples correct at step t,
    ``[c_1 + Σ_{t≥2} t·(c_t − c_{t−1}) + (N − c_T)·T] / N``."""
    c = np.asarray(correct, dtype=np.float64).sum(axis=0)
    n, t_n = np.asarray(correct).shape
    steps = np.arange(1, t_n + 1)
    gained = np.diff(c, prepend=0.0)
    return float(((steps * gained).sum() + (n - c[-1]) * t_n) / n)


def empirical_aet(correct: np.ndarray) -> float:
    """Mean over samples of the earliest correct step (T when never correct): the oracle's
    mean steps."""
    correct = np.asarray(correct, dtype=bool)
    t_n = correct.shape[1]
    first = np.where(correct.any(axis=1), correct.argmax(axis=1) + 1, t_n)
    return float(first.mean())


@dataclass
class PolicyRow:
    method: str
    accuracy: float
    mean_steps: float
    saving: float
    spikes_per_neuron: float
    energy_uj: float  # mean estimated energy per sample up to its exit
    exits: np.ndarray  # exit step per sample (1-based)


def first_above(conf: np.ndarray, threshold: float) -> np.ndarray:
    """Exit step (1-based) of every sample: the first step with confidence > threshold, else T."""
    above = conf > threshold
    return np.where(above.any(axis=1), above.argmax(axis=1), conf.shape[1] - 1) + 1


def row(method: str, data: Collected, exits: np.ndarray) -> PolicyRow:
    n, t_n = data.outputs.shape[:2]
    idx = exits - 1
    pred = data.outputs[np.arange(n), idx].argmax(-1)
    spikes = data.spikes[np.arange(n), idx].mean() / max(data.neurons, 1)
    energy = data.energy_uj[np.arange(n), idx].mean()
    steps = float(exits.mean())
    accuracy = float((pred == data.labels).mean())
    return PolicyRow(method, accuracy, steps, 1 - steps / t_n, float(spikes), float(energy), exits)


def evaluate_policies(
    data: Collected,
    seenn_threshold: float,
    seenn_alpha: float,
    calibration: Calibration | None,
    policy_steps: np.ndarray | None = None,
) -> tuple[list[PolicyRow], dict[str, float]]:
    """Rows for fixed T, SEENN-I, Dynamic Confidence (with a calibration), SEENN-II (with the
    policy network's chosen step per sample) and the oracle, and summary figures (ANN accuracy
    and energy, AET, empirical AET)."""
    n, t_n = data.outputs.shape[:2]
    correct = data.outputs.argmax(-1) == data.labels[:, None]
    rows = [row(f"fixed T={t_n}", data, np.full(n, t_n))]
    rows.append(
        row(
            f"SEENN-I (c={seenn_threshold:g})",
            data,
            first_above(confidences(data.outputs, seenn_alpha), seenn_threshold),
        )
    )
    if calibration is not None:
        conf = confidences(data.outputs, calibration.alpha * calibration.temperature)
        rows.append(
            row(
                f"Dynamic Confidence (c={calibration.threshold:.4f})",
                data,
                first_above(conf, calibration.threshold),
            )
        )
    if policy_steps is not None:
        rows.append(row("SEENN-II (policy network)", data, np.minimum(policy_steps, t_n)))
    first_ok = np.where(correct.any(axis=1), correct.argmax(axis=1) + 1, t_n)
    rows.append(row("oracle (first correct step)", data, first_ok))
    ann = float((data.ann_logits.argmax(-1) == data.labels).mean()) if data.ann_logits.size else float("nan")
    summary = {
        "ann_accuracy": ann,
        "ann_energy_uj": data.ann_energy_uj,
        "aet": aet(correct),
        "empirical_aet": empirical_aet(correct),
        "steps": t_n,
    }
    return rows, summary


def format_rows(rows: list[PolicyRow], summary: dict[str, float]) -> str:
    head = [
        "method",
        "ANN %",
        "SNN %",
        "mean steps",
        "saving %",
        "spikes/neuron",
        "energy µJ",
        "vs oracle (steps)",
    ]
    oracle = rows[-1].mean_steps
    lines = [head]
    for r in rows:
        lines.append(
            [
                r.method,
                f"{100 * summary['ann_accuracy']:.2f}",
                f"{100 * r.accuracy:.2f}",
                f"{r.mean_steps:.2f}",
                f"{100 * r.saving:.1f}",
                f"{r.spikes_per_neuron:.3f}",
                f"{r.energy_uj:.3f}",
                f"{r.mean_steps - oracle:+.2f}",
            ]
        )
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    text = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths, strict=True))
        )
        for x in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append(f"ANN energy (one dense pass) {summary['ann_energy_uj']:.3f} µJ")
    text.append(f"AET {summary['aet']:.3f} steps, empirical AET {summary['empirical_aet']:.3f} (SEENN)")
    return "\n".join(text)


def plot_evaluation(data: Collected, rows: list[PolicyRow], out_dir: Path) -> list[Path]:
    """accuracy_vs_steps.png (fixed-T curve, policy points, oracle), exit_steps.png (histogram
    of the confidence policies' exit steps) and confidence.png (mean confidence over time for
    samples right and wrong at full T)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    t_n = data.outputs.shape[1]
    correct = data.outputs.argmax(-1) == data.labels[:, None]
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.arange(1, t_n + 1), 100 * correct.mean(0), "-", color="0.4", label="fixed T")
    for r, marker in zip(rows[1:], "osD^v", strict=False):
        ax.plot([r.mean_steps], [100 * r.accuracy], marker, ms=8, label=r.method)
    ax.set_xlabel("mean steps")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(max(0, 100 * correct[:, -1].mean() - 20), 100.5)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("accuracy vs latency")
    fig.tight_layout()
    written.append(out_dir / "accuracy_vs_steps.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.arange(0.5, t_n + 1.5)
    for r in rows[1:-1]:
        ax.hist(r.exits, bins=bins, alpha=0.6, label=f"{r.method}: mean {r.mean_steps:.2f}")
    ax.set_xlabel("exit step")
    ax.set_ylabel("samples")
    ax.set_title("exit steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(out_dir / "exit_steps.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    conf = confidences(data.outputs, float(t_n))
    right = correct[:, -1]
    steps = np.arange(1, t_n + 1)
    if right.any():
        ax.plot(steps, conf[right].mean(0), label=f"right at full T ({right.sum()})")
    if (~right).any():
        ax.plot(steps, conf[~right].mean(0), label=f"wrong at full T ({(~right).sum()})")
    ax.set_xlabel("step")
    ax.set_ylabel(f"mean confidence, softmax(O_t / {t_n})")
    ax.set_title("confidence over time")
    ax.legend(fontsize=8)
    fig.tight_layout()
    written.append(out_dir / "confidence.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
