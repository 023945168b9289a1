"""The interface every sink keeps, and the registry of sinks by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from streamsnn.events import Packet, Sensor
from streamsnn.options import Registry
from streamsnn.prediction import Prediction


class Sink:
    """Where predictions go. ``write(pred)`` is called from the sink thread for every prediction;
    the other hooks do nothing unless a sink needs them: ``start()`` before the run starts (e.g.
    wait for subscribers), ``write_packet(packet, sensor)`` for every source packet (in the source
    thread; only for sinks that declare ``needs_events``), ``flush()`` after every group of
    predictions (in the sink thread), ``finish(report)`` with the run's report before ``close()``.
    A hook that raises takes its sink out of the run (the runner names it; the others go on).

    ``needs_events`` (a capability of the class): the sink takes the source's events, so the
    source must give events and the sink must run where the source is read. ``endpoint``: where the
    sink publishes, for subscribers to connect to (None: nowhere). ``target``: the file it writes,
    named in its errors. ``resumes``: it continues an earlier replay's output (``held_samples()``).
    """

    needs_events: ClassVar[bool] = False
    endpoint: str | None = None
    target: str | None = None
    resumes: bool = False
    live: bool = False  # the run's source is live (set by build_pipeline): predictions come at sensor pace
    threshold: float | None = None  # the exit policy's threshold, if it has one (set by build_pipeline)
    run_counters: Callable[[], dict[str, Any]] | None = None  # the run's running counters (set by the runner)

    def start(self) -> None:
        """Before the run's first packet."""

    def write(self, pred: Prediction) -> None:
        raise NotImplementedError

    def write_packet(self, packet: Packet, sensor: Sensor) -> None:
        """A packet of the source (``needs_events`` sinks only)."""

    def flush(self) -> None:
        """Hand what is buffered to the operating system (a run killed later keeps it)."""

    def held_samples(self) -> set[tuple[str, int]]:
        """The samples (stream, sample) whose predictions a resuming sink already holds, final
        included (known after ``start()``): the run skips those every resuming sink holds."""
        return set()

    def finish(self, report: dict[str, Any]) -> None:
        """The run's report, before ``close()``."""

    def counters(self) -> dict[str, int]:
        """What the sink counted, for the run's report (summed over the sinks; the record sink:
        ``recorded_events``, ``late_events_not_recorded``)."""
        return {}

    def close(self) -> None:
        """Release what the sink holds (called once the run is over, also after an error)."""


SINKS: Registry[Sink] = Registry("sink")
