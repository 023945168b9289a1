"""Benchmark: dataset replay throughput on Ray (1 and 2 workers) against the local executor.

    .venv/bin/python benchmarks/ray_replay.py [--split test] [--rounds 2] [--json runs/bench/ray_replay.json]
        [--ray-address auto --workers 1,2,8 --cpus 4]   # on a cluster: its workers and cores

The default pipeline (digits-dvs, batch 32, its exit policy, ``full_t: false``, no sinks) replays
a split locally and with ``executor: ray`` on a local Ray instance (started once, not timed). Like
a local run's wall time (which starts after ``build_pipeline``), a Ray run's starts once its
workers are up (each imports torch and builds the pipeline); that start is shown beside it.
On a 2-core machine two workers share the cores that one local run already uses, so this shows
the executor's overhead rather than a speed-up; on a cluster each worker brings its own cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ray

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sources.digits import DigitsDVS

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "digits_dvs.yaml"


def replay(split: str, *overrides: str) -> dict:
    base = ["runtime.progress=false", "report.path=null", "sinks=[]", "runtime.full_t=false"]
    cfg = load_pipeline(PIPELINE, [*base, f"source.split={split}", *overrides])
    return run_pipeline(build_pipeline(cfg)).report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples-per-task", type=int, default=135)
    ap.add_argument("--json", default="runs/bench/ray_replay.json")
    ap.add_argument("--ray-address", help="a running cluster (auto, ray://head:10001); else a local instance")
    ap.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    ap.add_argument("--cpus", type=int, default=1, help="CPUs per worker")
    args = ap.parse_args()
    for _ in DigitsDVS(args.split):  # fill the disk cache (untimed)
        pass
    t0 = time.perf_counter()
    if args.ray_address:
        ray.init(address=args.ray_address, log_to_driver=False)
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    cases: dict[str, list[str]] = {"local": []}
    for w in map(int, args.workers.split(",")):
        cpus = args.cpus if args.ray_address else max(1, 2 // w)  # locally: the 2 cores shared out
        cases[f"ray, {w} worker{'s' if w > 1 else ''}"] = [
            "executor=ray",
            f"ray.workers={w}",
            f"ray.cpus={cpus}",
        ]
    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        for name, overrides in cases.items():
            report = replay(args.split, *overrides, f"ray.samples_per_task={args.samples_per_task}")
            if name not in best or report["samples_per_s"] > best[name]["samples_per_s"]:
                best[name] = report
    ray.shutdown()
    local = best["local"]["samples_per_s"]
    print(f"Replay of digits-dvs {args.split} ({best['local']['samples']} samples), best of {args.rounds}")
    print(f"  Ray start (once, not in the figures): {startup:.1f} s")
    rows = []
    for name, report in best.items():
        ratio = report["samples_per_s"] / local
        print(
            f"  {name:<16} {report['samples_per_s']:8.1f} samples/s  ({ratio:.2f}× local; wall "
            f"{report['wall_s']:.2f} s, accuracy {report['accuracy']:.2%}, "
            f"mean steps {report['mean_steps']:.2f}"
            + (
                f"; workers started in {report['workers_start_s']:.1f} s"
                if "workers_start_s" in report
                else ""
            )
            + ")"
        )
        rows.append(
            {
                "case": name,
                "ratio_to_local": ratio,
                **{k: report.get(k) for k in ("samples_per_s", "wall_s", "accuracy", "mean_steps")},
                "workers_start_s": report.get("workers_start_s"),
            }
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"split": args.split, "ray_start_s": startup, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
