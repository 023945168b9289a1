"""Export a checkpoint's SNN to NIR and measure what a NIR reader makes of it (fidelity report).

The export (``streamsnn.interop.nir_export``) is written, read back from the file, built by a
NIR reader and stepped on real inputs next to the original network: N samples of the digits
test split through the model's own encoder (``direct``: the frame every step; ``event_rate``:
the recording cut into T equal windows, events per pixel per ``rate_unit_us``). Per step: the
largest absolute difference of the anytime outputs and the share of samples whose decision
(argmax) agrees; at the last step and under a confidence early-exit rule (softmax of output/α
≥ threshold, α = T), the agreement and each side's accuracy.

Readers: ``streamsnn`` (``streamsnn.interop.nir_import`` as it reads a file by default: the nodes'
``streamsnn_*`` metadata honoured, so the exported neurons exactly, dt from the graph),
``streamsnn-nir`` (the same reader under NIR's own rules, ``semantics: nir``: forward Euler at the
graph's ``dt``, reset to ``v_reset``, fires at ``v > θ``, state 0 at the start), ``streamsnn-subtract``
(NIR's rules with a subtractive reset, as Sinabs and Speck read an IF) and ``sinabs``
(``sinabs.nir.from_nir``: IF as ``IAFSqueeze``, subtractive reset, several spikes per step, membrane
floored at −θ). snnTorch 1.0's ``import_nir`` is not one: it reads
NIR's IF as a leaky neuron (β = 0.9) and its graph fails on a conv → IF → pooling chain.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch

from streamsnn.interop.nir_export import NIRExport, Pooling, Readout, to_nir, write
from streamsnn.interop.speck import Finding, check_speck
from streamsnn.lab.progress import Stages
from streamsnn.snn.checkpoint import LoadedModel, load_checkpoint
from streamsnn.snn.network import SpikingNetwork

READERS = ("streamsnn", "streamsnn-nir", "streamsnn-subtract", "sinabs")
TARGETS = ("speck",)
EXIT_THRESHOLD = 0.9
# the node types sinabs.nir.from_nir builds (Sinabs 3.1.3, sinabs/nir.py); it passes others silently
SINABS_NODES = {"Input", "Output", "Affine", "Conv1d", "Conv2d", "IF", "LIF", "LI", "SumPool2d", "Flatten"}


class ExportError(ValueError):
    """An export that is refused (a target it does not fit, a reader that cannot read it, an
    unknown reader or encoder); the message says what. Lossy without the flag:
    ``LossyExportError``."""


def digits_inputs(model: LoadedModel, samples: int, steps: int | None) -> tuple[torch.Tensor, np.ndarray]:
    """The first ``samples`` of the digits test split through the model's encoder: inputs
    T×N×C×H×W (T = ``steps``, default 16 for frames, 15 for events) and labels (N)."""
    encoder, shape = model.input.get("encoder"), tuple(model.input_shape)
    h = shape[1]
    digits = {"direct": shape[0] == 1 and h == shape[2], "event_rate": shape == (2, 34, 34)}
    if encoder in digits and not digits[encoder]:
        raise ExportError(
            f"fidelity inputs: the model takes {list(shape)} with encoder {encoder}, not the digits' "
            "(1×S×S frames, 2×34×34 events); use --samples 0 to export without the report"
        )
    if encoder == "direct":
        from streamsnn.sources.digits import digit_frames, digits_split

        images, labels, _ = digits_split("test")
        frames = torch.from_numpy(digit_frames(images[:samples], h)).float()[:, None]
        t_n = steps or 16
        return frames.expand(t_n, *frames.shape).clone(), labels[:samples]
    if encoder == "event_rate":
        from streamsnn.lab.datasets import rate_frame
        from streamsnn.sources.digits import RECORDING_US, DigitsDVS, DigitsDVSSourceConfig, digits_split

        _, labels, _ = digits_split("test")
        t_n = steps or 15
        edges = np.linspace(0, RECORDING_US, t_n + 1).astype(np.int64)
        unit = float(model.input.get("rate_unit_us", 100_000.0))
        source = DigitsDVS(DigitsDVSSourceConfig(split="test", limit=samples))
        frames = [
            np.stack([rate_frame(ev, int(a), int(b), unit) for a, b in itertools.pairwise(edges)])
            for _, ev in source.recordings()
        ]
        return torch.from_numpy(np.stack(frames, axis=1)).float(), labels[: len(frames)]
    raise ExportError(
        f"fidelity inputs: the model's encoder is {encoder!r}; real inputs are made for the digits "
        "models (encoders direct and event_rate); use --samples 0 to export without the report"
    )


def original_outputs(net: SpikingNetwork, xs: torch.Tensor) -> torch.Tensor:
    """The network's anytime outputs T×N×K on inputs T×N×C×H×W."""
    _, outs, _ = net.run(xs.to(next(net.parameters()).dtype), net.init_state(xs.shape[1]))
    return outs.float()


def check_readable(graph: nir.NIRGraph, reader: str) -> None:
    """``ExportError`` naming the node types of ``graph`` that ``reader`` does not read."""
    if reader == "sinabs":
        unread = sorted({type(node).__name__ for node in graph.nodes.values()} - SINABS_NODES)
        if unread:
            raise ExportError(
                f"reader sinabs: Sinabs reads no {', '.join(unread)} node (use --pooling sum, --readout "
                "per_step, or other readers)"
            )


def reader_outputs(graph: nir.NIRGraph, xs: torch.Tensor, reader: str) -> torch.Tensor:
    """What ``reader`` computes from ``graph`` on inputs T×N×C×H×W: the anytime outputs T×N×K
    (a per-step output summed over steps when the graph's metadata says its read-out is a sum)."""
    t_n, n = xs.shape[:2]
    if reader in ("streamsnn", "streamsnn-nir", "streamsnn-subtract"):
        from streamsnn.interop.nir_import import NirOptions, import_nir

        if reader == "streamsnn":  # the default read: the exporter's metadata, dt from the graph
            options = NirOptions()
        else:
            reset = "subtract" if reader == "streamsnn-subtract" else "value"
            dt = float(graph.metadata.get("dt", 1.0))
            options = NirOptions(dt=dt, integration="euler", reset=reset, semantics="nir")
        return original_outputs(import_nir(graph, options).snn(), xs)
    if reader == "sinabs":
        from sinabs.nir import from_nir

        check_readable(graph, reader)

        module = from_nir(graph, batch_size=n)  # a fresh module: membranes start at 0
        with torch.no_grad():
            y, _ = module(xs.transpose(0, 1).flatten(0, 1))  # (N·T), batch-major
        per_step = y.unflatten(0, (n, t_n)).transpose(0, 1)
    else:
        raise ExportError(f"reader: unknown '{reader}'; use one of {', '.join(READERS)}")
    readout = str(graph.metadata.get("readout", "sum"))
    return per_step.float().cumsum(0) if readout == "sum" else per_step.float()


def exit_decisions(outs: torch.Tensor, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Confidence early exit on anytime outputs T×N×K (α = T): the decision and the step
    (1-based) of each sample, the last step when never confident."""
    t_n = outs.shape[0]
    conf, pred = torch.softmax(outs / t_n, -1).max(-1)
    confident = conf >= threshold
    first = torch.where(confident.any(0), confident.float().argmax(0), torch.full_like(pred[0], t_n - 1))
    decision = pred.gather(0, first[None])[0]
    return decision.numpy(), (first + 1).numpy()


@dataclass
class Fidelity:
    """A reader's outputs against the original's on the same inputs."""

    reader: str
    samples: int
    steps: int
    max_abs_diff: list[float]  # per step, over samples and classes
    agreement: list[float]  # per step: share of samples with the same argmax
    final_agreement: float
    accuracy_original: float
    accuracy_reader: float
    exit_threshold: float
    exit_agreement: float
    exit_steps_original: float
    exit_steps_reader: float
    exit_accuracy_original: float
    exit_accuracy_reader: float


def fidelity(original: torch.Tensor, read: torch.Tensor, labels: np.ndarray, reader: str) -> Fidelity:
    """Compare anytime outputs T×N×K of the original and of a reader."""
    t_n, n = original.shape[:2]
    a, b = original.argmax(-1), read.argmax(-1)
    da, sa = exit_decisions(original, EXIT_THRESHOLD)
    db, sb = exit_decisions(read, EXIT_THRESHOLD)
    return Fidelity(
        reader=reader,
        samples=n,
        steps=t_n,
        max_abs_diff=[float(v) for v in (original - read).abs().flatten(1).max(1).values],
        agreement=[float(v) for v in (a == b).float().mean(1)],
        final_agreement=float((a[-1] == b[-1]).float().mean()),
        accuracy_original=float((a[-1].numpy() == labels).mean()),
        accuracy_reader=float((b[-1].numpy() == labels).mean()),
        exit_threshold=EXIT_THRESHOLD,
        exit_agreement=float((da == db).mean()),
        exit_steps_original=float(sa.mean()),
        exit_steps_reader=float(sb.mean()),
        exit_accuracy_original=float((da == labels).mean()),
        exit_accuracy_reader=float((db == labels).mean()),
    )


def format_fidelity(results: list[Fidelity]) -> str:
    """The fidelity table: one row per step with max |Δ output| and decision agreement per reader,
    then per reader the last step and the early exit."""
    if not results:
        return "fidelity: not measured (--samples 0)"
    first = results[0]
    widths = [max(len(f.reader) + 7, 10) for f in results]
    head = "step" + "".join(
        f"  {f.reader + ' max|Δ|':>{w}}  {'agree':>6}" for f, w in zip(results, widths, strict=True)
    )
    rows = [f"fidelity: {first.samples} digits test samples, {first.steps} steps; readers of the file", head]
    for t in range(first.steps):
        cells = "".join(
            f"  {f.max_abs_diff[t]:>{w}.4g}  {f.agreement[t]:6.1%}"
            for f, w in zip(results, widths, strict=True)
        )
        rows.append(f"{t + 1:>4}{cells}")
    for f in results:
        rows.append(
            f"{f.reader}: last step agree {f.final_agreement:.1%} (accuracy original "
            f"{f.accuracy_original:.1%}, reader {f.accuracy_reader:.1%}); early exit (confidence ≥ "
            f"{f.exit_threshold}, α = T) agree "
            f"{f.exit_agreement:.1%}, mean steps {f.exit_steps_original:.2f} / {f.exit_steps_reader:.2f}, "
            f"accuracy {f.exit_accuracy_original:.1%} / {f.exit_accuracy_reader:.1%}"
        )
    return "\n".join(rows)


@dataclass
class ExportReport:
    """What ``export_model`` did: the file, the lossy items and notes, the target's findings
    and the fidelity per reader."""

    model: str
    out: str
    conversion: str
    lossy: list[str]
    notes: list[str]
    target: str | None = None
    findings: list[str] = field(default_factory=list)
    fidelity: list[Fidelity] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_model(
    model: str,
    out: Path,
    *,
    allow_lossy: bool = False,
    target: str | None = None,
    samples: int = 100,
    steps: int | None = None,
    readers: tuple[str, ...] = READERS,
    conversion: str = "qcfs",
    v0: float = 0.5,
    pooling: Pooling = "sum",
    readout: Readout = "per_step",
    report: Path | None = None,
    progress: bool = True,
) -> ExportReport:
    """Export ``model`` (a checkpoint path or ``builtin:NAME``) to the NIR file ``out``: refused
    (nothing written) when lossy without ``allow_lossy`` (``LossyExportError``) or when it does
    not fit ``target`` or a reader cannot read it (``ExportError``); then, unless ``samples`` is
    0, the fidelity report of each reader on real inputs, written as JSON to ``report``
    (default: ``out`` with suffix ``.fidelity.json``)."""
    stage = Stages("export", progress)
    if target is not None and target not in TARGETS:
        raise ExportError(f"target: unknown '{target}'; use one of {', '.join(TARGETS)}")
    unknown = [r for r in readers if r not in READERS]
    if unknown:
        raise ExportError(f"reader: unknown {', '.join(unknown)}; use {', '.join(READERS)}")
    loaded = load_checkpoint(model)
    net = loaded.snn(conversion, v0)
    exported: NIRExport = to_nir(
        net,
        pooling=pooling,
        readout=readout,
        metadata={
            "source": model,
            "conversion": conversion,
            "encoder": str(loaded.input.get("encoder", "")),
            "rate_unit_us": float(loaded.input.get("rate_unit_us", 0.0)),
        },
    )
    result = ExportReport(
        model, str(out), conversion, [i.line() for i in exported.lossy], [i.line() for i in exported.notes]
    )
    if target == "speck":
        findings: list[Finding] = check_speck(exported.graph)
        result.target, result.findings = target, [f.line() for f in findings]
        violations = [f for f in findings if f.kind == "violation"]
        if violations:
            raise ExportError(
                f"{model} does not fit {target} ({len(violations)} violations): "
                + "; ".join(f"{f.node}: {f.text}" for f in violations)
            )
    for reader in readers if samples > 0 else ():
        check_readable(exported.graph, reader)
    write(exported, out, allow_lossy=allow_lossy)  # LossyExportError (nothing written) without the flag
    stage(f"wrote {out}")
    if samples > 0:
        stage(f"encoding {samples} digits test samples")
        xs, labels = digits_inputs(loaded, samples, steps)
        original = original_outputs(net, xs)
        graph = nir.read(out)  # what a reader gets: the file, not the graph in memory
        for reader in readers:
            stage(f"stepping the export with {reader}")
            result.fidelity.append(fidelity(original, reader_outputs(graph, xs, reader), labels, reader))
    path = report or out.with_suffix(".fidelity.json")
    path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
    stage(f"wrote {path}")
    return result
