"""The conversion table of the papers (Dynamic Confidence, Table 1 style) for a frame model:
ANN accuracy, SNN accuracy at several T per conversion method, spikes per neuron, synaptic
events, energy and Pareto latency (Dutson et al.: Σ_t (a_ANN − a_t), in accuracy × steps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from streamsnn.lab.anytime import AnytimeObjective, optimize_scaling, pareto_latency
from streamsnn.lab.progress import Stages
from streamsnn.snn.checkpoint import LoadedModel
from streamsnn.snn.convert import convert
from streamsnn.snn.counting import counted_run
from streamsnn.snn.network import SpikingNetwork
from streamsnn.sources.digits import digit_frames, digits_split


@dataclass
class MethodRow:
    method: str
    v0: float
    accuracy: dict[int, float]  # by T
    spikes_per_neuron: float  # at the largest T
    events_per_sample: float
    energy_uj: float
    pareto_latency: float


def frame_inputs(model: LoadedModel, split: str) -> tuple[torch.Tensor, np.ndarray]:
    """The evaluation frames (N×C×H×W) and labels of a digits frame model."""
    data = model.train_config.get("data", {})
    if data.get("name") != "digits_frames":
        raise ValueError(
            f"{model.path.name}: the conversion table runs on frame models (digits_frames); "
            "event models are evaluated with `streamsnn run`"
        )
    images, labels, _ = digits_split(split)
    return torch.from_numpy(digit_frames(images, int(data.get("size", 16))))[:, None], labels


def evaluate_snn(
    snn: SpikingNetwork, x: torch.Tensor, labels: np.ndarray, steps: list[int], ann_accuracy: float
) -> tuple[dict[int, float], Any, float]:
    """Accuracy at every T in ``steps``, the counts up to max(steps) and the Pareto latency."""
    t_max = max(steps)
    outs, counts = counted_run(snn, x.unsqueeze(0).expand(t_max, *x.shape))
    per_step = [(outs[t].argmax(1).numpy() == labels).mean() for t in range(t_max)]
    return {t: float(per_step[t - 1]) for t in steps}, counts, pareto_latency(ann_accuracy, per_step)


@dataclass
class ConversionTable:
    ann_accuracy: float
    rows: list[MethodRow]
    ann_energy_uj: float
    samples: int


CALIBRATION_SAMPLES = 300  # training-split samples for data_norm thresholds and scaling


def conversion_table(
    model: LoadedModel,
    methods: list[str],
    steps: list[int],
    split: str = "test",
    v0: float = 0.5,
    scale_phases: dict[str, int] | None = None,
    scale_v0: bool = False,
    scale_objective: Literal["paper", "sarnn"] = "paper",
    progress: bool = False,
) -> ConversionTable:
    """ANN accuracy, one row per method and the ANN's energy per sample (µJ).

    ``data_norm`` takes its thresholds from the training split; ``scale_phases`` (e.g.
    ``{"global": 20, "layer": 50}``) adds a firing-rate-scaled row per method, optimised on the
    training split for T = max(steps) (V0 too with ``scale_v0``) on the ``AnytimeObjective`` of
    form ``scale_objective`` (paper or sarnn); the table itself is measured on ``split``.
    ``progress``: a line on stderr per stage and a bar over the scale search's evaluations.
    """
    stage = Stages("convert", progress)
    stage(f"reading the digits {split} split and {CALIBRATION_SAMPLES} training frames (calibration)")
    x, labels = frame_inputs(model, split)
    cal_x, cal_y = frame_inputs(model, "train")
    cal_x, cal_y = cal_x[:CALIBRATION_SAMPLES], cal_y[:CALIBRATION_SAMPLES]
    with torch.no_grad():
        ann_acc = float((model.ann(x).argmax(1).numpy() == labels).mean())
        cal_acc = float((model.ann(cal_x).argmax(1).numpy() == cal_y).mean())
    rows, ann_energy = [], 0.0
    variants = [(m, False) for m in methods] + ([(m, True) for m in methods] if scale_phases else [])
    for method, scaled in variants:
        snn = convert(model.ann, model.input_shape, method, v0, calibration=cal_x)
        name = method
        if scaled:
            name = f"{method}+scaling" + ("+v0" if scale_v0 else "")
            phases = scale_phases or {}
            budget = sum(phases.values())
            stage(
                f"{name}: Subplex search on {len(cal_y)} training frames at T = {max(steps)}, at most "
                + ", ".join(f"{n} {phase}" for phase, n in phases.items())
                + " evaluations (each a simulation)"
            )
            with stage.bar(budget, "scale search", "evaluation") as bar:

                def evaluated(result: dict[str, float], bar: Any = bar) -> None:
                    bar.set_postfix_str(f"{result['phase']}, loss {result['loss']:.3f}", refresh=False)
                    bar.update()

                objective = AnytimeObjective(form=scale_objective)
                optimize_scaling(
                    snn,
                    cal_x,
                    cal_y,
                    max(steps),
                    cal_acc,
                    phases,
                    objective,
                    scale_v0,
                    on_evaluation=evaluated,
                )
        stage(f"{name}: simulating {len(labels)} {split} frames for T = {max(steps)} steps")
        acc, counts, p_lat = evaluate_snn(snn, x, labels, steps, ann_acc)
        rows.append(
            MethodRow(
                name,
                v0,
                acc,
                counts.spikes_per_neuron(),
                counts.events_per_sample(),
                counts.energy_uj(),
                p_lat,
            )
        )
        ann_energy = counts.ann_energy_uj()
    return ConversionTable(ann_acc, rows, ann_energy, len(labels))


def format_table(table: ConversionTable) -> str:
    ann_acc, rows = table.ann_accuracy, table.rows
    steps = sorted(rows[0].accuracy) if rows else []
    t_max = max(steps) if steps else 0
    head = ["method", "ANN %"] + [f"T={t}" for t in steps]
    head += [f"spikes/neuron@{t_max}", f"syn.events@{t_max}", "energy µJ", "Pareto lat."]
    lines = [head]
    for r in rows:
        lines.append(
            [r.method.upper(), f"{100 * ann_acc:.2f}"]
            + [f"{100 * r.accuracy[t]:.2f}" for t in steps]
            + [
                f"{r.spikes_per_neuron:.3f}",
                f"{r.events_per_sample:,.0f}",
                f"{r.energy_uj:.3f}",
                f"{r.pareto_latency:.3f}",
            ]
        )
    lines.append(
        ["ANN", f"{100 * ann_acc:.2f}"] + ["" for _ in steps] + ["", "", f"{table.ann_energy_uj:.3f}", ""]
    )
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    text = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    notes = [
        f"{table.samples} samples; energy: 0.9 pJ per accumulate, 4.6 pJ per MAC; Pareto latency in steps."
    ]
    if any(r.method == "qffs" for r in rows):
        notes.append(
            "QFFS runs for about Z_max + depth steps (the paper stops it at T = 4–6): past that its bias "
            "keeps integrating every step (eq. 18) while the spike budget Z_max is spent."
        )
    return "\n".join(text + notes)
