"""A consumer of streamsnn's live predictions: acts on final decisions, keeps a running tally per
stream, and restarts itself when it falls behind (the zguide's Suicidal Snail).

Run a pipeline with a zmq sink, then this, e.g.:

    streamsnn run pipelines/digits_dvs.yaml --set runtime.realtime=true \
        --set "sinks=[{type: zmq, address: 'tcp://127.0.0.1:5556'}]"
    python examples/consumer.py tcp://127.0.0.1:5556 --min-confidence 0.9

It stops at the publisher's summary (the end of a replay), after ``--seconds``, or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import time

from streamsnn.subscriber import LagError, Subscriber


def consume(address: str, min_confidence: float, max_lag_s: float, seconds: float | None) -> dict:
    """Tally confident final decisions per stream until the summary; returns the tallies."""
    tally: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    right = wrong = 0
    deadline = None if seconds is None else time.monotonic() + seconds
    with Subscriber(address, final_only=True, max_lag_s=max_lag_s, on_lag="raise") as sub:
        while deadline is None or time.monotonic() < deadline:
            msg = sub.receive(timeout_s=0.5)
            if msg is None:
                continue
            if msg.kind == "summary":
                print(f"publisher finished: {msg.data['published']} messages")
                break
            p = msg.data
            if msg.gap:
                print(f"  ({msg.gap} message(s) of {msg.stream} lost before this one)")
            if p["confidence"] < min_confidence:
                continue  # a decision, but not one to act on
            tally[msg.stream][p["class"]] += 1
            if p["label"] is not None:
                right, wrong = right + (p["class"] == p["label"]), wrong + (p["class"] != p["label"])
            origin = "last value" if msg.cached else f"after {p['step']} steps"
            print(
                f"{msg.stream}: class {p['class']} ({p['confidence']:.2f}, {origin}, "
                f"input {p['input_latency_ms']:.0f} ms, lag {msg.lag_s * 1e3:.1f} ms)"
            )
        print(f"subscriber stats: {sub.stats}")
    if right + wrong:
        print(f"acted on {right + wrong} decisions, {100 * right / (right + wrong):.1f} % right")
    return {stream: dict(counts) for stream, counts in tally.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("address", nargs="?", default="tcp://127.0.0.1:5556")
    ap.add_argument("--min-confidence", type=float, default=0.9)
    ap.add_argument("--max-lag-ms", type=float, default=500.0)
    ap.add_argument("--seconds", type=float, help="stop after this long")
    args = ap.parse_args()
    while True:
        try:
            print(consume(args.address, args.min_confidence, args.max_lag_ms / 1000, args.seconds))
            return
        except LagError as err:  # too far behind to act on anything: start afresh
            print(f"{err}: restarting")


if __name__ == "__main__":
    main()
