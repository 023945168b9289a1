"""Benchmark: the Dynamic Confidence threshold scan for 10,000 samples × 32 steps × 10,000
thresholds — the monotone linear scan against a naive scan per threshold over the same stored
outputs and against re-simulating the SNN for every threshold, all measured in this run.

    .venv/bin/python benchmarks/scan.py [--samples 10000] [--steps 32] [--resolution 1e-4]

The re-simulation baseline runs the shipped digits frame SNN once over the samples for T steps
(batched) and multiplies by the number of thresholds, because running it 10,000 times is the
very cost the scan avoids.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from streamsnn.lab.calibrate import naive_scan, threshold_grid, threshold_scan
from streamsnn.snn.checkpoint import load_checkpoint


def traces(n: int, t_n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    conf = np.clip(np.cumsum(rng.uniform(-0.05, 0.12, (n, t_n)), axis=1) + 0.1, 0, 1)
    correct = rng.random((n, t_n)) < np.linspace(0.5, 0.95, t_n)
    return conf, correct


def simulate_once(n: int, t_n: int) -> float:
    """Seconds to run the digits frame SNN over n samples for t_n steps (batches of 500)."""
    snn = load_checkpoint("builtin:digits_frames").snn()
    x = torch.rand(500, 1, 16, 16)
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(0, n, 500):
            state = snn.init_state(500)
            for _ in range(t_n):
                state, _ = snn.step(x, state)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--resolution", type=float, default=1e-4)
    ap.add_argument(
        "--sim-samples", type=int, default=2_000, help="samples simulated for the re-simulation baseline"
    )
    args = ap.parse_args()
    conf, correct = traces(args.samples, args.steps)
    grid = threshold_grid(args.resolution)

    t0 = time.perf_counter()
    fast = threshold_scan(conf, correct, args.resolution)
    t_linear = time.perf_counter() - t0

    t0 = time.perf_counter()
    slow = naive_scan(conf, correct, grid)
    t_naive = time.perf_counter() - t0
    assert np.allclose(fast.mean_steps, slow.mean_steps) and np.allclose(fast.accuracy, slow.accuracy)

    t_sim = simulate_once(args.sim_samples, args.steps) * args.samples / args.sim_samples
    t_resim = t_sim * len(grid)

    result = {
        "samples": args.samples,
        "steps": args.steps,
        "thresholds": len(grid),
        "linear_scan_s": round(t_linear, 4),
        "naive_scan_s": round(t_naive, 3),
        "one_simulation_s": round(t_sim, 3),
        "resimulation_per_threshold_s": round(t_resim, 1),
        "naive_over_linear": round(t_naive / t_linear, 1),
        "resimulation_over_linear": round(t_resim / t_linear, 1),
        "torch_threads": torch.get_num_threads(),
    }
    width = max(map(len, result))
    print("Dynamic Confidence threshold scan (same outputs, same thresholds, this machine, this run)")
    for key, value in result.items():
        print(f"  {key:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
