"""Replay of recorded event data sets through tonic's own dataset classes: CIFAR10-DVS, N-MNIST and
DVS Gesture (download, on-disk layout and reading are tonic's; ``root`` is tonic's ``save_to``).

Splits are fixed and stored here, so every run, tool and paper table uses the same samples:

- CIFAR10-DVS ships no split (frameworks that split it on the fly let test recordings leak into
  training). Per class, by the recording number in the file name: 0–799 train, 800–899 val,
  900–999 test (``CIFAR10DVS_SPLITS``). A partial copy of the data set takes ``split_by:
  share``: the same shares (80/10/10 %) of the recordings present in each class, in the order of
  their numbers (on the whole data set the same split). A split that is empty is an error that
  says why.
- N-MNIST and DVS Gesture keep their official test sets; every tenth recording of the official
  training set (position % 10 == 9) is held out as val.

Within a split, samples are ordered by file path, then round-robin over the classes, so ``limit: N`` takes a
class-balanced prefix. A sample that cannot be read is skipped, logged with its number in the
split (as the predictions number it), its file and the damaged position, and counted
(``stats['skipped_samples']``); the replay continues. Events are checked as recordings' are
(``streamsnn.events.EventCheck``; dropped and reordered events counted in ``stats``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from streamsnn.events import EventCheck, EventError, Packet, Sensor
from streamsnn.options import Options
from streamsnn.sources.base import SOURCES, SourceBase, Split, sample_range
from streamsnn.sources.recordings import FORMATS, RecordingError, read_events

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
CIFAR10DVS_SPLITS = {"train": range(0, 800), "val": range(800, 900), "test": range(900, 1000)}
CIFAR10DVS_PER_CLASS = 1000  # recordings per class in the whole data set
SplitBy = Literal["number", "share"]
SPLIT_BY = (
    "CIFAR10-DVS: number, the stored split by the number in the file name (0–799 train, 800–899 val, "
    "900–999 test of each class); share, the same shares (80/10/10 %) of the recordings present in "
    "each class, in number order, for a partial copy of the data set"
)
VAL_EVERY = 10  # N-MNIST, DVS Gesture: training-set positions i with i % 10 == 9 are val


class DatasetError(FileNotFoundError):
    """A data set is missing or malformed; the message names the path and what to do."""


# name: (tonic class, sensor (W, H), has an official train/test split)
DATASETS: dict[str, tuple[str, tuple[int, int], bool]] = {
    "cifar10dvs": ("CIFAR10DVS", (128, 128), False),
    "nmnist": ("NMNIST", (34, 34), True),
    "dvs_gesture": ("DVSGesture", (128, 128), True),
}


def cifar10dvs_number(path: str) -> int:
    """The recording number in a CIFAR10-DVS file name (``cifar10_airplane_123.aedat4`` → 123)."""
    match = re.search(r"(\d+)\.aedat4$", path)
    if not match:
        raise DatasetError(f"{path}: not a CIFAR10-DVS recording name (expected ..._<number>.aedat4)")
    return int(match.group(1))


def cifar10dvs_split(
    files: list[str], targets: list[int], split: str, split_by: SplitBy = "number"
) -> list[int]:
    """Positions in ``files`` (tonic's ``dataset.data``, classes ``targets``) of ``split``: by
    the recording numbers of ``CIFAR10DVS_SPLITS`` (``number``) or by the same shares of each
    class's recordings in number order (``share``). An empty split raises ``DatasetError``
    saying why."""
    if split not in CIFAR10DVS_SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    numbers = [cifar10dvs_number(f) for f in files]
    chosen = CIFAR10DVS_SPLITS[split]
    if split_by == "number":
        picked = [i for i, n in enumerate(numbers) if n in chosen]
    else:
        per_class: dict[int, list[int]] = {}
        for i in sorted(range(len(files)), key=lambda i: numbers[i]):
            per_class.setdefault(targets[i], []).append(i)
        picked = []
        for members in per_class.values():
            n = len(members)
            picked += members[
                n * chosen.start // CIFAR10DVS_PER_CLASS : n * chosen.stop // CIFAR10DVS_PER_CLASS
            ]
    if not picked:
        raise DatasetError(_empty_split(files, numbers, targets, split, split_by))
    return picked


def _empty_split(files: list[str], numbers: list[int], targets: list[int], split: str, split_by: str) -> str:
    """Why ``split`` of these CIFAR10-DVS recordings is empty, and what to do."""
    chosen = CIFAR10DVS_SPLITS[split]
    held = f"{Path(files[0]).parent.parent if files else 'the data set'} holds {len(files):,} recordings"
    if numbers:
        held += f", numbered {min(numbers)}–{max(numbers)}"
    percent = {k: len(r) * 100 // CIFAR10DVS_PER_CLASS for k, r in CIFAR10DVS_SPLITS.items()}
    shares = "/".join(map(str, percent.values()))
    if split_by == "number":
        return (
            f"CIFAR10-DVS split '{split}' is empty: it takes recordings {chosen.start}–{chosen.stop - 1} of "
            f"each class (by the number in the file name) and {held}. A partial copy of the data set is "
            f"split with split_by: share (source.split_by to replay, data.split_by to train): {shares} % "
            "of the recordings present in each class"
        )
    most = max((targets.count(c) for c in set(targets)), default=0)
    return (
        f"CIFAR10-DVS split '{split}' is empty: split_by: share gives it {percent[split]} % of each "
        f"class's recordings, and {held}, at most {most} per class: too few to split"
    )


def round_robin(indices: list[int], targets: list[int]) -> list[int]:
    """``indices`` reordered class by class in turn (the first of every class, then the second...)."""
    rank: dict[int, int] = {}
    keyed = []
    for i in indices:
        r = rank.get(targets[i], 0)
        rank[targets[i]] = r + 1
        keyed.append((r, targets[i], i))
    return [i for _, _, i in sorted(keyed)]


def open_tonic_dataset(name: str, root: str | Path, split: str, download: bool = False) -> Any:
    """tonic's dataset class for ``name`` under ``root`` (the official part that holds ``split``)."""
    import tonic

    if name not in DATASETS:
        raise KeyError(f"unknown data set '{name}'; known: {', '.join(DATASETS)}")
    cls_name, _, official = DATASETS[name]
    cls = getattr(tonic.datasets, cls_name)
    kwargs: dict[str, Any] = {"save_to": str(root)}
    if official:
        kwargs["train"] = split != "test"
    if not download:  # tonic's own existence check decides; a missing data set is not fetched
        cls = type(cls.__name__, (cls,), {"download": _refuse_download})
    return cls(**kwargs)


def _refuse_download(self: Any) -> None:
    raise DatasetError(
        f"{self.location_on_system}: {type(self).__name__} not found in tonic's layout (its archive and "
        "the unpacked recordings); set source.download: true to fetch it, or point source.root at it"
    )


def dataset_split(name: str, dataset: Any, split: str, split_by: SplitBy = "number") -> list[int]:
    """Positions in ``dataset`` of ``split`` (see the module docstring), round-robin over classes."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; use one of {', '.join(SPLITS)}")
    if name == "cifar10dvs":
        indices = cifar10dvs_split(list(map(str, dataset.data)), list(dataset.targets), split, split_by)
    elif split == "test":
        indices = list(range(len(dataset)))
    else:
        val = [i % VAL_EVERY == VAL_EVERY - 1 for i in range(len(dataset))]
        indices = [i for i in range(len(dataset)) if val[i] == (split == "val")]
    indices.sort(key=lambda i: str(dataset.data[i]))  # the file system's listing order varies
    return round_robin(indices, list(dataset.targets))


class EventDatasetSourceConfig(Options):
    """Replay of a recorded data set through tonic: CIFAR10-DVS, N-MNIST or DVS Gesture, one
    sample per recording, with the splits stored here (CIFAR10-DVS per class: 0–799 train,
    800–899 val, 900–999 test, or ``split_by: share`` for a partial copy)."""

    type: Literal["cifar10dvs", "nmnist", "dvs_gesture"]
    root: str = Field("data", description="where the data set is, in tonic's layout (tonic's save_to)")
    download: bool = Field(False, description="fetch the data set with tonic when it is missing")
    split: Split = Field("test", description="the stored split: train, val or test")
    offset: NonNegativeInt = Field(
        0, description="skip the split's first samples (samples keep their numbers)"
    )
    limit: PositiveInt | None = Field(
        None, description="take the next N samples after offset, a class-balanced prefix (null: all)"
    )
    split_by: SplitBy = Field("number", description=SPLIT_BY)

    @model_validator(mode="after")
    def _split_by_cifar10dvs(self) -> EventDatasetSourceConfig:
        if self.split_by != "number" and self.type != "cifar10dvs":
            raise ValueError(
                f"split_by: {self.split_by} is for cifar10dvs ({self.type} has its own test set)"
            )
        return self


@SOURCES.register(EventDatasetSourceConfig)
class EventDatasetSource(SourceBase):
    """One packet of events per sample of ``split`` of a tonic data set (offline replay)."""

    kind = "events"
    live = False
    labels = True

    def __init__(self, config: EventDatasetSourceConfig) -> None:
        name, split = config.type, config.split
        self.name, self.split = name, split
        self.dataset = open_tonic_dataset(name, config.root, split, config.download)
        indices = dataset_split(name, self.dataset, split, config.split_by)
        chosen = sample_range(len(indices), config.offset, config.limit)
        self.indices, self.offset = indices[chosen.start : chosen.stop], chosen.start
        width, height = DATASETS[name][1]
        self.sensor = Sensor(name, width, height, 2, f"{DATASETS[name][0]} (tonic)")
        self.stream = f"{name}/{split}"
        self.errors: list[str] = []

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Packet]:
        for position, index in enumerate(self.indices, self.offset):
            try:
                events, label = self.dataset[index]
                events, error = EventCheck(self.sensor, self.stats)(events)
                if error is not None:
                    raise error
            except Exception as err:  # any reader failure skips only this sample
                self._skip(position, index, err)
                continue
            yield Packet(self.stream, position, events, int(label))

    def _skip(self, position: int, index: int, err: Exception) -> None:
        message = why_unreadable(self.dataset, index, err)
        self.count("skipped_samples")
        self.errors.append(message)
        log.warning("skipping sample %d of %s: %s", position, self.stream, message)


def why_unreadable(dataset: Any, index: int, err: Exception) -> str:
    """What made recording ``index`` of a tonic data set unreadable: the file and, for a format
    read here too, the damaged position as ``read_events`` sees it."""
    path = str(dataset.data[index])
    message = f"{path}: {type(err).__name__}: {err}"
    if Path(path).suffix.lower() in FORMATS and not isinstance(err, EventError):
        try:
            read_events(path, counts={})
        except (RecordingError, OSError) as detail:
            message = str(detail)
    return message
