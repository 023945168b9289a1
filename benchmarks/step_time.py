"""Benchmark: time per inference step of our multi-stream operator against the dense ANN floor,
SpikingJelly and snnTorch on the same networks with the same weights, all measured in this run.

    .venv/bin/python benchmarks/step_time.py [--quick] [--json PATH] [--device cuda] [--threads N]

Networks: the shipped digits CNN (``builtin:digits_dvs``, trained weights, sparse event-count
input 2×34×34), VGGSNN (random weights, LIF, 2×48×48) and VGG-16 (random weights converted with
QCFS, IF, 3×32×32). With random weights the VGGs spike almost only in their first one to three
spiking layers: that does not change dense timing (every conv runs in full), but their spike
counts are not those of a trained network.

1. Single step (batch 1 and 32): the ANN twin's forward (ReLU in place of the neurons: the floor
   for a dense step), ours (``SNNOperator.step`` over all streams, which also counts spikes and
   keeps per-stream counters; the peers do neither), SpikingJelly single-step and snnTorch.
   Targets: ours ≤ 1.10× the ANN on VGGSNN and VGG-16; ours faster than both peers everywhere,
   ≥ 1.5× on the digits CNN.
2. Chunked mode (batch 1, k steps in one call): ours ``SNNOperator.run`` against SpikingJelly's
   multi-step twin at the same k, per step. Target: ours ≤ SpikingJelly.
3. Memory of one stream's state in our operator (membranes, output, 4 float64 counters).

Timing: everything under ``torch.inference_mode()``, each candidate warmed up first, then the
candidates of a case are interleaved in rounds (in a rotating order). Each reports the best
(minimum) of its rounds in ms; a ratio between two candidates is the median of their per-round
ratios, each taken within one round: the machine is shared and its speed drifts by ±15 % within
a minute, which a ratio of two minima (possibly from different minutes) does not cancel.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.convert import convert, fold_spiking
from streamsnn.snn.models import build_model
from streamsnn.snn.network import SpikingNetwork
from streamsnn.snn.operator import SNNOperator

try:  # imported as part of the repository (tests) or run as a script beside peers.py
    from benchmarks.peers import (
        SNNTORCH_INSTALL,
        SPIKINGJELLY_INSTALL,
        ann_twin,
        snntorch_twin,
        spikingjelly_twin,
    )
except ModuleNotFoundError:
    from peers import SNNTORCH_INSTALL, SPIKINGJELLY_INSTALL, ann_twin, snntorch_twin, spikingjelly_twin

BATCHES = (1, 32)
CHUNKS = (8, 4)
ANN_TARGET = 1.10  # ours / ANN on the VGGs
PEER_TARGET = {"digits_cnn": 1.5}  # least speed-up of ours over each peer (1.0: merely faster)
INSTALL = {"spikingjelly": SPIKINGJELLY_INSTALL, "snntorch": SNNTORCH_INSTALL}
LABEL = {
    "ann": "ANN twin (ReLU)",
    "ours": "ours op.step",
    "spikingjelly": "SpikingJelly 's'",
    "snntorch": "snnTorch",
}
NOTES = [
    "ours = SNNOperator.step/run: also counts spikes and keeps 4 per-stream counters; the peers do not",
    "VGGSNN and VGG-16 have random weights and spike almost only in their first one to three "
    "spiking layers (dense timing is unaffected: every conv runs in full)",
]


@dataclass
class Net:
    """A benchmark network: ``key`` for the JSON, a display ``name``, the network and whether its
    input is sparse event counts (else uniform in [0, 1))."""

    key: str
    name: str
    net: SpikingNetwork
    events: bool

    def inputs(self, *lead: int, device: str = "cpu", seed: int = 0) -> torch.Tensor:
        """Random input of shape lead×C×H×W on ``device``: event counts (10 % of the pixels at 3)
        or uniform in [0, 1)."""
        g = torch.Generator().manual_seed(seed)
        shape = (*lead, *self.net.input_shape)
        x = (
            (torch.rand(shape, generator=g) < 0.1).float() * 3
            if self.events
            else torch.rand(shape, generator=g)
        )
        return x.to(device)


def networks() -> list[Net]:
    """The three benchmark networks (built on the CPU, in eval mode)."""
    return [
        Net("digits_cnn", "digits CNN", load_checkpoint("builtin:digits_dvs").snn(), True),
        Net("vggsnn", "VGGSNN", fold_spiking(build_model({"name": "vggsnn"}).eval(), (2, 48, 48)), False),
        Net("vgg16", "VGG-16", convert(build_model({"name": "vgg16"}).eval(), (3, 32, 32)), False),
    ]


def _sync(device: str) -> Callable[[], None]:
    """A barrier for timing: ``torch.cuda.synchronize`` on CUDA, nothing on the CPU."""
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def time_rounds(
    candidates: dict[str, Callable[[], object]],
    rounds: int,
    target_s: float,
    sync: Callable[[], None],
    warmup: int = 2,
) -> dict[str, list[float]]:
    """Milliseconds per call of every candidate in every round: each is warmed up with
    ``warmup`` (≥ 1) calls, the last of which sets its repeat count so that one measurement lasts
    about ``target_s`` seconds; the candidates are then measured in turn, in a rotating order,
    for ``rounds`` rounds."""
    repeats: dict[str, int] = {}
    for name, fn in candidates.items():
        for _ in range(warmup - 1):
            fn()
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        repeats[name] = max(1, min(1000, round(target_s / max(time.perf_counter() - t0, 1e-6))))
    per_round: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            fn = candidates[name]
            sync()
            t0 = time.perf_counter()
            for _ in range(repeats[name]):
                fn()
            sync()
            per_round[name].append(1e3 * (time.perf_counter() - t0) / repeats[name])
    return per_round


def paired_ratio(a: list[float] | None, b: list[float] | None) -> float | None:
    """The median over rounds of a / b, both measured in the same round."""
    if a is None or b is None:
        return None
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _twin(make: Callable[[], Any], device: str) -> Any:
    """A peer twin moved to ``device`` and reset, or None when its framework is not installed."""
    try:
        twin = make()
    except ImportError:
        return None
    twin.body.to(device)
    twin.reset()
    return twin


def _operator(net: SpikingNetwork, batch: int, device: str) -> tuple[SNNOperator, list[int]]:
    """Our operator with ``batch`` streams attached (keys 0..batch−1)."""
    op = SNNOperator(net, batch, device=device, dtype=torch.float32)
    keys = list(range(batch))
    for k in keys:
        op.attach(k)
    return op, keys


def state_kib(op: SNNOperator) -> float:
    """KiB of state per stream slot: every state field and the accumulated output, per slot,
    plus the 4 float64 counters."""
    fields = [f for layer in op.state.layers for f in layer] + [op.state.out]
    total = sum(f.numel() * f.element_size() for f in fields) + op.counts.numel() * op.counts.element_size()
    return total / op.capacity / 1024


def single_step(nets: list[Net], device: str, rounds: int, target_s: float, warmup: int) -> list[dict]:
    """Section 1: ms per step of the ANN twin, ours and the peers, per net and batch."""
    sync, rows = _sync(device), []
    for n in nets:
        for batch in BATCHES:
            op, keys = _operator(n.net, batch, device)
            x = n.inputs(batch, device=device)
            # the floor in the operator's memory layout (channels-last helps the ANN as well)
            ann = ann_twin(n.net).to(memory_format=op.layout)
            x_ann = x.contiguous(memory_format=op.layout)
            sj = _twin(lambda n=n: spikingjelly_twin(n.net, "s"), device)
            st = _twin(lambda n=n: snntorch_twin(n.net), device)
            cands: dict[str, Callable[[], object]] = {
                "ann": lambda ann=ann, x=x_ann: ann(x),
                "ours": lambda op=op, keys=keys, x=x: op.step(keys, x),
            }
            if sj is not None:
                cands["spikingjelly"] = lambda sj=sj, x=x: sj.step(x)
            if st is not None:
                cands["snntorch"] = lambda st=st, x=x: st.step(x)
            per_round = time_rounds(cands, rounds, target_s, sync, warmup)
            ann, ours = per_round["ann"], per_round["ours"]
            sj_ms, st_ms = per_round.get("spikingjelly"), per_round.get("snntorch")
            counts = op.counts.sum(0)
            peer_min = PEER_TARGET.get(n.key, 1.0)
            ours_over_ann = paired_ratio(ours, ann)
            speedups = [s for s in (paired_ratio(sj_ms, ours), paired_ratio(st_ms, ours)) if s is not None]
            rows.append(
                {
                    "net": n.key,
                    "batch": batch,
                    "ann_ms": min(ann),
                    "ours_ms": min(ours),
                    "spikingjelly_ms": None if sj_ms is None else min(sj_ms),
                    "snntorch_ms": None if st_ms is None else min(st_ms),
                    "ours_over_ann": ours_over_ann,
                    "spikingjelly_over_ann": paired_ratio(sj_ms, ann),
                    "snntorch_over_ann": paired_ratio(st_ms, ann),
                    "spikingjelly_over_ours": paired_ratio(sj_ms, ours),
                    "snntorch_over_ours": paired_ratio(st_ms, ours),
                    "ours_over_ann_best_of": min(ours) / min(ann),
                    "ours_spikes_per_stream_step": float(counts[1] / counts[0]),
                    "target_ann_met": ours_over_ann <= ANN_TARGET if n.key != "digits_cnn" else None,
                    "target_peers_met": all(s >= peer_min for s in speedups) if speedups else None,
                }
            )
            del op, ann, sj, st, cands
    return rows


def chunked(nets: list[Net], device: str, rounds: int, target_s: float, warmup: int) -> list[dict]:
    """Section 2: ms per step of ours ``op.run`` and SpikingJelly's multi-step twin on k-step
    chunks at batch 1."""
    sync, rows = _sync(device), []
    for n in nets:
        op, keys = _operator(n.net, 1, device)
        sj = _twin(lambda n=n: spikingjelly_twin(n.net, "m"), device)
        for k in CHUNKS:
            xs = n.inputs(k, 1, device=device)
            cands: dict[str, Callable[[], object]] = {
                "ours": lambda op=op, keys=keys, xs=xs: op.run(keys, xs)
            }
            if sj is not None:
                cands["spikingjelly"] = lambda sj=sj, xs=xs: sj.run(xs)
            per_round = time_rounds(cands, rounds, target_s, sync, warmup)
            sj_rounds = per_round.get("spikingjelly")
            ratio = paired_ratio(per_round["ours"], sj_rounds)  # ours / SpikingJelly: ≤ 1 meets the target
            rows.append(
                {
                    "net": n.key,
                    "k": k,
                    "ours_ms_per_step": min(per_round["ours"]) / k,
                    "spikingjelly_m_ms_per_step": None if sj_rounds is None else min(sj_rounds) / k,
                    "ratio": ratio,
                    "target_met": None if ratio is None else ratio <= 1.0,
                }
            )
    return rows


def _framework(module: str, dist: str) -> str | None:
    """The version of a peer framework, or None when ``module`` (what its twin needs) does not
    import."""
    try:
        importlib.import_module(module)
    except ImportError:
        return None
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _load() -> float | None:
    """The 1-minute load average (other work on the shared machine skews timings), if known."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(quick: bool = False, device: str = "cpu", threads: int | None = None) -> dict:
    """Run the three sections and return the JSON-ready results (times in ms; ``None`` for a
    peer that is not installed; ``missing`` maps such a peer to its install command).
    ``quick``: fewer and shorter rounds (a smoke run, well under a minute); ``threads``: torch's
    intra-op threads (default: torch's own choice)."""
    if threads is not None:
        torch.set_num_threads(threads)
    rounds, target_s, warmup = (2, 0.03, 1) if quick else (15, 0.1, 2)
    frameworks = {
        "spikingjelly": _framework("spikingjelly.activation_based.neuron", "spikingjelly"),
        "snntorch": _framework("snntorch", "snntorch"),
    }
    load = _load()
    with torch.inference_mode():
        nets = networks()
        steps = single_step(nets, device, rounds, target_s, warmup)
        chunks = chunked(nets, device, rounds, target_s, warmup)
        for row in chunks:  # for reference: one op.step at batch 1 (section 1's figure)
            row["ours_single_step_ms"] = next(
                r["ours_ms"] for r in steps if r["net"] == row["net"] and r["batch"] == 1
            )
        memory = [{"net": n.key, "kib_per_stream": state_kib(_operator(n.net, 1, device)[0])} for n in nets]
    return {
        "machine": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": _cpu(),
            "device": torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu",
            "python": platform.python_version(),
            "frameworks": frameworks,
            "quick": quick,
            "load_average_1min": [load, _load()],  # at start and end
            "rounds": rounds,
        },
        "names": {n.key: f"{n.name} ({'×'.join(map(str, n.net.input_shape))})" for n in nets},
        "missing": {f: INSTALL[f] for f, v in frameworks.items() if v is None},
        "notes": NOTES,
        "single_step": steps,
        "chunked": chunks,
        "state_memory": memory,
    }


def _f(v: float | None, spec: str = ".2f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("met" if ok else "MISSED")


def report(result: dict) -> str:
    """The results as text tables."""
    m, names, missing = result["machine"], result["names"], result["missing"]
    lines = [
        f"Per-step inference time, this machine, this run (torch {m['torch']}, {m['threads']} threads, "
        f"{m['device']}: {m['cpu']}; ms: best of {m['rounds']} interleaved rounds, ratios: median of "
        "per-round ratios; "
        f"load average {' → '.join(_f(v) for v in m['load_average_1min'])})",
        *(["  QUICK run (smoke test): few short rounds, the figures are rough"] if m["quick"] else []),
        *(f"  note: {n}" for n in result["notes"]),
        "",
        "1. Single step (ms per step of all B streams; ×ANN = time / ANN twin; speed-up = peer / ours)",
    ]
    for row in result["single_step"]:
        net, ann = row["net"], row["ann_ms"]
        peer_min = PEER_TARGET.get(net, 1.0)
        lines += [
            f"  {names[net]}, batch {row['batch']} "
            f"(ours: {row['ours_spikes_per_stream_step']:.0f} spikes per stream and step)",
            f"    {'':<18} {'ms/step':>9} {'×ANN':>6} {'speed-up':>9}  target",
            f"    {LABEL['ann']:<18} {ann:9.2f} {1:6.2f}",
            f"    {LABEL['ours']:<18} {row['ours_ms']:9.2f} {row['ours_over_ann']:6.2f} {'':>9}  "
            + (f"≤ {ANN_TARGET:.2f}×ANN: {_met(row['target_ann_met'])}" if net != "digits_cnn" else ""),
        ]
        for peer in ("spikingjelly", "snntorch"):
            if peer in missing:
                lines.append(f"    {LABEL[peer]:<18} not installed: {missing[peer]}")
                continue
            speedup = row[f"{peer}_over_ours"]
            lines.append(
                f"    {LABEL[peer]:<18} {row[f'{peer}_ms']:9.2f} {row[f'{peer}_over_ann']:6.2f} "
                f"{speedup:8.2f}×  ours ≥ {peer_min:.1f}× faster: {_met(speedup >= peer_min)}"
            )
    lines += [
        "",
        "2. Chunked mode, batch 1 (ms per step; k steps per call, T folded into the batch; "
        "(op.step): ours single step from 1.)",
        f"  {'net':<24} {'k':>2} {'(op.step)':>10} {'ours op.run':>12} {'SJ multi-step':>14} {'ours/SJ':>8}"
        "  target ours ≤ SJ",
    ]
    for row in result["chunked"]:
        sj = row["spikingjelly_m_ms_per_step"]
        lines.append(
            f"  {names[row['net']]:<24} {row['k']:>2} {row['ours_single_step_ms']:10.3f} "
            f"{row['ours_ms_per_step']:12.3f} "
            + (
                f"{'not installed':>14}"
                if sj is None
                else f"{sj:14.3f} {row['ratio']:8.2f}  {_met(row['target_met'])}"
            )
        )
    if "spikingjelly" in missing:
        lines.append(f"  SpikingJelly not installed: {missing['spikingjelly']}")
    lines += ["", "3. State memory of our operator per stream (membranes, output, 4 float64 counters)"]
    lines += [f"  {names[r['net']]:<24} {r['kib_per_stream']:10.1f} KiB" for r in result["state_memory"]]
    return "\n".join(line.rstrip() for line in lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds (smoke run)")
    ap.add_argument("--json", type=Path, help="write the results here (else printed after the tables)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    args = ap.parse_args()
    result = run(args.quick, args.device, args.threads)
    print(report(result))
    if args.json is None:
        print(json.dumps(result))
    else:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
