"""Training of the QCFS-quantised ANNs that are converted to SNNs (``streamsnn train``).

Event data: the ANN sees what the SNN's running mean input looks like after any number of
slices, so it is trained on event-rate frames of random time windows of each recording
(prefixes and sub-windows, rates normalised by window length) and of whole recordings.
Frame data: the frame itself (direct input), with small random shifts.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from streamsnn.config import TrainConfig
from streamsnn.encoding import bin_events
from streamsnn.snn.checkpoint import save_checkpoint
from streamsnn.snn.models import build_model
from streamsnn.sources.digits import (
    DIGITS_DVS_SENSOR,
    GENERATE_BATCH,
    RECORDING_US,
    digit_frames,
    digits_dvs_events,
    digits_split,
)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def rate_frame(events: np.ndarray, t0_us: int, t1_us: int, rate_unit_us: float) -> np.ndarray:
    """Events in [t0_us, t1_us) binned P×H×W as events per pixel per ``rate_unit_us``."""
    lo, hi = np.searchsorted(events["t"], [t0_us, t1_us])
    counts, _ = bin_events(events[lo:hi], DIGITS_DVS_SENSOR.shape)
    return counts * np.float32(rate_unit_us / max(int(t1_us - t0_us), 1))


def split_events(split: str, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """All digits-dvs recordings and labels of a split."""
    _, labels, index = digits_split(split)
    events: list[np.ndarray] = []
    for start in range(0, len(index), GENERATE_BATCH):
        events += digits_dvs_events(index[start : start + GENERATE_BATCH], seed)
    return events, labels


def random_windows(rng: np.random.Generator, n: int, full_fraction: float, min_us: int) -> np.ndarray:
    """n windows (t0, t1) in µs: whole recordings, prefixes and sub-windows of the recording."""
    windows = np.zeros((n, 2), dtype=np.int64)
    windows[:, 1] = RECORDING_US
    kind = rng.random(n)
    length = rng.integers(min_us, RECORDING_US + 1, n)
    prefix = (kind >= full_fraction) & (kind < full_fraction + (1 - full_fraction) / 2)
    sub = kind >= full_fraction + (1 - full_fraction) / 2
    windows[prefix, 1] = length[prefix]
    start = (rng.random(n) * (RECORDING_US - length)).astype(np.int64)
    windows[sub, 0], windows[sub, 1] = start[sub], start[sub] + length[sub]
    return windows


def shift_batch(x: torch.Tensor, rng: np.random.Generator, max_px: int) -> torch.Tensor:
    """Shift every image of a batch by a random whole number of pixels (zero fill)."""
    if max_px <= 0:
        return x
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for i, (dy, dx) in enumerate(rng.integers(-max_px, max_px + 1, (len(x), 2))):
        out[i, ..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
            i, ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out


class DigitsData:
    """Training and validation inputs for a digits model, as configured."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.train.seed)
        if cfg.data.name == "digits_dvs":
            self.train_events, self.train_labels = split_events("train", cfg.data.seed)
            val_events, self.val_labels = split_events("val", cfg.data.seed)
            unit = cfg.input.rate_unit_us
            self.val_x = torch.from_numpy(
                np.stack([rate_frame(e, 0, RECORDING_US, unit) for e in val_events])
            )
        else:
            images, self.train_labels, _ = digits_split("train")
            self.train_frames = torch.from_numpy(digit_frames(images, cfg.data.size))[:, None]
            val_images, self.val_labels, _ = digits_split("val")
            self.val_x = torch.from_numpy(digit_frames(val_images, cfg.data.size))[:, None]

    def epoch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and labels of one training epoch (fresh random windows and shifts)."""
        t = self.cfg.train
        if self.cfg.data.name == "digits_dvs":
            wins = random_windows(self.rng, len(self.train_events), t.full_stream_fraction, t.min_window_us)
            unit = self.cfg.input.rate_unit_us
            x = torch.from_numpy(
                np.stack(
                    [rate_frame(e, w0, w1, unit) for e, (w0, w1) in zip(self.train_events, wins, strict=True)]
                )
            )
        else:
            x = self.train_frames
        return shift_batch(x, self.rng, t.shift_px), torch.from_numpy(self.train_labels)


def accuracy(model: nn.Module, x: torch.Tensor, y: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on inputs ``x`` (evaluation mode, batches of 256)."""
    model.eval()
    with torch.inference_mode():
        pred = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float((pred.numpy() == y).mean())


def train(cfg: TrainConfig, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the configured QCFS ANN, save the checkpoint and return its metrics."""
    seed_everything(cfg.train.seed)
    started = time.perf_counter()
    data = DigitsData(cfg)
    model = build_model(cfg.model.model_dump())
    t = cfg.train
    opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    steps_per_epoch = math.ceil(len(data.train_labels) / t.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, t.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(t.seed)
    bar = tqdm(range(t.epochs), desc="train", unit="epoch", disable=not progress)
    val_acc = 0.0
    for epoch in bar:
        x, y = data.epoch()
        model.train()
        order = torch.randperm(len(y), generator=gen)
        total = 0.0
        for i in range(0, len(y), t.batch_size):
            idx = order[i : i + t.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if (epoch + 1) % 5 == 0 or epoch + 1 == t.epochs:
            val_acc = accuracy(model, data.val_x, data.val_labels)
        bar.set_postfix(loss=f"{total / len(y):.3f}", val_acc=f"{val_acc:.4f}")
    metrics = {"val_accuracy_ann": val_acc, "train_seconds": round(time.perf_counter() - started, 1)}
    path = Path(output or cfg.output)
    save_checkpoint(path, model, cfg, metrics)
    return {"checkpoint": str(path), **metrics}
