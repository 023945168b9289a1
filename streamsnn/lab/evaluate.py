"""Evaluation of exit policies on a split (``streamsnn evaluate``): the papers' table and plots.

One full-length pass collects every sample's accumulated output after every slice
(``lab.calibrate.collect``). Each row then replays those outputs through a real exit policy,
built from its ``policy.exit`` config: for every sample, the prediction the runtime builds after
each slice (the same read-out, step, label and sensor time waited; the first slice's input for
the policy network) goes to ``policy.decide`` until it exits or the sample ends
(``end_of_sample``). A row is therefore what ``streamsnn run`` with that exit policy decides, and
all rows share the same SNN outputs: fixed T, SEENN-I (the pipeline's confidence options),
Dynamic Confidence (a calibration chosen on validation), SEENN-II (a policy network), the
pipeline's exit policy as configured, and the oracle (the first correct step). Wall time cannot
be replayed, so a ``deadline`` with ``compute_ms`` is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamsnn.config import ExitConfig, PipelineConfig
from streamsnn.lab.calibrate import Collected, calibrate, collect, collecting, confidences
from streamsnn.lab.policy_training import first_slice_inputs
from streamsnn.lab.progress import Stages
from streamsnn.policies import EXIT_POLICIES, ExitPolicy
from streamsnn.policies.calibration import Calibration, load_calibration
from streamsnn.policies.exit import (
    ConfidenceExitConfig,
    DeadlineExitConfig,
    DynamicConfidenceExitConfig,
    FixedExitConfig,
    OracleExitConfig,
)
from streamsnn.policies.policy_net import PolicyNetExitConfig
from streamsnn.prediction import Prediction, read_out
from streamsnn.runtime import build_pipeline


def check_replayable(config: ExitConfig) -> None:
    """Refuse what a replay of collected outputs cannot reproduce: wall time computed."""
    if isinstance(config, DeadlineExitConfig) and config.compute_ms is not None:
        raise ValueError(
            "policy.exit.compute_ms: a budget of wall time computed cannot be replayed offline "
            "(evaluate replays collected outputs, it does not time them); measure it with "
            "`streamsnn run`, or evaluate with input_ms or max_steps only"
        )


def predictions(data: Collected, i: int, first_input: torch.Tensor | None = None) -> Iterator[Prediction]:
    """Sample ``i``'s predictions as the runtime builds them after each of its slices (at most
    the T collected): the read-out of its accumulated output (the pipeline's ``model.alpha``), the
    step, label, sensor time waited, spikes and energy. ``first_input``: its first slice's input
    (1×C×H×W), for policies that read inputs. Not replayed: wall-clock times (0 here), slice
    times and the inputs of later slices."""
    for t in range(min(int(data.lengths[i]), data.steps)):
        output = data.outputs[i, t].tolist()
        probs, confidence, cls = read_out(output, t + 1, data.alpha)
        yield Prediction(
            stream=data.streams[i],
            sample=int(data.samples[i]),
            step=t + 1,
            t_start_us=0,
            t_end_us=0,
            cls=cls,
            confidence=confidence,
            probs=probs,
            label=int(data.labels[i]),
            input_latency_ms=float(data.input_latency_ms[i, t]),
            spikes=int(data.spikes[i, t]),
            energy_uj=float(data.energy_uj[i, t]),
            output=output,
            input=first_input if t == 0 else None,
        )


@dataclass
class Exits:
    """Each sample's exit decision: step (1-based), class and reason."""

    steps: np.ndarray
    classes: np.ndarray
    reasons: list[str]


def replay(policy: ExitPolicy, data: Collected, first_inputs: torch.Tensor | None = None) -> Exits:
    """Every sample's decision by ``policy`` on the collected outputs, as the runtime decides it
    slice by slice; ``first_inputs``: N×C×H×W, each sample's first slice input."""
    steps, classes, reasons = [], [], []
    for i in range(len(data.labels)):
        x = None if first_inputs is None else first_inputs[i : i + 1]
        reason = None
        for pred in predictions(data, i, x):
            reason = policy.decide(pred)
            if reason is None and pred.step == data.lengths[i]:
                reason = "end_of_sample"
            if reason is not None:
                break
        if reason is None:
            raise ValueError(
                f"sample {data.samples[i]}: the {policy.name} exit is still open after the "
                f"{data.steps} steps collected (the sample has {data.lengths[i]} slices)"
            )
        steps.append(pred.step)
        classes.append(pred.cls)
        reasons.append(reason)
    return Exits(np.array(steps, dtype=np.int64), np.array(classes, dtype=np.int64), reasons)


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
    config: dict[str, Any]  # the exit policy's ``policy.exit`` config
    accuracy: float
    mean_steps: float
    saving: float  # of the table's T
    spikes_per_neuron: float
    energy_uj: float  # mean estimated energy per sample up to its exit
    exits: Exits


def row(method: str, config: ExitConfig, data: Collected, exits: Exits, steps: int) -> PolicyRow:
    """A table row from each sample's exit; ``steps``: the table's T."""
    n = len(data.labels)
    idx = exits.steps - 1
    spikes = data.spikes[np.arange(n), idx].mean() / max(data.neurons, 1)
    energy = data.energy_uj[np.arange(n), idx].mean()
    mean_steps = float(exits.steps.mean())
    accuracy = float((exits.classes == data.labels).mean())
    return PolicyRow(
        method,
        config.model_dump(),
        accuracy,
        mean_steps,
        1 - mean_steps / steps,
        float(spikes),
        float(energy),
        exits,
    )


def comparison(
    cfg: PipelineConfig, calibration: Calibration, calibration_path: str, policy_net: str | None = None
) -> list[tuple[str, ExitConfig]]:
    """The rows of ``streamsnn evaluate`` (method, ``policy.exit`` config), fixed T first and the
    oracle last, at the calibration's T: SEENN-I with the pipeline's confidence options (else
    threshold 0.9 up to T), Dynamic Confidence from the calibration file, SEENN-II with
    ``policy_net`` (or the pipeline's policy network), and the pipeline's exit as configured."""
    steps = calibration.steps
    configured = cfg.policy.exit
    seenn = (
        configured
        if isinstance(configured, ConfidenceExitConfig)
        else ConfidenceExitConfig(type="confidence", max_steps=steps)
    )
    score = "" if seenn.score == "max_softmax" else f", {seenn.score}"
    rows: list[tuple[str, ExitConfig]] = [
        (f"fixed T={steps}", FixedExitConfig(type="fixed", steps=steps)),
        (f"SEENN-I (c={seenn.threshold:g}{score})", seenn),
        (
            f"Dynamic Confidence (c={calibration.threshold:.4f})",
            DynamicConfidenceExitConfig(type="dynamic_confidence", calibration=calibration_path),
        ),
    ]
    if policy_net is None and isinstance(configured, PolicyNetExitConfig):
        policy_net = configured.weights
    if policy_net:
        rows.append(("SEENN-II (policy network)", PolicyNetExitConfig(type="policy_net", weights=policy_net)))
    options = " ".join(
        f"{k}={v}" for k, v in configured.model_dump(exclude={"type"}).items() if v is not None
    )
    rows.append((f"configured: {configured.type} {options}".rstrip(), configured))
    rows.append(("oracle (first correct step)", OracleExitConfig(type="oracle", max_steps=steps)))
    return rows


def build_policies(rows: list[tuple[str, ExitConfig]]) -> list[tuple[str, ExitConfig, ExitPolicy]]:
    """Each row's exit policy, checked (``check_replayable``) and built, so that the files they
    read (calibration, policy network) are checked before any output is collected."""
    for _, config in rows:
        check_replayable(config)
    return [(method, config, EXIT_POLICIES.build(config)) for method, config in rows]


def evaluate_policies(
    data: Collected,
    policies: list[tuple[str, ExitConfig, ExitPolicy]],
    steps: int,
    first_inputs: Callable[[], torch.Tensor] | None = None,
) -> tuple[list[PolicyRow], dict[str, float]]:
    """A row per (method, ``policy.exit`` config, policy: ``build_policies``), each policy
    replayed on ``data``, and summary figures at the table's T = ``steps`` (ANN accuracy and
    energy, AET, empirical AET). ``first_inputs``: gives each sample's first slice input
    (N×C×H×W) when a policy reads inputs (``needs_input``)."""
    rows, inputs = [], None
    for method, config, policy in policies:
        if policy.needs_input and inputs is None and first_inputs is not None:
            inputs = first_inputs()
        rows.append(row(method, config, data, replay(policy, data, inputs), steps))
    correct = data.classes[:, :steps] == data.labels[:, None]
    ann = (
        float((data.ann_logits.argmax(-1) == data.labels).mean())
        if data.ann_logits.ndim == 2
        else float("nan")
    )
    summary = {
        "ann_accuracy": ann,
        "ann_energy_uj": data.ann_energy_uj,
        "aet": aet(correct),
        "empirical_aet": empirical_aet(correct),
        "steps": steps,
    }
    return rows, summary


@dataclass
class Evaluation:
    """``streamsnn evaluate``'s result: rows (fixed T first, oracle last) on the collected split."""

    split: str
    calibration: Path
    calibrated: bool  # no calibration file was found: it was chosen now, on val
    data: Collected
    rows: list[PolicyRow]
    summary: dict[str, float]
    pipeline: str = ""  # the pipeline's name, for the plots' titles


def evaluate(
    cfg: PipelineConfig,
    split: str,
    calibration: Path,
    policy_net: str | None = None,
    target_saving: float | None = None,
    progress: bool = True,
) -> Evaluation:
    """The rows of ``comparison`` on ``split``. Without a calibration file at ``calibration``
    Dynamic Confidence is calibrated on val first (``target_saving``: see ``calibrate``) and
    saved there: the evaluated split never chooses anything. Every policy's files are checked
    before anything runs (a policy network before calibrating, the rest before collecting)."""
    check_replayable(cfg.policy.exit)
    configured = cfg.policy.exit
    nets = [policy_net] if policy_net else []
    if isinstance(configured, PolicyNetExitConfig):
        nets.append(configured.weights)
    try:
        build_policies([("", PolicyNetExitConfig(type="policy_net", weights=net)) for net in nets])
    except ValueError as err:
        raise ValueError(f"policy network: {err}") from None
    stage = Stages("evaluate", progress)
    calibrated = not calibration.exists()
    if calibrated:
        stage(f"no calibration at {calibration}: calibrating Dynamic Confidence on val first")
        calibrate(cfg, "val", progress=progress, target_saving=target_saving)[0].save(calibration)
    cal = load_calibration(calibration)
    policies = build_policies(comparison(cfg, cal, str(calibration), policy_net))
    stage(collecting(cfg, split))
    data = collect(cfg, split, None, progress)  # every slice: a configured exit may go past T
    replay_cfg = cfg.on_split(split).model_copy(update={"sinks": []})

    def first_inputs() -> torch.Tensor:
        stage(f"reading each {split} sample's first slice for the policy network")
        return first_slice_inputs(build_pipeline(replay_cfg))[0]

    stage(f"replaying {len(policies)} exit policies on the collected outputs of {len(data.labels)} samples")
    rows, summary = evaluate_policies(data, policies, cal.steps, first_inputs)
    return Evaluation(split, calibration, calibrated, data, rows, summary, cfg.name)


def format_rows(rows: list[PolicyRow], summary: dict[str, float]) -> str:
    """The table (the oracle last: the steps column compares with it)."""
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


def write_evaluation(ev: Evaluation, out_dir: Path) -> list[Path]:
    """table.txt, evaluation.json (the summary and every row with each sample's exit step and
    reason) and the plots in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "table.txt"
    table.write_text(format_rows(ev.rows, ev.summary) + "\n")
    rows = [
        {
            **{k: v for k, v in r.__dict__.items() if k != "exits"},
            "exit_steps": r.exits.steps.tolist(),
            "exit_reasons": r.exits.reasons,
        }
        for r in ev.rows
    ]
    report = {
        **ev.summary,
        "split": ev.split,
        "calibration": str(ev.calibration),
        "samples": ev.data.samples.tolist(),
        "rows": rows,
    }
    path = out_dir / "evaluation.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    title = f"{ev.pipeline} on {ev.split}" if ev.pipeline else ev.split
    return [table, path, *plot_evaluation(ev.data, ev.rows, out_dir, title)]


def same_exits(rows: list[PolicyRow]) -> list[list[PolicyRow]]:
    """``rows`` grouped by identical decisions (every sample's exit step and class), in order:
    the configured exit is often one of the compared policies."""
    groups: list[list[PolicyRow]] = []
    for r in rows:
        for group in groups:
            first = group[0].exits
            if np.array_equal(first.steps, r.exits.steps) and np.array_equal(first.classes, r.exits.classes):
                group.append(r)
                break
        else:
            groups.append([r])
    return groups


def plot_evaluation(data: Collected, rows: list[PolicyRow], out_dir: Path, title: str = "") -> list[Path]:
    """The evaluation's PNGs (``evaluation_figures``) in ``out_dir``."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in evaluation_figures(data, rows, title).items():
        written.append(out_dir / name)
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def evaluation_figures(data: Collected, rows: list[PolicyRow], title: str = "") -> dict[str, Any]:
    """accuracy_vs_steps.png (fixed-T curve, policy points, oracle), exit_steps.png (a histogram
    of exit steps per policy, right and wrong stacked, on one step axis) and confidence.png (mean
    confidence over time for samples right and wrong at full T), as matplotlib figures (Agg) by
    file name; ``rows`` as ``comparison`` orders them (fixed T first, oracle last); policies with
    the same decisions share a point and a panel; ``title`` (pipeline and split) heads each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    t_n = data.steps
    correct = data.classes == data.labels[:, None]
    groups = same_exits(rows[1:])  # fixed T is the curve
    # a group: its first method, then the others by their short names ("configured")
    name = lambda group: " = ".join([group[0].method] + [r.method.split(":")[0] for r in group[1:]])  # noqa: E731
    head = f" ({title})" if title else ""
    figures = {}

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(np.arange(1, t_n + 1), 100 * correct.mean(0), "-", color="0.4", label="fixed T (t steps)")
    for group, marker in zip(groups, "osD^vP", strict=False):
        r = group[0]
        ax.plot([r.mean_steps], [100 * r.accuracy], marker, ms=8, label=name(group))
    ax.set_xlabel("mean steps")
    ax.set_ylabel("accuracy (%)")
    ax.set_xlim(0, t_n + 0.5)
    ax.set_ylim(max(0, 100 * correct[:, -1].mean() - 20), 100.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"accuracy vs mean steps{head}", fontsize=10)
    fig.tight_layout()
    figures["accuracy_vs_steps.png"] = fig

    fig, axes = plt.subplots(
        len(groups), 1, figsize=(7, 1.1 + 1.35 * len(groups)), sharex=True, squeeze=False
    )
    steps = np.arange(1, t_n + 1)
    for ax, group in zip(axes[:, 0], groups, strict=True):
        r = group[0]
        right = r.exits.classes == data.labels
        n_right = np.bincount(r.exits.steps[right], minlength=t_n + 1)[1 : t_n + 1]
        n_wrong = np.bincount(r.exits.steps[~right], minlength=t_n + 1)[1 : t_n + 1]
        ax.bar(steps, n_right, width=0.85, color="tab:green", label="right")
        ax.bar(steps, n_wrong, width=0.85, bottom=n_right, color="tab:red", label="wrong")
        ax.axvline(r.mean_steps, color="k", lw=1, ls="--")
        ax.set_ylim(0, 1.15 * max(1, int((n_right + n_wrong).max())))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=3))
        ax.set_title(
            f"{name(group)}: mean {r.mean_steps:.2f} (dashed), {100 * r.accuracy:.2f} %",
            fontsize=8,
            loc="left",
        )
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("exit step")
    axes[-1, 0].set_xlim(0.4, t_n + 0.6)
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.supylabel("samples", fontsize=9)
    fig.suptitle(f"exit steps per policy{head}", fontsize=10)
    fig.tight_layout()
    figures["exit_steps.png"] = fig

    fig, ax = plt.subplots(figsize=(6, 4))
    conf = confidences(data, float(t_n))
    right = correct[:, -1]
    if right.any():
        ax.plot(steps, conf[right].mean(0), label=f"right at full T ({right.sum()})")
    if (~right).any():
        ax.plot(steps, conf[~right].mean(0), label=f"wrong at full T ({(~right).sum()})")
    ax.set_xlabel("step")
    ax.set_ylabel(f"mean confidence, softmax(O_t / {t_n})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"confidence over time{head}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    figures["confidence.png"] = fig
    return figures
