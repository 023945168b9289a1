"""Benchmark: event ingestion, read → slice → bin, on 10-million-event streams through the
product's own code path (``Slicer`` and the runtime's event encoder, one thread), against tonic's
``ToFrame`` over the same events, all measured in this run.

    .venv/bin/python benchmarks/ingest.py [--events 10000000] [--repeats 5] [--packet-us 1000]

Cases:
  (a) CIFAR10-DVS geometry: 128×128, samples of ~200k events over 1 s, one ``.npy`` recording
      per sample, each replayed as one packet and cut into 10 equal-event slices
      (``n_event_bins=10``; the runtime's ``sample_slices``), binned by ``event_count``.
      Target: ≥ 50 M events/s end to end. Also SEENN's frames (resized to 48×48) against
      tonic's ``ToFrame`` + bilinear resize (``seenn_frames``).
  (b) Prophesee Gen4 geometry: 1280×720, one 1 s recording, pushed in ``--packet-us`` packets
      as a live stream (splitting into packets untimed) and cut into 10 ms windows
      (``time_window_us=10000``), binned by ``event_count``; tonic with ``include_incomplete``
      so that it bins the same 100 windows. Target: ≥ 3× tonic's ``ToFrame``.

Events are synthetic but shaped like real scenes: 80 % on the edges of a few blobs moving across
the sensor (polarity from the side of motion), 20 % uniform background, sorted µs timestamps.
Recordings are written to a temporary folder (so they are read from the page cache) and read
with the product's ``read_events``; ``np.load`` of the same files is timed as the floor. Tonic's
baseline is ``ToFrame`` alone on in-memory events: its reading is not timed. Each figure is the
best of ``--repeats`` runs; outputs are checked equal to tonic's before timing.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tonic
import torch

from streamsnn.encoding import ENCODERS, EventCountEncoderConfig
from streamsnn.events import Packet, Slice, make_events
from streamsnn.lab.datasets import seenn_frames
from streamsnn.runtime.samples import sample_slices
from streamsnn.slicing import Slicer, SlicingConfig
from streamsnn.sources.recordings import read_events


def scene_events(rng: np.random.Generator, n: int, width: int, height: int, duration_us: int) -> np.ndarray:
    """``n`` events over [0, duration_us) (µs, sorted) on a width×height sensor: edges of four
    blobs moving in straight lines, plus 20 % uniform background activity."""
    t = np.sort(rng.integers(0, duration_us, n))
    start = rng.uniform(0, 1, (4, 2)) * (width, height)
    velocity = (rng.uniform(0, 1, (4, 2)) * (width, height) - start) / duration_us
    blob = rng.integers(0, 4, n)
    offset = rng.normal(0, 0.06 * width, (n, 2))
    xy = start[blob] + velocity[blob] * t[:, None] + offset
    on = (offset * velocity[blob]).sum(1) > 0  # leading edge ON, trailing edge OFF
    noise = rng.random(n) < 0.2
    xy[noise] = rng.uniform(0, 1, (int(noise.sum()), 2)) * (width, height)
    on[noise] = rng.random(int(noise.sum())) < 0.5
    x = np.clip(xy[:, 0], 0, width - 1).astype(np.int16)
    y = np.clip(xy[:, 1], 0, height - 1).astype(np.int16)
    return make_events(t, x, y, on)


def read_reference(paths: list[Path]) -> dict[str, float]:
    """Seconds to read the same files with ``np.load`` alone: the floor for the read stage."""
    t0 = time.perf_counter()
    for path in paths:
        np.load(path)
    return {"np_load": time.perf_counter() - t0}


def best_of(repeats: int, run: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The stage times (s) of the run with the lowest total, out of ``repeats`` runs."""
    return min((run() for _ in range(repeats)), key=lambda stages: sum(stages.values()))


# -- (a) CIFAR10-DVS: segmented samples, equal-event bins --------------------------------------
def cifar10dvs_ours(paths: list[Path], size: int | None) -> dict[str, float]:
    encoder = ENCODERS.build(EventCountEncoderConfig(size=size), (2, 128, 128))
    stages = dict(read=0.0, slice=0.0, bin=0.0)
    for i, path in enumerate(paths):
        t0 = time.perf_counter()
        events = read_events(path)
        t1 = time.perf_counter()
        packet = Packet("cifar10dvs", i, events, t0_us=0, t_end_us=1_000_000)
        slices = sample_slices(packet, Slicer(SlicingConfig(n_event_bins=10)), 1)
        t2 = time.perf_counter()
        for s in slices:
            encoder(s)
        t3 = time.perf_counter()
        stages["read"] += t1 - t0
        stages["slice"] += t2 - t1
        stages["bin"] += t3 - t2
    return stages


def cifar10dvs_tonic(samples: list[np.ndarray], size: int | None) -> dict[str, float]:
    to_frame = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_event_bins=10)
    t0 = time.perf_counter()
    for events in samples:
        if size:
            seenn_frames(events, 10, size)
        else:
            to_frame(events)
    return {"to_frame": time.perf_counter() - t0}


def check_cifar10dvs(path: Path, events: np.ndarray) -> None:
    encoder = ENCODERS.build(EventCountEncoderConfig(), (2, 128, 128))
    slices = sample_slices(
        Packet("check", 0, read_events(path), t0_us=0, t_end_us=1_000_000),
        Slicer(SlicingConfig(n_event_bins=10)),
        1,
    )
    ours = torch.stack([encoder(s) for s in slices]).numpy()
    theirs = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_event_bins=10)(events)
    assert np.array_equal(ours, theirs.astype(np.float32)), "(a): frames differ from tonic's"
    resized = ENCODERS.build(EventCountEncoderConfig(size=48), (2, 128, 128))
    assert torch.equal(torch.stack([resized(s) for s in slices]), seenn_frames(events)), (
        "(a): SEENN frames differ"
    )


# -- (b) Gen4: one live stream, 10 ms windows --------------------------------------------------
def gen4_ours(path: Path, packet_us: int, keep: list[torch.Tensor] | None = None) -> dict[str, float]:
    encoder = ENCODERS.build(EventCountEncoderConfig(), (2, 720, 1280))
    slicer = Slicer(SlicingConfig(time_window_us=10_000))
    stages = dict(read=0.0, slice=0.0, bin=0.0)
    t0 = time.perf_counter()
    events = read_events(path)
    stages["read"] = time.perf_counter() - t0
    t = events["t"]  # the packets a live source would deliver (untimed)
    cuts = np.searchsorted(t, np.arange(int(t[0]), int(t[-1]) + packet_us, packet_us)[1:]).tolist()
    packets = [events[lo:hi] for lo, hi in zip([0, *cuts[:-1]], cuts, strict=True)]
    for i, packet in enumerate(packets):
        t1 = time.perf_counter()
        cut = slicer.push(packet) if i + 1 < len(packets) else slicer.push(packet) + slicer.flush()
        slices = [Slice("gen4", -1, -1, s.t_start_us, s.t_end_us, s.events, s.t_start_us) for s in cut]
        t2 = time.perf_counter()
        for s in slices:
            x = encoder(s)
            if keep is not None:
                keep.append(x)
        t3 = time.perf_counter()
        stages["slice"] += t2 - t1
        stages["bin"] += t3 - t2
    return stages


def gen4_tonic(events: np.ndarray) -> dict[str, float]:
    to_frame = tonic.transforms.ToFrame(
        sensor_size=(1280, 720, 2), time_window=10_000, include_incomplete=True
    )
    t0 = time.perf_counter()
    to_frame(events)
    return {"to_frame": time.perf_counter() - t0}


def check_gen4(path: Path, events: np.ndarray, packet_us: int) -> None:
    frames: list[torch.Tensor] = []
    gen4_ours(path, packet_us, keep=frames)
    to_frame = tonic.transforms.ToFrame(
        sensor_size=(1280, 720, 2), time_window=10_000, include_incomplete=True
    )
    theirs = to_frame(events[: len(events) // 10])  # the first 10 windows are enough
    for i in range(len(theirs) - 1):
        assert np.array_equal(frames[i].numpy(), theirs[i].astype(np.float32)), f"(b): window {i} differs"


# -- report ------------------------------------------------------------------------------------
def row(
    case: str, n: int, ours: dict[str, float], np_load_s: float, tonic_s: float, target: str
) -> dict[str, Any]:
    total = sum(ours.values())
    with_np_load = total - ours["read"] + np_load_s
    return {
        "case": case,
        "events": n,
        **{f"{k}_s": round(v, 4) for k, v in ours.items()},
        "total_s": round(total, 4),
        **{f"{k}_mev_s": round(n / v / 1e6, 1) for k, v in ours.items() if v > 0},
        "end_to_end_mev_s": round(n / total / 1e6, 1),
        "read_np_load_s": round(np_load_s, 4),
        "end_to_end_with_np_load_mev_s": round(n / with_np_load / 1e6, 1),
        "tonic_to_frame_s": round(tonic_s, 4),
        "tonic_mev_s": round(n / tonic_s / 1e6, 2),
        "ours_over_tonic": round(tonic_s / total, 1),
        "ours_with_np_load_over_tonic": round(tonic_s / with_np_load, 1),
        "target": target,
    }


def print_table(rows: list[dict[str, Any]], header: str) -> None:
    print(header)
    print(f"  {'case':<38} {'stage':<26} {'seconds':>8} {'M ev/s':>8}")
    for r in rows:
        stages = [("read (read_events)", r["read_s"]), ("slice", r["slice_s"]), ("bin", r["bin_s"])]
        stages.append(("end to end", r["total_s"]))
        stages.append(("read with np.load (floor)", r["read_np_load_s"]))
        stages.append(("end to end, np.load read", r["total_s"] - r["read_s"] + r["read_np_load_s"]))
        stages.append(("tonic ToFrame (in memory)", r["tonic_to_frame_s"]))
        for j, (name, seconds) in enumerate(stages):
            case = r["case"] if j == 0 else ""
            rate = r["events"] / seconds / 1e6 if seconds else float("inf")
            print(f"  {case:<38} {name:<26} {seconds:>8.4f} {rate:>8.1f}")
        ratio, floor = r["ours_over_tonic"], r["ours_with_np_load_over_tonic"]
        print(f"  {'':<38} {'ours / tonic':<26} {'':>8} {ratio:>7.1f}×   target: {r['target']}")
        print(f"  {'':<38} {'ours / tonic, np.load read':<26} {'':>8} {floor:>7.1f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000, help="events per case")
    ap.add_argument("--sample-events", type=int, default=200_000, help="(a): mean events per sample")
    ap.add_argument("--packet-us", type=int, default=1_000, help="(b): packet length pushed to the slicer")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", default="a,seenn,b", help="comma-separated subset of a, seenn, b")
    args = ap.parse_args()
    cases = set(args.cases.split(","))
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = args.events

    sizes = rng.integers(
        args.sample_events * 3 // 4, args.sample_events * 5 // 4, n // args.sample_events * 2
    )
    sizes = sizes[: int(np.searchsorted(np.cumsum(sizes), n)) + 1]
    sizes[-1] = n - sizes[:-1].sum()
    samples = [scene_events(rng, int(k), 128, 128, 1_000_000) for k in sizes]
    stream = scene_events(rng, n, 1280, 720, 1_000_000)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"cifar10dvs_{i:03d}.npy" for i in range(len(samples))]
        for path, events in zip(paths, samples, strict=True):
            np.save(path, events)
        gen4 = Path(tmp) / "gen4.npy"
        np.save(gen4, stream)
        check_cifar10dvs(paths[0], samples[0])
        check_gen4(gen4, stream, args.packet_us)
        if "a" in cases:
            ours = best_of(args.repeats, lambda: cifar10dvs_ours(paths, None))
            theirs = best_of(args.repeats, lambda: cifar10dvs_tonic(samples, None))["to_frame"]
            case = f"(a) 128×128, {len(samples)} samples, 10 ev bins"
            floor = best_of(args.repeats, lambda: read_reference(paths))["np_load"]
            rows.append(row(case, n, ours, floor, theirs, "≥ 50 M events/s end to end"))
        if "seenn" in cases:
            ours = best_of(args.repeats, lambda: cifar10dvs_ours(paths, 48))
            theirs = best_of(args.repeats, lambda: cifar10dvs_tonic(samples, 48))["to_frame"]
            case = "(a') same, SEENN frames 48×48"
            floor = best_of(args.repeats, lambda: read_reference(paths))["np_load"]
            rows.append(row(case, n, ours, floor, theirs, "none (tonic + resize = seenn_frames)"))
        if "b" in cases:
            ours = best_of(args.repeats, lambda: gen4_ours(gen4, args.packet_us))
            theirs = best_of(args.repeats, lambda: gen4_tonic(stream))["to_frame"]
            case = f"(b) 1280×720, 10 ms, {args.packet_us} µs packets"
            floor = best_of(args.repeats, lambda: read_reference([gen4]))["np_load"]
            rows.append(row(case, n, ours, floor, theirs, "≥ 3× tonic's ToFrame"))

    print_table(
        rows,
        f"Event ingestion: read → slice → bin, {n:,} events per case, torch threads "
        f"{torch.get_num_threads()}, best of {args.repeats} (this machine, this run; "
        f"tonic {tonic.__version__}: ToFrame on in-memory events, its reading not timed)",
    )
    print(json.dumps({"torch_threads": torch.get_num_threads(), "repeats": args.repeats, "rows": rows}))


if __name__ == "__main__":
    main()
