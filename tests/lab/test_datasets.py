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


def test_cifar10_batches_are_read_without_running_what_they_hold(tmp_path):
    """The official layout (Python 2 pickles of numpy arrays) reads; a planted data_batch_1 that
    would create a folder when unpickled is refused, naming the file and the global, and does nothing."""
    import os
    import pickle

    from streamsnn.lab.datasets import DatasetError, cifar10_arrays
    from tests.datasets_layout import write_cifar10

    root = write_cifar10(tmp_path / "data", per_batch=3)
    images, labels = cifar10_arrays(root, "train")
    assert images.shape == (15, 3, 32, 32) and images.dtype == np.uint8 and labels.shape == (15,)

    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": Planted(), b"labels": [0]}, f)
    with pytest.raises(
        DatasetError, match=r"data_batch_1: not a readable CIFAR-10 batch .*refuses 'posix\.mkdir'"
    ):
        cifar10_arrays(root, "train")
    assert not marker.exists()
    with open(root / "cifar-10-batches-py" / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, f)
    with pytest.raises(DatasetError, match=r"data is ndarray \(2, 3072\), not N×3072 uint8"):
        cifar10_arrays(root, "train")
