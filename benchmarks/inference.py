"""Benchmark: streaming SNN inference, all in one run, printed as tables and written as JSON.

    .venv/bin/python benchmarks/inference.py [--quick] [--json runs/bench/inference.json]

1. Per-step time of the operator against one ANN forward of the same network and against
   SpikingJelly and snnTorch with the same weights (``benchmarks/step_time.py``), the chunked
   mode against SpikingJelly's multi-step mode, and the memory of one stream's state.
2. Offline replay throughput of the default pipeline (digits-dvs test split, batch 32, no sinks,
   ``full_t: false``): Dynamic Confidence exit against fixed T, with the continuous batching
   of the runtime (a slot freed by an exit takes the next sample at once). Target: exit
   throughput ≥ 0.8 × (T / mean steps) × fixed-T throughput.
3. End-to-end streaming at batch 1 on the default pipeline (its JSONL sink to a temporary
   folder): the share of wall time spent outside the model step (the operator call).
   Target ≤ 10 %.

Runs 2 and 3 read digits-dvs from its disk cache (filled by a first pass over the split, not
timed), so they time the runtime, not the emulated sensor. Each figure is the best of
``--rounds`` interleaved rounds (this machine's timing varies by ±15 %).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import step_time  # benchmarks/, next to this script
import torch

from streamsnn.config import load_pipeline
from streamsnn.runtime.build import build_pipeline
from streamsnn.runtime.run import run_pipeline
from streamsnn.sources.digits import DigitsDVS, DigitsDVSSourceConfig

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "digits_dvs.yaml"
T = 15
EXIT = "{type: dynamic_confidence, threshold: 0.85, alpha: 15, max_steps: 15}"
FIXED = f"{{type: fixed, steps: {T}}}"


def run_default(overrides: list[str]) -> dict[str, Any]:
    """The default pipeline's report with ``overrides`` (no progress bar, no report file)."""
    cfg = load_pipeline(PIPELINE, ["runtime.progress=false", "report.path=null", *overrides])
    return run_pipeline(build_pipeline(cfg)).report


def replay_throughput(rounds: int, limit: int | None) -> dict[str, Any]:
    """Samples/s of the replay with exit and with fixed T, best of ``rounds`` interleaved."""
    base = ["sinks=[]", "runtime.full_t=false", "runtime.batch_size=32"]
    if limit:
        base.append(f"source.limit={limit}")
    best: dict[str, dict[str, Any]] = {}
    for _ in range(rounds):
        for name, policy in (("fixed", FIXED), ("exit", EXIT)):
            report = run_default([*base, f"policy.exit={policy}"])
            if name not in best or report["samples_per_s"] > best[name]["samples_per_s"]:
                best[name] = report
    fixed, ex = best["fixed"], best["exit"]
    ideal = T / ex["mean_steps"]
    speedup = ex["samples_per_s"] / fixed["samples_per_s"]
    return {
        "samples": ex["samples"],
        "T": T,
        "fixed_samples_per_s": fixed["samples_per_s"],
        "exit_samples_per_s": ex["samples_per_s"],
        "exit_accuracy": ex["accuracy"],
        "fixed_accuracy": fixed["accuracy"],
        "mean_steps": ex["mean_steps"],
        "mean_batch_exit": ex["mean_batch"],
        "mean_batch_fixed": fixed["mean_batch"],
        "speedup": speedup,
        "ideal_speedup": ideal,
        "fraction_of_ideal": speedup / ideal,
        "target_met": speedup >= 0.8 * ideal,
    }


def streaming_overhead(rounds: int, limit: int | None) -> dict[str, Any]:
    """Batch 1, the default pipeline as shipped (JSONL sink to a temporary folder): the share of
    wall time outside the operator call, lowest of ``rounds``."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        sink = f"sinks=[{{type: jsonl, path: {tmp}/predictions.jsonl}}]"
        extra = [f"source.limit={limit}"] if limit else []
        for _ in range(rounds):
            runs.append(run_default(["runtime.batch_size=1", sink, *extra]))
    best = max(runs, key=lambda r: r["model_share_of_wall"])
    outside = 1 - best["model_share_of_wall"]
    return {
        "samples": best["samples"],
        "wall_s": best["wall_s"],
        "samples_per_s": best["samples_per_s"],
        "model_share": best["model_share_of_wall"],
        "outside_share": outside,
        "outside_share_all_rounds": [round(1 - r["model_share_of_wall"], 4) for r in runs],
        "e2e_p50_ms": best["e2e_latency_ms"]["p50"],
        "target_met": outside <= 0.10,
    }


def print_runtime(replay: dict[str, Any], stream: dict[str, Any]) -> None:
    print("\nOffline replay, digits-dvs test split, batch 32, continuous batching")
    print(
        f"  fixed T={replay['T']}: {replay['fixed_samples_per_s']:.1f} samples/s  "
        f"(accuracy {replay['fixed_accuracy']:.2%}, mean batch {replay['mean_batch_fixed']})"
    )
    print(
        f"  Dynamic Confidence exit: {replay['exit_samples_per_s']:.1f} samples/s at "
        f"{replay['mean_steps']:.2f} mean steps (accuracy {replay['exit_accuracy']:.2%}, "
        f"mean batch {replay['mean_batch_exit']})"
    )
    print(
        f"  speed-up {replay['speedup']:.2f}× of the ideal T/mean steps = {replay['ideal_speedup']:.2f}× "
        f"({replay['fraction_of_ideal']:.0%}; target ≥ 80 %: {'met' if replay['target_met'] else 'MISSED'})"
    )
    print("\nStreaming at batch 1, default pipeline (JSONL sink)")
    print(
        f"  {stream['samples_per_s']:.1f} samples/s, e2e latency p50 {stream['e2e_p50_ms']:.2f} ms; "
        f"outside the model step: {stream['outside_share']:.1%} of wall "
        f"(rounds {stream['outside_share_all_rounds']}; target ≤ 10 %: "
        f"{'met' if stream['target_met'] else 'MISSED'})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and samples (a smoke run)")
    ap.add_argument("--json", default="runs/bench/inference.json", help="where the JSON goes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    limit = 64 if args.quick else None
    started = time.perf_counter()
    for _ in DigitsDVS(DigitsDVSSourceConfig(split="test", limit=limit)):  # fill the disk cache (untimed)
        pass
    steps = step_time.run(quick=args.quick, device=args.device)
    print(step_time.report(steps))
    replay = replay_throughput(rounds, limit)
    stream = streaming_overhead(rounds, limit)
    print_runtime(replay, stream)
    result = {
        **steps,
        "replay": replay,
        "streaming_batch1": stream,
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
