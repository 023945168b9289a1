"""Benchmark: how many live digits-dvs streams one run sustains in real time, with the live
decision rule of ``pipelines/udp_live.yaml`` (three staggered hypotheses per stream behind an
event-rate gate) and without it (one state per stream: confidence exit, periodic reset).

    .venv/bin/python benchmarks/live_streams.py [--streams 1,2,4,8,12,16] [--seconds 3]
        [--packet-us 5000] [--json runs/bench/live_streams.json]

N digits-dvs streams are played live (paced in real time, back to back, ``--seconds`` each) through
a ``streams`` source into one operator, with each rule. A run **sustains** N streams when no slice
was dropped and the slice → decision latency (``e2e_latency_ms`` of the final decisions: from the
slice's arrival to the decision's emission) has p99 under one slice (20 ms). The table shows, per
N and rule, the dropped slices, the decisions, e2e p50/p99 and the stepping loop's share of the
wall time; the summary gives the largest N sustained by each rule, and their ratio.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "udp_live.yaml"
SLICE_MS = 20.0
RULES = {
    "staggered + gate": [],  # the pipeline's own policy
    "one state, periodic": [
        "policy.exit={type: confidence, threshold: 0.85}",
        "policy.reset={type: periodic, every_steps: 15}",
        "policy.gate=none",
    ],
}


def run(n: int, seconds: float, packet_us: int, rule: list[str]) -> dict:
    recordings = max(1, round(seconds / 0.3))
    one = "{{type: digits_dvs, live: true, offset: {}, limit: {}, packet_us: {}}}"
    sources = ", ".join(one.format(i * recordings, recordings, packet_us) for i in range(n))
    overrides = [
        "runtime.progress=false",
        "report.path=null",
        "sinks=[]",
        f"source={{type: streams, sources: [{sources}]}}",
        f"runtime.batch_size={3 * n}",
        *rule,
    ]
    report = run_pipeline(build_pipeline(load_pipeline(PIPELINE, overrides))).report
    e2e = report["e2e_latency_ms"]
    return {
        "streams": n,
        "dropped_slices": report["dropped_slices"],
        "decisions": report["samples"],
        "e2e_p50_ms": e2e["p50"],
        "e2e_p99_ms": e2e["p99"],
        "step_share_of_wall": report["step_share_of_wall"],
        "sustained": report["dropped_slices"] == 0 and e2e["p99"] < SLICE_MS,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="1,2,4,8,12,16", help="stream counts to try (comma-separated)")
    ap.add_argument("--seconds", type=float, default=3.0, help="real time per stream and run")
    ap.add_argument("--packet-us", type=int, default=5_000, help="sensor time per packet of each stream")
    ap.add_argument("--json", default="runs/bench/live_streams.json")
    args = ap.parse_args()
    counts = [int(n) for n in args.streams.split(",")]
    rows = []
    head = ("rule", "streams", "dropped", "decisions", "e2e p50", "e2e p99", "loop")
    print("{:<22} {:>7} {:>7} {:>9} {:>8} {:>8} {:>6}".format(*head))
    for name, rule in RULES.items():
        for n in counts:
            row = {"rule": name, **run(n, args.seconds, args.packet_us, rule)}
            rows.append(row)
            print(
                f"{name:<22} {n:>7} {row['dropped_slices']:>7} {row['decisions']:>9} "
                f"{row['e2e_p50_ms']:>8.2f} {row['e2e_p99_ms']:>8.2f} {row['step_share_of_wall']:>6.2f}"
                + ("" if row["sustained"] else "  (not sustained)")
            )
    best = {
        name: max((r["streams"] for r in rows if r["rule"] == name and r["sustained"]), default=0)
        for name in RULES
    }
    print("largest number of streams sustained:", ", ".join(f"{k}: {v}" for k, v in best.items()))
    ours, theirs = best["staggered + gate"], best["one state, periodic"]
    if theirs:
        print(f"ratio staggered + gate / one state: {ours / theirs:.2f}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "sustained": best, "args": vars(args)}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
