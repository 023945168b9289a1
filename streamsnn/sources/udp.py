"""Live events over UDP in the SPIF format (as aestream, spiffer and SpiNNaker's spif send them).

**Wire format.** Every event is one little-endian 32-bit word::

    bit  31      no-timestamp flag (1: no timestamp follows; 0: the next word is a timestamp)
    bits 30..16  x (15 bits)
    bit  15      polarity (1 ON, 0 OFF)
    bits 14..0   y (15 bits)

This is the layout of SpiNNakerManchester/spif (``spiffer``) and of aestream's UDP output,
checked here against aestream 0.6.4's own sender (``aestream input file … output udp``): its
datagrams are byte for byte what ``spif_encode`` makes. A datagram holds any number of words;
aestream sends 128 events (512 bytes) per datagram, and so does ``send_events`` by default.

**Time.** SPIF events normally carry no timestamp, so ``UDPSource`` stamps every event with its
arrival time on the monotonic clock, in µs since the source started reading (all events of one
datagram share a stamp). Words sent with the timestamp flag cleared (aestream's
``--include-timestamp``) are followed by a 32-bit sender timestamp; those timestamp words are
recognised and skipped (counted in ``sender_timestamps_ignored``), the event is still stamped on
arrival. Pace the sender in real time (``send_events(realtime=True)``): a recording blasted out at
once arrives at one instant.

**Why not aestream's ``UDPInput``.** Checked with real sockets on aestream 0.6.4:
``UDPInput(shape, port=...).read()`` returns a W×H float32 numpy array of event *counts* since the
last read (indexed ``[x, y]``), with polarity dropped (an ON and an OFF event at one pixel read as
2.0) and no times; it always binds 0.0.0.0 (every interface, no host option); it reads at most
128 events per datagram and silently drops the rest; it writes out-of-sensor coordinates into its
buffer without a bounds check; a port already in use is only printed to stderr (no exception,
nothing ever arrives); and ``stop_stream()`` leaves the socket bound until one more datagram
arrives. The pipeline's models take ON/OFF channels and the time slicer needs event times, so this
module decodes SPIF itself with a plain socket: it binds the configured host (127.0.0.1 unless a
config says otherwise), keeps polarity, takes datagrams up to 64 KiB, counts bad input, and stops
within 50 ms of ``close()``. aestream stays the way to read USB cameras (``sources/camera.py``).

**Bad input** (documented, counted recoveries, in ``stats``):

- events outside the sensor (x ≥ width or y ≥ height) are dropped: ``out_of_bounds_events``
  (the first one is logged with its coordinates);
- bytes after the last whole word of a datagram are ignored: ``malformed_datagrams``;
- silence: after ``silence_s`` without a datagram a warning is logged (once per silence, with
  its number) and ``silences`` counted; when data returns, ``recoveries`` is counted and logged; with
  ``stop_after_silence_s`` the stream ends after that much silence since the last datagram
  (``stopped_after_silence``). Before the first datagram silence is reported the same way (from
  the start of reading), but the stream waits for a sender that starts late: it ends only with
  ``first_datagram_timeout_s`` (``stopped_before_data``), else when stopped;
- datagrams that were already waiting when the source started reading (sent between building
  and running the pipeline) are kept and stamped 0, the start of reading: ``early_datagrams``.

**Datagrams the kernel dropped.** Datagrams wait in the socket's receive buffer
(``receive_buffer_bytes``; the kernel caps it at ``net.core.rmem_max``, a warning says so) until
the source reads them; when it is full the kernel drops the next ones. On Linux the source asks
for the socket's drop count with every datagram (``SO_RXQ_OVFL``: ancillary data of ``recvmsg``,
the drops before that datagram was queued) and reads it once more when it stops (``SO_MEMINFO``:
the drops after the last datagram read): ``dropped_datagrams``, logged when it first rises.

``stats`` also counts the ``datagrams`` and the ``events`` received (inside the sensor).
"""

from __future__ import annotations

import itertools
import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from streamsnn.events import EVENT_DTYPE, Packet, make_events
from streamsnn.options import ConfigError
from streamsnn.sources.base import SOURCES, SensorOptions, SourceBase

log = logging.getLogger(__name__)

SPIF_NO_TIMESTAMP = 1 << 31
SPIF_MAX_COORD = 0x7FFF
DATAGRAM_EVENTS = 128  # aestream's default packet size (512 bytes)
MAX_DATAGRAM = 65_536
POLL_S = 0.05  # longest wait in a blocking call before the source looks at ``close()`` again
# Linux's socket options for the drop count (not in Python's socket module): with every datagram
# (SO_RXQ_OVFL, a uint32 cmsg) and in the socket's memory counters (SO_MEMINFO, word 8)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_MEMINFO, MEMINFO_DROPS = 55, 8
_U32 = struct.Struct("=I")


def spif_encode(events: np.ndarray) -> np.ndarray:
    """SPIF words (uint32, no timestamps) of ``events`` (``EVENT_DTYPE``); polarity p > 0 is ON.

    Raises ``ValueError`` for coordinates SPIF cannot carry (negative or above 32767)."""
    x, y = events["x"].astype(np.int64), events["y"].astype(np.int64)
    bad = (x < 0) | (x > SPIF_MAX_COORD) | (y < 0) | (y > SPIF_MAX_COORD)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} events have coordinates SPIF cannot carry (0..{SPIF_MAX_COORD}); "
            f"first: event {i} at x={x[i]}, y={y[i]}"
        )
    p = (events["p"] > 0).astype(np.int64)
    return (SPIF_NO_TIMESTAMP | (x << 16) | (p << 15) | y).astype(np.uint32)


def spif_decode(
    payload: bytes | bytearray | memoryview,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Decode one datagram: x, y (int64) and p (int8) of its events, the number of sender
    timestamp words skipped and the number of bytes left over after the last whole word."""
    n = len(payload) // 4
    words = np.frombuffer(payload, dtype="<u4", count=n).astype(np.int64)
    skipped = 0
    flagged = (words & SPIF_NO_TIMESTAMP) != 0
    if not flagged.all():  # an event word with the flag cleared is followed by its timestamp word
        is_time = np.zeros(n, dtype=bool)
        after = -1
        for i in np.flatnonzero(~flagged).tolist():
            if i == after:  # this word is the timestamp of the previous event
                continue
            if i + 1 < n:
                is_time[i + 1] = True
                after = i + 1
        skipped = int(is_time.sum())
        words = words[~is_time]
    x = (words >> 16) & SPIF_MAX_COORD
    y = words & SPIF_MAX_COORD
    p = ((words >> 15) & 1).astype(np.int8)
    return x, y, p, skipped, len(payload) - 4 * n


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


class UDPSourceConfig(SensorOptions):
    """Live SPIF events over UDP (as aestream, spiffer and spif send them), stamped on arrival:
    one continuous stream."""

    type: Literal["udp"] = "udp"
    host: str = Field("127.0.0.1", description="the address to listen on (loopback unless changed)")
    port: int = Field(3333, ge=0, le=65535, description="the UDP port (0: a free one)")
    packet_us: PositiveInt = Field(
        1_000, description="hand over what arrived every packet_us of wall time (µs)"
    )
    silence_s: PositiveFloat = Field(
        1.0, description="warn (once) and count a silence after this long without a datagram (s)"
    )
    stop_after_silence_s: PositiveFloat | None = Field(
        None,
        description="end the stream after this much silence since the last datagram (s; null: run until "
        "stopped); a stream that has had none waits for its first (first_datagram_timeout_s)",
    )
    first_datagram_timeout_s: PositiveFloat | None = Field(
        None,
        description="end the stream if no datagram came this long after the start (s; null: wait for "
        "the first one until stopped)",
    )
    receive_buffer_bytes: int = Field(
        4 << 20,
        ge=1024,
        description="the socket's receive buffer (bytes): datagrams wait there while the source is busy; "
        "beyond it the kernel drops them (counted: dropped_datagrams)",
    )
    _no_sensor: ClassVar[str | None] = (
        "give sensor (e.g. dvs128, see `streamsnn sensors`) or width and height"
    )


@SOURCES.register(UDPSourceConfig)
class UDPSource(SourceBase):
    """Events arriving as SPIF datagrams on ``host:port``, one unsegmented live stream.

    Packets of the events received in the last ``packet_us`` of wall time (µs) are released every
    ``packet_us``, also when empty, so the pipeline can stop the source at any time; a packet's
    ``t0_us``/``t_end_us`` bound the stretch of the stream clock (µs) it covers. ``port`` 0
    takes a free port (see ``port`` after construction). The socket is bound when the source is
    made (a port in use is a ``ConfigError`` naming it) and closed by ``close()``.
    """

    kind = "events"
    live = True
    labels = False
    continuous = True

    def __init__(self, config: UDPSourceConfig) -> None:
        self.sensor = config.pixel_array(polarities=2)
        self.packet_us, self.silence_s = config.packet_us, config.silence_s
        self.stop_after_silence_s = config.stop_after_silence_s
        self.first_datagram_timeout_s = config.first_datagram_timeout_s
        host, port = config.host, config.port
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._drops_lock = threading.Lock()  # the reading thread and close() both update the count
        try:
            self._sock = socket.socket(_family(host), socket.SOCK_DGRAM)
        except OSError as err:
            raise ConfigError(f"source.host: cannot open a UDP socket for '{host}': {err.strerror}") from None
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, config.receive_buffer_bytes)
            self._sock.bind((host, port))
        except socket.gaierror as err:
            self._sock.close()
            raise ConfigError(f"source.host: cannot resolve '{host}': {err.strerror}") from None
        except OSError as err:
            self._sock.close()
            raise ConfigError(
                f"source.port: cannot listen for UDP on {host}:{port}: {err.strerror or err}"
            ) from None
        self.host, self.port = self._sock.getsockname()[:2]
        self.stream = f"udp/{self.host}:{self.port}"
        self.t0_ns: int | None = None  # monotonic clock (ns) at sensor time 0, once reading
        self._warned_bounds = False
        for key in ("datagrams", "events", "silences", "recoveries", "out_of_bounds_events"):
            self.stats[key] = 0
        self._ancillary = self._count_drops(config.receive_buffer_bytes)

    def _count_drops(self, asked: int) -> int:
        """Ask the kernel for the drop count with every datagram (Linux); the ancillary buffer's
        size for ``recvmsg`` (0: drops are not counted here). Warn if the receive buffer is
        smaller than ``asked`` (Linux reports twice what it grants)."""
        granted = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        if sys.platform.startswith("linux") and granted // 2 < asked:
            log.warning(
                "%s: the kernel gave a receive buffer of %d bytes, not %d (net.core.rmem_max caps it): "
                "datagrams beyond it are dropped (dropped_datagrams)",
                self.stream,
                granted // 2,
                asked,
            )
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        except OSError:
            log.info("%s: this system does not count the datagrams its kernel drops", self.stream)
            return 0
        self.stats["dropped_datagrams"] = 0
        return socket.CMSG_SPACE(_U32.size)

    def _dropped(self, total: int) -> None:
        """The socket's drop count (since it was opened) is ``total``."""
        with self._drops_lock:
            before = self.stats["dropped_datagrams"]
            self.stats["dropped_datagrams"] = max(before, total)
        if before == 0 < total:
            log.warning(
                "%s: the kernel dropped datagrams (its receive buffer was full: the source reads too "
                "slowly, or receive_buffer_bytes is too small); counted in dropped_datagrams",
                self.stream,
            )

    def _receive(self, buf: bytearray) -> int:
        """One datagram into ``buf`` (its size), with the socket's drop count."""
        if not self._ancillary:
            return self._sock.recv_into(buf)
        size, ancillary, _, _ = self._sock.recvmsg_into([buf], self._ancillary)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL and len(data) >= _U32.size:
                self._dropped(_U32.unpack_from(data)[0])
        return size

    def _last_drops(self) -> None:
        """Drops after the last datagram read carry no datagram: read the count itself (Linux)."""
        if not self._ancillary:
            return
        try:
            words = self._sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * 16)
        except OSError:
            return
        if len(words) >= 4 * (MEMINFO_DROPS + 1):
            self._dropped(_U32.unpack_from(words, 4 * MEMINFO_DROPS)[0])

    def __len__(self) -> int:
        """0: a live stream has no known length."""
        return 0

    def __iter__(self) -> Iterator[Packet]:
        if self._closed.is_set():
            return
        self.t0_ns = t0 = time.monotonic_ns()
        buf = bytearray(MAX_DATAGRAM)
        parts = self._take_early(buf)
        last_data_ns, silent = t0, False
        heard = bool(self.stats.get("early_datagrams"))  # a datagram came: silence may end the stream
        packet_ns = self.packet_us * 1_000
        emit_ns, prev_end_us = t0 + packet_ns, 0
        while not self._closed.is_set():
            now = time.monotonic_ns()
            if now >= emit_ns:
                end_us = (now - t0) // 1_000
                events = np.concatenate(parts) if parts else np.empty(0, dtype=EVENT_DTYPE)
                parts = []
                yield Packet(self.stream, None, events, None, prev_end_us, end_us, end_of_sample=False)
                prev_end_us = end_us
                emit_ns += packet_ns
                if emit_ns <= now:  # fell behind: the next packet is one period from now
                    emit_ns = now + packet_ns
                quiet_s = (time.monotonic_ns() - last_data_ns) / 1e9
                if not silent and quiet_s >= self.silence_s:
                    silent = True
                    self.count("silences")
                    log.warning(
                        "%s: no data for %.1f s: silence %d (logged once per silence; counted in silences)",
                        self.stream,
                        quiet_s,
                        self.stats["silences"],
                    )
                limit, option = (
                    (self.stop_after_silence_s, "stop_after_silence_s")
                    if heard
                    else (self.first_datagram_timeout_s, "first_datagram_timeout_s")
                )
                if limit is not None and quiet_s >= limit:
                    self._last_drops()
                    self.count("stopped_after_silence" if heard else "stopped_before_data")
                    log.warning(
                        "%s: no data for %.1f s%s: ending the stream (%s)",
                        self.stream,
                        quiet_s,
                        "" if heard else " since the start",
                        option,
                    )
                    return
                continue
            try:
                self._sock.settimeout(min(max((emit_ns - now) / 1e9, 1e-4), POLL_S))
                size = self._receive(buf)
            except (TimeoutError, BlockingIOError, InterruptedError):
                continue
            except OSError:
                if self._closed.is_set():
                    return
                raise
            arrival_ns = time.monotonic_ns()
            if silent:
                silent = False
                self.count("recoveries")
                log.info(
                    "%s: data again after %.1f s of silence", self.stream, (arrival_ns - last_data_ns) / 1e9
                )
            last_data_ns, heard = arrival_ns, True
            events = self._decode(memoryview(buf)[:size], (arrival_ns - t0) // 1_000)
            if len(events):
                parts.append(events)

    def _decode(self, payload: memoryview, t_us: int) -> np.ndarray:
        x, y, p, skipped, leftover = spif_decode(payload)
        self.count("datagrams")
        if skipped:
            self.count("sender_timestamps_ignored", skipped)
        if leftover:
            self.count("malformed_datagrams")
        inside = (x < self.sensor.width) & (y < self.sensor.height)
        if not inside.all():
            out = int((~inside).sum())
            self.count("out_of_bounds_events", out)
            if not self._warned_bounds:
                self._warned_bounds = True
                i = int(np.flatnonzero(~inside)[0])
                log.warning(
                    "%s: dropping events outside the %d×%d sensor '%s' (first at x=%d, y=%d); counted in "
                    "out_of_bounds_events",
                    self.stream,
                    self.sensor.width,
                    self.sensor.height,
                    self.sensor.name,
                    x[i],
                    y[i],
                )
            x, y, p = x[inside], y[inside], p[inside]
        self.count("events", len(x))
        return make_events(np.full(len(x), t_us, dtype=np.int64), x, y, p)

    def _take_early(self, buf: bytearray) -> list[np.ndarray]:
        """Datagrams that arrived before reading started (when exactly is unknown), stamped 0."""
        parts = []
        self._sock.setblocking(False)
        try:
            while True:
                size = self._receive(buf)
                self.count("early_datagrams")
                parts.append(self._decode(memoryview(buf)[:size], 0))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            if not self._closed.is_set():
                raise
        return [p for p in parts if len(p)]

    def close(self) -> None:
        """Stop reading (an iteration in another thread ends within 50 ms) and free the port."""
        with self._lock:
            self._closed.set()
            if self._sock.fileno() >= 0:
                self._last_drops()
            self._sock.close()


def send_address(host: str, port: int) -> tuple[socket.AddressFamily, tuple[object, ...]]:
    """Where ``send_events`` sends: the address family and socket address of ``host:port``,
    resolved once; ``ValueError`` names a port outside 1..65535 or a host that does not resolve."""
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} is not a UDP port (1..65535)")
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as err:
        raise ValueError(f"cannot resolve host '{host}': {err.strerror}") from None
    return family, address


def send_events(
    events: np.ndarray,
    host: str = "127.0.0.1",
    port: int = 3333,
    realtime: bool = True,
    speed: float = 1.0,
    events_per_datagram: int = DATAGRAM_EVENTS,
    datagram_us: int = 1_000,
    stop: threading.Event | None = None,
) -> int:
    """Send ``events`` (``EVENT_DTYPE``, t in µs) as SPIF datagrams to ``host:port``; return the
    number of events sent.

    A datagram holds at most ``events_per_datagram`` events (128 = 512 bytes, what aestream sends
    and receives) from at most ``datagram_us`` of sensor time. With ``realtime`` each datagram
    leaves when its last event has happened on the wall clock, sensor time divided by ``speed``;
    without it everything is sent at once. ``stop`` (set from another thread) ends the sending early.
    ``ValueError`` (before anything is sent) names a bad address (``send_address``) or
    coordinates SPIF cannot carry (``spif_encode``); ``OSError`` a socket that refuses to send.
    """
    if events_per_datagram < 1 or 4 * events_per_datagram > MAX_DATAGRAM - 8:
        most = (MAX_DATAGRAM - 8) // 4
        raise ValueError(f"events_per_datagram must be in 1..{most}, got {events_per_datagram}")
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if datagram_us < 1:
        raise ValueError(f"datagram_us must be >= 1 µs, got {datagram_us}")
    family, address = send_address(host, port)
    if len(events) == 0:
        return 0
    if np.any(np.diff(events["t"]) < 0):
        events = events[np.argsort(events["t"], kind="stable")]
    words = spif_encode(events)
    t = events["t"].astype(np.int64) - int(events["t"][0])
    # datagram boundaries: every datagram_us of sensor time, and every events_per_datagram events
    bins = np.flatnonzero(np.diff(t // datagram_us)) + 1
    edges = [0]
    for end in [*bins.tolist(), len(t)]:
        edges.extend(range(edges[-1] + events_per_datagram, end, events_per_datagram))
        edges.append(end)
    sent = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        wall0 = time.monotonic()
        for lo, hi in itertools.pairwise(edges):
            if stop is not None and stop.is_set():
                break
            if realtime:
                delay = wall0 + t[hi - 1] * 1e-6 / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            try:
                sock.sendto(words[lo:hi].tobytes(), address)
            except ConnectionRefusedError:  # nobody listening (yet): UDP loses it, as on a wire
                continue
            sent += hi - lo
    return sent
