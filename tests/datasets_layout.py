"""Tiny data sets written in the real on-disk layouts, for tests that train or replay."""

import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

CIFAR10DVS_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


class Python2Pickler(pickle._Pickler):
    """Pickles as the official CIFAR-10 batches were written (Python 2's cPickle, protocol 2): every
    string is a Python 2 ``str`` (BINSTRING) and numpy's array reconstructor is named
    ``numpy.core.multiarray._reconstruct``."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", "") == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def write_cifar10(root: Path, per_batch: int = 4, seed: int = 0) -> Path:
    """CIFAR-10's official python layout: root/cifar-10-batches-py/{data_batch_1..5,test_batch},
    pickled as the official files are (``Python2Pickler``)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            Python2Pickler(f, protocol=2).dump(batch)
    with open(folder / "batches.meta", "wb") as f:
        Python2Pickler(f, protocol=2).dump({b"label_names": [c.encode() for c in CIFAR10DVS_CLASSES]})
    return root


def write_aedat4(path: Path, events: np.ndarray, size: tuple[int, int] = (128, 128)) -> None:
    """An AEDAT4 file written by dv-processing (as a DV camera would record it)."""
    import dv_processing as dv

    store = dv.EventStore()
    for t, x, y, p in zip(events["t"], events["x"], events["y"], events["p"], strict=True):
        store.push_back(int(t), int(x), int(y), bool(p))
    writer = dv.io.MonoCameraWriter(str(path), dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer", size))
    writer.writeEvents(store)
    del writer  # closes the file


def write_cifar10dvs(
    root: Path, numbers=(*range(80), *range(800, 810), *range(900, 910)), events: int = 60, seed: int = 0
) -> Path:
    """tonic's CIFAR10-DVS layout: root/CIFAR10DVS/CIFAR10DVS.zip plus <class>/cifar10_<class>_<n>.aedat4
    (tonic wants the archive and at least 1000 recordings to consider the data set present)."""
    rng = np.random.default_rng(seed)
    location = root / "CIFAR10DVS"
    location.mkdir(parents=True)
    with zipfile.ZipFile(location / "CIFAR10DVS.zip", "w") as z:
        z.writestr("README.txt", "test fixture")
    dtype = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
    for cls in CIFAR10DVS_CLASSES:
        (location / cls).mkdir()
        for n in numbers:
            ev = np.zeros(events, dtype=dtype)
            ev["t"] = np.sort(rng.integers(0, 1_000_000, events))
            ev["x"], ev["y"] = rng.integers(0, 128, events), rng.integers(0, 128, events)
            ev["p"] = rng.integers(0, 2, events)
            write_aedat4(location / cls / f"cifar10_{cls}_{n}.aedat4", ev)
    return root


def partial_copy(root: Path, to: Path) -> Path:
    """A partial copy of ``write_cifar10dvs``'s data set: 100 recordings of each class, numbered
    0–99 (its 800–809 and 900–909 renamed 80–99)."""
    import shutil

    shutil.copytree(root, to)
    for path in (to / "CIFAR10DVS").glob("*/*.aedat4"):
        n = int(path.stem.rsplit("_", 1)[1])
        if n >= 800:
            path.rename(path.with_name(path.name.replace(f"_{n}.", f"_{n - 720 if n < 900 else n - 810}.")))
    return to
