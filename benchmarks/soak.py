"""Soak benchmark: a live UDP pipeline fed for a long time stays in bounded memory.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--window 20] [--every 30] [--short]
        [--json runs/bench/soak.json]

``streamsnn run pipelines/udp_live.yaml`` runs in a process of its own (as a user runs it: per-sample
outcomes and a JSONL sink on disk, the report at the end) while ``streamsnn send --scenario
back_to_back`` plays the digits-dvs test split to its port in real time, round after round (a new
sender process each round, ~110 s of digits), for ``--minutes``. The pipeline's resident memory
(RSS, from /proc) is sampled every ``--every`` seconds. The run passes when its RSS grew by less
than 1 MB over the last ``--window`` minutes (the first minutes fill caches, buffers and the
report's exact-percentile buffers). Then the pipeline gets SIGINT and writes its report; the
table shows the samples, the growth over the window, its least-squares slope (MB/h) and what the
report counted (decisions, dropped slices, datagrams the kernel dropped). ``--short``: 3 minutes,
the last 2, a sample every 10 s (to try it; the verdict needs the full run). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIPELINE = ROOT / "pipelines" / "udp_live.yaml"
LIMIT_MB = 1.0


def rss_mb(pid: int) -> float:
    """The resident memory of process ``pid`` (MB, from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def slope_mb_per_h(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) points, in MB per hour."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mm = sum(m for _, m in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 3600 * sum((t - mt) * (m - mm) for t, m in points) / var if var else 0.0


def send_rounds(port: int, stop: threading.Event, rounds: list[int]) -> None:
    """Run ``streamsnn send`` on the digits-dvs test split, back to back, again and again."""
    while not stop.is_set():
        cmd = [sys.executable, "-m", "streamsnn.cli", "send", "--scenario", "back_to_back"]
        proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=ROOT, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if stop.wait(0.5):
                proc.terminate()
                proc.wait(10)
                return
        rounds.append(proc.returncode)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the feed runs")
    ap.add_argument("--window", type=float, default=20.0, help="the last minutes whose RSS growth counts")
    ap.add_argument("--every", type=float, default=30.0, help="seconds between RSS samples")
    ap.add_argument("--short", action="store_true", help="3 minutes, the last 2, every 10 s (a trial)")
    ap.add_argument("--out", default="runs/soak", help="the run's report, outcomes and predictions")
    ap.add_argument("--json", default="runs/bench/soak.json")
    args = ap.parse_args()
    if args.short:
        args.minutes, args.window, args.every = 3.0, 2.0, 10.0
    if args.window >= args.minutes:
        ap.error("--window must be shorter than --minutes")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    report_path, preds = out / "report.json", out / "predictions.jsonl"
    samples = out / "report_samples.jsonl"
    port = free_udp_port()
    sets = [f"source.port={port}", f"sinks=[{{type: jsonl, path: '{preds}'}}]"]
    cmd = [sys.executable, "-m", "streamsnn.cli", "run", str(PIPELINE), "--no-progress"]
    cmd += ["--report", str(report_path), *(a for s in sets for a in ("--set", s))]
    pipeline = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(pipeline.stderr or []), daemon=True)
    reader.start()
    stop, rounds = threading.Event(), []
    sender = threading.Thread(target=send_rounds, args=(port, stop, rounds), daemon=True)
    rows: list[dict] = []
    try:
        while not any("running" in line for line in stderr):  # built, about to read its port
            if pipeline.poll() is not None:
                raise RuntimeError("the pipeline ended at start:\n" + "".join(stderr)[-3000:])
            time.sleep(0.1)
        sender.start()
        started = time.monotonic()
        print(f"{'t (s)':>7} {'RSS (MB)':>9} {'decisions':>10} {'predictions':>12}")
        while True:
            t = time.monotonic() - started
            if pipeline.poll() is not None:
                raise RuntimeError("the pipeline ended early:\n" + "".join(stderr)[-3000:])
            row = {"t_s": round(t, 1), "rss_mb": round(rss_mb(pipeline.pid), 3)}
            row |= {"decisions": lines(samples), "predictions": lines(preds)}
            rows.append(row)
            print(f"{row['t_s']:>7.0f} {row['rss_mb']:>9.2f} {row['decisions']:>10} {row['predictions']:>12}")
            if t >= 60 * args.minutes:
                break
            time.sleep(max(0.0, started + len(rows) * args.every - time.monotonic()))
    finally:
        stop.set()
        sender.join(15)
        if pipeline.poll() is None:
            pipeline.send_signal(signal.SIGINT)  # Ctrl-C: the pipeline writes its report
            try:
                pipeline.wait(120)
            except subprocess.TimeoutExpired:
                pipeline.kill()
        reader.join(5)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    window_start = 60 * (args.minutes - args.window)
    window = [(r["t_s"], r["rss_mb"]) for r in rows if r["t_s"] >= window_start - 1e-6]
    growth = window[-1][1] - window[0][1]
    result = {
        "minutes": args.minutes,
        "window_minutes": args.window,
        "rss_start_mb": rows[0]["rss_mb"],
        "rss_window_start_mb": window[0][1],
        "rss_end_mb": window[-1][1],
        "rss_max_in_window_mb": max(m for _, m in window),
        "growth_in_window_mb": round(growth, 3),
        "slope_in_window_mb_per_h": round(slope_mb_per_h(window), 3),
        "passed": growth < LIMIT_MB,
        "sender_rounds": len(rounds),
        "exit_code": pipeline.returncode,
        "report": {
            k: report.get(k)
            for k in ("samples", "predictions", "dropped_slices", "skipped_slices", "wall_s", "interrupted")
        }
        | {"dropped_datagrams": report.get("source_stats", {}).get("dropped_datagrams")},
        "rows": rows,
    }
    print(
        f"RSS {result['rss_start_mb']:.2f} MB at start, "
        f"{window[0][1]:.2f} MB {args.window:g} min before the end, "
        f"{window[-1][1]:.2f} MB at the end: {growth:+.3f} MB over the last {args.window:g} minutes "
        f"(slope {result['slope_in_window_mb_per_h']:+.2f} MB/h; limit {LIMIT_MB} MB): "
        + ("passed" if result["passed"] else "FAILED")
    )
    print(
        f"report: {result['report']} (pipeline exit code {pipeline.returncode}, {len(rounds)} sender rounds)"
    )
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
