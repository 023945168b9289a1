"""SEENN's CIFAR10-DVS augmentation: one of roll or rotation per sample (its code), or both."""

import numpy as np
import pytest
import torch

from streamsnn.lab.datasets import augment_event_frames


def frames(n: int = 120, size: int = 12) -> torch.Tensor:
    """N×T×C×H×W with distinct positive values; frame t is (t + 1) × frame 0, so one transform
    applied to every frame keeps that ratio exactly."""
    base = torch.rand(n, 1, 2, size, size, generator=torch.Generator().manual_seed(0)) + 0.5
    return torch.cat([base, 2 * base, 3 * base], 1)


def as_roll(out: torch.Tensor, x: torch.Tensor, roll_px: int) -> tuple[int, int] | None:
    """The (dy, dx) within ±roll_px of a (possibly flipped) roll of x that gives out, if any."""
    for src in (x, x.flip(-1)):
        for dy in range(-roll_px, roll_px + 1):
            for dx in range(-roll_px, roll_px + 1):
                if torch.equal(out, torch.roll(src, (dy, dx), (-2, -1))):
                    return dy, dx
    return None


def test_one_of_rolls_or_rotates_with_nearest_neighbours():
    x = frames()
    out = augment_event_frames(x, np.random.default_rng(1), "one_of")
    kinds = []
    for i in range(len(x)):
        assert torch.equal(out[i, 1], 2 * out[i, 0]) and torch.equal(out[i, 2], 3 * out[i, 0])  # every frame
        if as_roll(out[i], x[i], 5) is not None:
            kinds.append("roll")
            continue
        values = set(x[i].flatten().tolist()) | {0.0}
        assert set(out[i].flatten().tolist()) <= values  # nearest: each pixel copies one
        kinds.append("rotate")
    assert 0.3 < kinds.count("roll") / len(kinds) < 0.7


def test_both_rolls_then_rotates_bilinearly():
    x = frames(40)
    unrotated = augment_event_frames(x, np.random.default_rng(2), "both", rotate_deg=0.0)
    for i in range(len(x)):  # a zero rotation leaves the (flipped) roll, up to interpolation
        rolled = [
            torch.roll(s, (dy, dx), (-2, -1))
            for s in (x[i], x[i].flip(-1))
            for dy in range(-5, 6)
            for dx in range(-5, 6)
        ]
        assert min(float((unrotated[i] - r).abs().max()) for r in rolled) < 1e-5
    out = augment_event_frames(x, np.random.default_rng(2), "both")
    values = set(x.flatten().tolist()) | {0.0}
    assert sum(v not in values for v in out.flatten().tolist()) > 0.5 * out.numel()  # interpolated
    with pytest.raises(ValueError, match="unknown CIFAR10-DVS augmentation 'some'; use one_of or both"):
        augment_event_frames(x, np.random.default_rng(2), "some")
