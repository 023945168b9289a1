"""Benchmark: the dashboard server's memory under a sustained feed.

    .venv/bin/python benchmarks/dashboard_memory.py [--minutes 10] [--rate 1000] [--streams 4]

The real ``streamsnn dashboard`` (a process of its own, on 127.0.0.1) subscribes to a real zmq
sink in this process, which publishes ``--rate`` predictions per second (in 10 ms batches, spread
over ``--streams`` streams, a final every 10 steps) plus event frames (``frames: {rate_hz: 10}``,
a packet of random events per stream every 10 ms); a WebSocket client reads every snapshot the
server pushes. Every ``--every`` seconds it prints the server's resident memory (``VmRSS``), the
predictions sent and the snapshots received; at the end the ratio of the last RSS to the first
(taken after ``--warmup`` s): about 1 means bounded (the server keeps only the newest state per
stream), while a per-message leak would grow it with the 600,000 predictions of 10 minutes.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from websockets.sync.client import connect

from streamsnn.events import EVENT_DTYPE, Packet, Sensor
from streamsnn.prediction import Prediction
from streamsnn.sinks.zeromq import FramesConfig, ZmqSink, ZmqSinkConfig

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Browser(threading.Thread):
    """A WebSocket client reading every snapshot (as a page does)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.snapshots, self.bytes, self.stop = url, 0, 0, threading.Event()

    def run(self) -> None:
        with connect(self.url, max_size=None) as ws:
            while not self.stop.is_set():
                try:
                    text = ws.recv(timeout=1.0)
                except TimeoutError:
                    continue
                self.snapshots += 1
                self.bytes += len(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=1000, help="predictions per second")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between RSS readings")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds before the first reading")
    args = parser.parse_args()

    feed = f"tcp://127.0.0.1:{free_port()}"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamsnn.cli", "dashboard", feed, "--port", str(port)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    sink = ZmqSink(ZmqSinkConfig(address=feed, frames=FramesConfig(rate_hz=10, size=64)))
    sensor = Sensor("digits_dvs", 34, 34)
    rng = np.random.default_rng(0)
    try:
        deadline = time.monotonic() + 60
        while True:  # the page is served once its socket accepts
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the dashboard did not start") from None
                time.sleep(0.2)
        browser = Browser(f"ws://127.0.0.1:{port}/ws")
        browser.start()
        batch = max(1, args.rate // 100)
        streams = [f"cam{i}" for i in range(args.streams)]
        probs = [0.05] * 10
        probs[3] = 0.55
        sent, step, t0 = 0, 0, time.monotonic()
        next_reading, readings = t0 + args.warmup, []
        print(f"{'t (s)':>7} {'server RSS (MB)':>16} {'predictions sent':>17} {'snapshots received':>19}")
        while (now := time.monotonic()) < t0 + args.minutes * 60:
            for _ in range(batch):
                stream = streams[sent % len(streams)]
                step = sent // len(streams) % 10 + 1
                t_us = sent * 1000
                sink.write(
                    Prediction(
                        stream,
                        sent // (10 * len(streams)),
                        step,
                        t_us,
                        t_us + 20_000,
                        3,
                        0.55,
                        probs,
                        final=step == 10,
                        reason="confident" if step == 10 else None,
                        input_latency_ms=20.0 * step,
                        compute_latency_ms=0.5 * step,
                        e2e_latency_ms=rng.random(),
                    )
                )
                sent += 1
            for stream in streams:
                events = np.zeros(200, EVENT_DTYPE)
                events["t"] = np.arange(200) + sent * 1000
                events["x"], events["y"] = rng.integers(0, 34, 200), rng.integers(0, 34, 200)
                events["p"] = rng.integers(0, 2, 200)
                sink.write_packet(Packet(stream, None, events, end_of_sample=False), sensor)
            if now >= next_reading:
                readings.append(rss_mb(server.pid))
                print(f"{now - t0:7.0f} {readings[-1]:16.1f} {sent:17,} {browser.snapshots:19,}", flush=True)
                next_reading += args.every
            sleep = t0 + sent / args.rate - time.monotonic()
            if sleep > 0:
                time.sleep(sleep)
        readings.append(rss_mb(server.pid))
        elapsed = time.monotonic() - t0
        print(f"{elapsed:7.0f} {readings[-1]:16.1f} {sent:17,} {browser.snapshots:19,}")
        print(
            f"sent {sent:,} predictions in {elapsed:.0f} s ({sent / elapsed:,.0f}/s) "
            f"and {sink.frames_sent:,} frames; "
            f"the client got {browser.snapshots:,} snapshots ({browser.snapshots / elapsed:.1f}/s, "
            f"{browser.bytes / max(browser.snapshots, 1) / 1024:.1f} KiB each)"
        )
        print(
            f"server RSS: first {readings[0]:.1f} MB, last {readings[-1]:.1f} MB, "
            f"max {max(readings):.1f} MB, last/first {readings[-1] / readings[0]:.3f}"
        )
        browser.stop.set()
    finally:
        sink.close()
        server.terminate()
        server.wait(20)


if __name__ == "__main__":
    main()
