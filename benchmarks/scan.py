"""Benchmark: the Dynamic Confidence threshold scan for 10,000 samples × 32 steps × 10,000
thresholds — the monotone linear scan against evaluating the exit rule once per threshold (the
``dynamic_confidence`` policy itself replayed on the same stored outputs, as ``evaluate`` does)
and against re-simulating the SNN for every threshold, all measured in this run.

    .venv/bin/python benchmarks/scan.py [--samples 10000] [--steps 32] [--resolution 1e-4]

Both baselines are measured on part of the work and multiplied out, because running them for
every threshold is the very cost the scan avoids: the policy is replayed at ``--replay-thresholds``
thresholds spread over the grid (and must give the scan's mean steps and accuracy there), and the
shipped digits frame SNN runs once over ``--sim-samples`` samples for T steps (batched).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from streamsnn.lab.calibrate import Collected, confidences, threshold_grid, threshold_scan
from streamsnn.lab.evaluate import replay
from streamsnn.policies import EXIT_POLICIES
from streamsnn.policies.exit import DynamicConfidenceExitConfig
from streamsnn.snn.checkpoint import load_checkpoint

CLASSES = 10


def outputs(n: int, t_n: int, seed: int = 0) -> Collected:
    """Accumulated outputs of n samples over t_n steps that drift towards each label."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    per_step = rng.normal(0.0, 2.0, (n, t_n, CLASSES)) + 1.5 * np.eye(CLASSES)[labels][:, None, :]
    zeros = np.zeros((n, t_n))
    return Collected(
        outputs=np.cumsum(per_step, axis=1),
        labels=labels,
        lengths=np.full(n, t_n),
        input_latency_ms=zeros,
        streams=["synthetic"] * n,
        samples=np.arange(n),
        alpha=float(t_n),
        ann_logits=np.zeros((0, CLASSES)),
        spikes=zeros,
        neurons=1,
        energy_uj=zeros,
        ann_energy_uj=0.0,
    )


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
        "--replay-thresholds", type=int, default=20, help="thresholds at which the policy is replayed"
    )
    ap.add_argument(
        "--sim-samples", type=int, default=2_000, help="samples simulated for the re-simulation baseline"
    )
    args = ap.parse_args()
    data = outputs(args.samples, args.steps)
    alpha = float(args.steps)
    grid = threshold_grid(args.resolution)

    t0 = time.perf_counter()
    conf = confidences(data, alpha)  # the policy's own scoring, once per (sample, step)
    correct = data.classes == data.labels[:, None]
    t_scoring = time.perf_counter() - t0

    t0 = time.perf_counter()
    fast = threshold_scan(conf, correct, args.resolution)
    t_linear = time.perf_counter() - t0

    picks = np.linspace(0, len(grid) - 1, args.replay_thresholds).round().astype(int)
    t0 = time.perf_counter()
    for k in picks:
        config = DynamicConfidenceExitConfig(
            type="dynamic_confidence", threshold=float(grid[k]), alpha=alpha, max_steps=args.steps
        )
        exits = replay(EXIT_POLICIES.build(config), data)
        assert exits.steps.mean() == fast.mean_steps[k], grid[k]
        assert (exits.classes == data.labels).mean() == fast.accuracy[k], grid[k]
    t_replay = (time.perf_counter() - t0) / len(picks) * len(grid)

    t_sim = simulate_once(args.sim_samples, args.steps) * args.samples / args.sim_samples
    t_resim = t_sim * len(grid)

    result = {
        "samples": args.samples,
        "steps": args.steps,
        "thresholds": len(grid),
        "mean_steps_range": [round(float(fast.mean_steps[0]), 2), round(float(fast.mean_steps[-1]), 2)],
        "scoring_s": round(t_scoring, 3),
        "linear_scan_s": round(t_linear, 4),
        "replay_thresholds_measured": len(picks),
        "policy_replay_per_threshold_s": round(t_replay, 1),
        "one_simulation_s": round(t_sim, 3),
        "resimulation_per_threshold_s": round(t_resim, 1),
        "replay_over_linear": round(t_replay / t_linear, 1),
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
