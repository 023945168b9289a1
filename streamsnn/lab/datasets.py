"""Training data sets: the embedded digits (events and frames), CIFAR-10 and CIFAR10-DVS.

Every data set yields input tensors ready for a model: frames N×C×H×W for ANNs, or frame
sequences N×T×C×H×W for directly trained SNNs. CIFAR-10 is read from its official python
layout (``cifar-10-batches-py``, unpickled with only the globals the official batches hold: a
planted file cannot run code); CIFAR10-DVS through tonic's dataset class, with SEENN's
preprocessing (10 frames of equal event counts with tonic's ``ToFrame``, resized to 48×48) and
the stored per-class split of ``streamsnn.sources.event_datasets`` (train to learn, val to
validate; test stays for evaluation).
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from streamsnn.encoding import bin_events
from streamsnn.sources.digits import (
    DIGITS_DVS_SENSOR,
    RECORDING_US,
    DigitsDVS,
    DigitsDVSSourceConfig,
    digit_frames,
    digits_split,
)
from streamsnn.sources.event_datasets import DatasetError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# -- digits ---------------------------------------------------------------------------------------
def rate_frame(events: np.ndarray, t0_us: int, t1_us: int, rate_unit_us: float) -> np.ndarray:
    """Events in [t0_us, t1_us) binned P×H×W as events per pixel per ``rate_unit_us``."""
    lo, hi = np.searchsorted(events["t"], [t0_us, t1_us])
    counts, _ = bin_events(events[lo:hi], DIGITS_DVS_SENSOR.shape)
    return counts * np.float32(rate_unit_us / max(int(t1_us - t0_us), 1))


def split_events(split: str, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """All digits-dvs recordings and labels of a split (from the disk cache when there)."""
    _, labels, _ = digits_split(split)
    return [
        events for _, events in DigitsDVS(DigitsDVSSourceConfig(split=split, seed=seed)).recordings()
    ], labels


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
    """Shift every image (or frame sequence) of a batch by a random whole number of pixels,
    zero fill."""
    if max_px <= 0:
        return x
    out = torch.zeros_like(x)
    h, w = x.shape[-2:]
    for i, (dy, dx) in enumerate(rng.integers(-max_px, max_px + 1, (len(x), 2))):
        out[i, ..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
            i, ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
    return out


# -- CIFAR-10 ---------------------------------------------------------------------------------------
def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_cifar10(root: Path) -> None:
    """Fetch and unpack the official CIFAR-10 python archive into ``root`` (md5 checked)."""
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "cifar-10-python.tar.gz"
    if not archive.exists():
        urllib.request.urlretrieve(CIFAR10_URL, archive)
    if _md5(archive) != CIFAR10_MD5:
        raise DatasetError(f"{archive}: checksum mismatch (corrupt or partial download); delete it and retry")
    with tarfile.open(archive) as tar:
        tar.extractall(root, filter="data")


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, as its pickles name it
CIFAR10_GLOBALS = {  # what the official batches (numpy arrays in Python 2 pickles) refer to
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # the same, pickled by numpy ≥ 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch, refusing every global but ``CIFAR10_GLOBALS``."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return CIFAR10_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refuses '{module}.{name}' (a CIFAR-10 batch holds numpy arrays, lists and bytes only)"
            ) from None


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (N×3×32×32 uint8) and labels of one official CIFAR-10 python batch, unpickled with
    ``_BatchUnpickler`` and checked (N×3072 bytes, N labels in 0…9)."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
        data, labels = batch[b"data"], np.asarray(batch[b"labels"])
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3072
        ):
            raise ValueError(f"data is {type(data).__name__} {getattr(data, 'shape', '')}, not N×3072 uint8")
        if (
            labels.shape != (len(data),)
            or labels.dtype.kind not in "iu"
            or not np.isin(labels, range(10)).all()
        ):
            raise ValueError(f"labels are not {len(data)} classes 0…9")
    except (OSError, KeyError, TypeError, pickle.UnpicklingError, ValueError, EOFError) as err:
        raise DatasetError(f"{path}: not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from None
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def cifar10_arrays(root: str | Path, split: str, download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Images (N×3×32×32 uint8) and labels of CIFAR-10 from ``root/cifar-10-batches-py``."""
    folder = Path(root) / "cifar-10-batches-py"
    if not folder.is_dir():
        if not download:
            raise DatasetError(
                f"{folder}: CIFAR-10 not found; set data.download: true or unpack "
                "cifar-10-python.tar.gz there"
            )
        download_cifar10(Path(root))
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [read_cifar10_batch(folder / name) for name in names]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def normalise_cifar10(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float() / 255.0
    mean = torch.tensor(CIFAR10_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).reshape(1, 3, 1, 1)
    return (x - mean) / std


def random_crop_flip(x: torch.Tensor, rng: np.random.Generator, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation: random crop with ``pad`` px zero padding, horizontal flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    out = torch.empty_like(x)
    offsets = rng.integers(0, 2 * pad + 1, (n, 2))
    flips = rng.random(n) < 0.5
    for i in range(n):
        dy, dx = offsets[i]
        crop = padded[i, :, dy : dy + h, dx : dx + w]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


# -- CIFAR10-DVS ------------------------------------------------------------------------------------
def seenn_frames(events: np.ndarray, frames: int = 10, size: int = 48, *, antialias: bool) -> torch.Tensor:
    """SEENN's CIFAR10-DVS preprocessing: ``frames`` frames of equal event counts
    (tonic's ``ToFrame``), 2×128×128 each, resized bilinearly to size×size, antialiased or not
    (SEENN's code resizes with torchvision's ``Resize``, which antialiases tensors from
    torchvision 0.17 on): T×2×size×size."""
    import tonic

    to_frame = tonic.transforms.ToFrame(sensor_size=(128, 128, 2), n_event_bins=frames)
    stack = to_frame(events).astype(np.float32)
    x = torch.from_numpy(stack)
    if x.shape[0] < frames:  # fewer events than frames: pad with empty frames
        x = torch.cat([x, torch.zeros(frames - x.shape[0], *x.shape[1:])])
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


def _rotate(x: torch.Tensor, angle: float, mode: str) -> torch.Tensor:
    """The frames x (T×C×H×W) rotated by ``angle`` (radians) about their centre, sampled with
    ``mode`` (nearest or bilinear); zeros outside."""
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, align_corners=False)


def augment_event_frames(
    x: torch.Tensor,
    rng: np.random.Generator,
    mode: str = "one_of",
    roll_px: int = 5,
    rotate_deg: float = 30.0,
) -> torch.Tensor:
    """SEENN's CIFAR10-DVS augmentation on N×T×C×H×W, the same for every frame of a sample: a
    horizontal flip (p = ½), then

    - ``one_of`` (SEENN's code): either a roll by up to ±``roll_px`` px in x and y or a rotation
      by up to ±``rotate_deg``° with nearest-neighbour sampling, each with p = ½;
    - ``both``: the roll and then a bilinear rotation, on every sample.
    """
    if mode not in ("one_of", "both"):
        raise ValueError(f"unknown CIFAR10-DVS augmentation '{mode}'; use one_of or both")
    out = x.clone()
    n = x.shape[0]
    flips = rng.random(n) < 0.5
    rolls = rng.random(n) < 0.5 if mode == "one_of" else np.ones(n, dtype=bool)
    rotations = ~rolls if mode == "one_of" else np.ones(n, dtype=bool)
    shifts = rng.integers(-roll_px, roll_px + 1, (n, 2))
    angles = np.deg2rad(rng.uniform(-rotate_deg, rotate_deg, n))
    for i in range(n):
        s = out[i].flip(-1) if flips[i] else out[i]
        if rolls[i]:
            s = torch.roll(s, shifts=(int(shifts[i, 0]), int(shifts[i, 1])), dims=(-2, -1))
        if rotations[i]:
            s = _rotate(s, float(angles[i]), "nearest" if mode == "one_of" else "bilinear")
        out[i] = s
    return out


__all__ = [
    "DatasetError",
    "augment_event_frames",
    "cifar10_arrays",
    "digit_frames",
    "normalise_cifar10",
    "random_crop_flip",
    "random_windows",
    "rate_frame",
    "seenn_frames",
    "shift_batch",
    "split_events",
]
