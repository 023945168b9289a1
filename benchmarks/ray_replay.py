"""Benchmark: dataset replay throughput on Ray (1 and 2 workers) against the local executor, and
the delivery lag of live streams merged from Ray workers.

    .venv/bin/python benchmarks/ray_replay.py [--split test] [--rounds 2] [--json runs/bench/ray_replay.json]
        [--ray-address auto --workers 1,2,8 --cpus 4]   # on a cluster: its workers and cores

**Replay.** The default pipeline (digits-dvs, batch 32, its exit policy, ``full_t: false``, no
sinks) replays a split locally and with ``executor: ray`` on a local Ray instance (started once,
not timed). Like a local run's wall time (which starts after ``build_pipeline``), a Ray run's
starts once its workers are up (each imports torch and builds the pipeline); that start is shown
beside it. On a 2-core machine two workers share the cores that one local run already uses, so
this shows the executor's overhead rather than a speed-up; on a cluster each worker brings its
own cores.

**Live.** ``--streams`` digits-dvs streams played live (real time, ``--stream-s`` seconds each)
through a ``streams`` source, locally (one operator) and on 2 Ray workers (a group each): the
decisions, the latency from a slice's arrival to its prediction on the worker (``e2e``) and the
lag from a prediction's making to its write on the driver's sinks (the Ray hop; 0 locally but for
the sink thread's hand-over).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import ray

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sinks import Sink
from streamsnn.sources.digits import DigitsDVS, DigitsDVSSourceConfig

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "digits_dvs.yaml"


def replay(split: str, *overrides: str) -> dict:
    base = ["runtime.progress=false", "report.path=null", "sinks=[]", "runtime.full_t=false"]
    cfg = load_pipeline(PIPELINE, [*base, f"source.split={split}", *overrides])
    return run_pipeline(build_pipeline(cfg)).report


class Lag(Sink):
    """A sink noting how long after its making (``emit_time``) each prediction was written (ms)."""

    def __init__(self) -> None:
        self.ms: list[float] = []

    def write(self, pred) -> None:
        self.ms.append((time.time() - pred.emit_time) * 1000.0)


def live_streams(n: int, seconds: float, *overrides: str) -> tuple[dict, list[float]]:
    recordings = max(1, round(seconds / 0.3))
    sources = ", ".join(
        f"{{type: digits_dvs, live: true, offset: {i * recordings}, limit: {recordings}}}" for i in range(n)
    )
    base = ["runtime.progress=false", "report.path=null", "sinks=[]", "policy.reset=on_exit"]
    source = f"source={{type: streams, sources: [{sources}]}}"
    cfg = load_pipeline(PIPELINE, [*base, source, f"runtime.batch_size={n}", *overrides])
    pipe = build_pipeline(cfg)
    lag = Lag()
    pipe.sinks.append(lag)
    return run_pipeline(pipe).report, lag.ms


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test", choices=["train", "val", "test"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples-per-task", type=int, help="default: the pipeline's (four ranges per worker)")
    ap.add_argument("--json", default="runs/bench/ray_replay.json")
    ap.add_argument("--ray-address", help="a running cluster (auto, ray://head:10001); else a local instance")
    ap.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    ap.add_argument("--cpus", type=int, default=1, help="CPUs per worker")
    ap.add_argument("--streams", type=int, default=4, help="live streams (0: no live part)")
    ap.add_argument("--stream-s", type=float, default=3.0, help="seconds of each live stream")
    args = ap.parse_args()
    for _ in DigitsDVS(DigitsDVSSourceConfig(split=args.split)):  # fill the disk cache (untimed)
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
            if args.samples_per_task:
                overrides = [*overrides, f"ray.samples_per_task={args.samples_per_task}"]
            report = replay(args.split, *overrides)
            if name not in best or report["samples_per_s"] > best[name]["samples_per_s"]:
                best[name] = report
    live: dict[str, tuple[dict, list[float]]] = {}
    if args.streams:
        for _ in DigitsDVS(
            DigitsDVSSourceConfig(split=args.split, limit=args.streams * max(1, round(args.stream_s / 0.3)))
        ):
            pass
        live["local"] = live_streams(args.streams, args.stream_s)
        ray_cpus = args.cpus if args.ray_address else 1
        live["ray, 2 workers"] = live_streams(
            args.streams, args.stream_s, "executor=ray", "ray.workers=2", f"ray.cpus={ray_cpus}"
        )
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
            f"mean steps {report['mean_steps']:.2f}, mean batch {report['mean_batch']:.1f}"
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
                "mean_batch": report.get("mean_batch"),
                "workers_start_s": report.get("workers_start_s"),
            }
        )
    live_rows = []
    if live:
        print(f"Live: {args.streams} digits-dvs streams played in real time, {args.stream_s:g} s each")
    for name, (report, lag) in live.items():
        e2e = report["e2e_latency_ms"]
        row = {
            "case": name,
            "decisions": report["samples"],
            "accuracy": report["accuracy"],
            "dropped_slices": report["dropped_slices"],
            "e2e_p50_ms": e2e["p50"],
            "e2e_p99_ms": e2e["p99"],
            "lag_p50_ms": percentile(lag, 50),
            "lag_p99_ms": percentile(lag, 99),
            "predictions": len(lag),
        }
        live_rows.append(row)
        print(
            f"  {name:<16} {row['decisions']:4d} decisions ({row['accuracy']:.2%}), {row['predictions']} "
            f"predictions, dropped slices {row['dropped_slices']}; slice → prediction p50 "
            f"{row['e2e_p50_ms']:.2f} ms (p99 {row['e2e_p99_ms']:.2f}); prediction → driver's sinks "
            f"p50 {row['lag_p50_ms']:.2f} ms (p99 {row['lag_p99_ms']:.2f})"
        )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"split": args.split, "ray_start_s": startup, "rows": rows, "live": live_rows}
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
