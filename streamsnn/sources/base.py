"""What every source yields, and the interface every source keeps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from streamsnn.events import Sensor


@dataclass
class Packet:
    """A piece of one stream: events (``EVENT_DTYPE``) or one frame (H×W, values in [0, 1]).

    Dataset and file sources send a whole sample per packet (``end_of_sample=True``) with its
    recording window ``[t0_us, t_end_us)`` when known; live sources send packets of a continuous
    stream (``sample=None``, ``end_of_sample=False``).
    """

    stream: str
    sample: int | None
    data: np.ndarray
    label: int | None = None
    t0_us: int | None = None
    t_end_us: int | None = None
    end_of_sample: bool = True


class Source(Protocol):
    """A source of packets: iterable, closable, used as a context manager.

    ``kind`` is ``"events"`` or ``"frames"``; ``live`` says whether data arrives on the sensor's
    own clock (and may be dropped when the pipeline is behind) or is replayed from storage
    (blocks, loses nothing). ``labels`` says whether packets carry ground truth.
    """

    kind: str
    live: bool
    labels: bool
    sensor: Sensor

    def __iter__(self) -> Iterator[Packet]: ...

    def __len__(self) -> int: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: Any) -> None: ...


class SourceBase:
    """Context-manager plumbing shared by the sources."""

    def close(self) -> None:
        pass

    def __enter__(self) -> SourceBase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
