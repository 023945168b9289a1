"""UDP (SPIF) live input with real sockets on 127.0.0.1 and a real sender process."""

import collections
import itertools
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.events import make_events
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sinks import Sink
from streamsnn.sources.digits import RECORDING_US, digits_dvs_events, digits_split
from streamsnn.sources.udp import UDPSource, UDPSourceConfig, send_events, spif_decode, spif_encode

CLASS = 5  # the digit streamed by the sender process (mirrored or transposed, it reads as another)
SENDER = """
import json, sys, time
import numpy as np
from streamsnn.sources.udp import send_events
events = np.load(sys.argv[1])
print("ready", flush=True)
port = int(sys.stdin.readline())
print(json.dumps({"start": time.time()}), flush=True)
sent = send_events(events, "127.0.0.1", port, realtime=True)
print(json.dumps({"end": time.time(), "sent": sent}), flush=True)
"""


def digit_stream(n: int, label: int = CLASS) -> np.ndarray:
    """``n`` digits-dvs test recordings of one class, back to back on one clock (µs)."""
    _, labels, index = digits_split("test")
    parts = digits_dvs_events(index[labels == label][:n])
    for i, part in enumerate(parts):
        part["t"] += i * RECORDING_US
    return np.concatenate(parts)


class Sender:
    """A sender process: imports, says ready, gets the port on stdin, streams in real time."""

    def __init__(self, events: np.ndarray, folder: Path) -> None:
        path = folder / "events.npy"
        np.save(path, events)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-c", SENDER, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: dict[str, float] = {}
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip() == "ready":
                self.ready.set()
            elif line.startswith("{"):
                self.lines.update(json.loads(line))

    def wait_ready(self) -> None:
        assert self.ready.wait(60), "sender process did not start"

    def go(self, port: int) -> None:
        self.wait_ready()
        self.proc.stdin.write(f"{port}\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


class RunThread(threading.Thread):
    """run_pipeline in a thread, so a hang is a test failure instead of a stuck test."""

    def __init__(self, pipe) -> None:
        super().__init__(daemon=True)
        self.pipe, self.result, self.error = pipe, None, None

    def run(self) -> None:
        try:
            self.result = run_pipeline(self.pipe)
        except BaseException as err:
            self.error = err


class FirstFinal(Sink):
    """A sink that notes when the first final decision was written."""

    def __init__(self) -> None:
        self.seen = threading.Event()

    def write(self, pred) -> None:
        if pred.final:
            self.seen.set()


def udp_config(root, *overrides):
    return load_pipeline(
        root / "pipelines" / "udp_live.yaml",
        ["runtime.progress=false", "sinks=[]", "report.path=null", "source.port=0", *overrides],
    )


def test_acceptance_predictions_while_a_sender_process_streams(root, tmp_path):
    events = digit_stream(6)  # 1.8 s of sensor time
    sender = Sender(events, tmp_path)
    out = tmp_path / "preds.jsonl"
    cfg = udp_config(
        root,
        "source.silence_s=0.5",
        "source.stop_after_silence_s=1.5",
        f"sinks=[{{type: jsonl, path: {out}}}]",
    )
    pipe = build_pipeline(cfg)  # binds 127.0.0.1 on a free port while the sender starts up
    assert pipe.source.host == "127.0.0.1" and pipe.source.port > 0
    try:
        sender.wait_ready()  # imported, waiting for the port: it sends at once when told
        run = RunThread(pipe)
        run.start()
        sender.go(pipe.source.port)
        run.join(30)
        assert not run.is_alive(), "the pipeline did not end after the sender stopped"
        assert run.error is None, run.error
        assert sender.proc.wait(10) == 0
    finally:
        sender.stop()
    start, end = sender.lines["start"], sender.lines["end"]
    assert sender.lines["sent"] == len(events)
    report = run.result.report
    stats = report["source_stats"]
    assert stats["events"] == len(events)  # loopback, one sender: nothing lost or out of bounds
    assert stats["out_of_bounds_events"] == 0 and stats["stopped_after_silence"] == 1
    assert stats["silences"] >= 1  # the silence after the sender finished
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    during = [p for p in preds if start <= p["emit_time"] <= end]
    finals = [p for p in during if p["final"]]
    assert len(during) >= 20 and len(finals) >= 3  # predictions came out while it streamed
    assert all(p["stream"] == pipe.source.stream and p["label"] is None for p in preds)
    votes = collections.Counter(p["class"] for p in finals)
    assert votes.most_common(1)[0][0] == CLASS, votes  # x and y came through (polarity: see the socket tests)
    assert report["samples"] == len([p for p in preds if p["final"]])
    # the 1.5 s of silence after the sender: its empty 20 ms windows are stepped as the source's
    # packets advance sensor time, not in one burst when (if) events return
    silent = [p for p in preds if p["emit_time"] > end + 0.1]
    assert len(silent) >= 25 and silent[-1]["emit_time"] - silent[0]["emit_time"] >= 0.8
    stepped = [p for p in silent if p["reason"] != "end_of_stream"]  # (that one repeats the last)
    assert all(b["t_end_us"] - a["t_end_us"] == 20_000 for a, b in itertools.pairwise(stepped))


def test_killing_the_sender_reports_silence_and_closing_stops_the_pipeline(root, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="streamsnn.sources.udp")
    events = digit_stream(10)  # 3 s of sensor time, cut short by the kill
    sender = Sender(events, tmp_path)
    pipe = build_pipeline(udp_config(root, "source.silence_s=0.3"))  # no stop after silence
    first = FirstFinal()
    pipe.sinks.append(first)
    try:
        sender.wait_ready()  # imported, waiting for the port: it sends at once when told
        run = RunThread(pipe)
        run.start()
        sender.go(pipe.source.port)
        assert first.seen.wait(20), "no decision while the sender streamed"
        sender.proc.kill()
        killed_at = time.monotonic()
        while pipe.source.stats["silences"] < 1 and time.monotonic() - killed_at < 10:
            time.sleep(0.05)
        assert pipe.source.stats["silences"] >= 1  # the silence is reported...
        assert run.is_alive()  # ... and the live pipeline keeps waiting for data
        pipe.source.close()  # as the pipeline does on Ctrl-C or shutdown
        run.join(10)
        assert not run.is_alive(), "closing the source did not stop the pipeline"
        assert run.error is None, run.error
    finally:
        sender.stop()
    assert sender.proc.returncode != 0 and "end" not in sender.lines  # it really was cut off
    stats = run.result.report["source_stats"]
    assert 0 < stats["events"] < len(events)
    assert run.result.report["samples"] >= 1
    assert sum("no data for" in r.getMessage() for r in caplog.records) == stats["silences"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:  # the port was freed
        again.bind(("127.0.0.1", pipe.source.port))


def test_silence_then_recovery_is_reported_and_counted(caplog):
    caplog.set_level(logging.INFO, logger="streamsnn.sources.udp")
    burst = make_events(np.zeros(50, np.int64), np.arange(50) % 34, np.arange(50) // 2, np.arange(50) % 2)
    source = UDPSource(UDPSourceConfig(port=0, sensor="digits_dvs", silence_s=0.3, stop_after_silence_s=1.0))
    received, sent_b = [], None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, source:
        address = (source.host, source.port)
        began = time.monotonic()
        tx.sendto(spif_encode(burst).tobytes(), address)  # A: at once
        for packet in source:
            if len(packet.data):
                received.append(packet.data)
            waited = time.monotonic() - began
            if sent_b is None and waited > 0.7:  # B: after a silence of 0.7 s
                tx.sendto(spif_encode(burst).tobytes(), address)
                sent_b = waited
            assert waited < 20, "the source did not stop after the final silence"
    stats = source.stats
    assert stats["silences"] == 2 and stats["recoveries"] == 1 and stats["stopped_after_silence"] == 1
    assert stats["events"] == 100 and stats["datagrams"] == 2
    a, b = received[0], received[-1]
    assert len(a) == len(b) == 50
    assert b["t"][0] - a["t"][0] >= 600_000  # stamped on arrival (µs, monotonic clock)
    assert np.array_equal(a[["x", "y", "p"]], burst[["x", "y", "p"]])
    messages = [r.getMessage() for r in caplog.records]
    silences = [m for m in messages if "logged once per silence" in m]
    assert [m.split(": silence ")[1][0] for m in silences] == ["1", "2"]  # once per silence, numbered
    assert sum("data again after" in m for m in messages) == 1
    assert sum("ending the stream" in m for m in messages) == 1


def test_bad_input_is_dropped_and_counted():
    source = UDPSource(UDPSourceConfig(port=0, width=20, height=10))
    assert source.sensor.shape == (2, 10, 20)
    inside = make_events([0, 0, 0], [0, 19, 5], [0, 9, 3], [1, 0, 1])
    outside = make_events([0, 0], [20, 3], [0, 10], [1, 1])  # x = width, y = height
    stamped = np.array([0x000C8007, 0x000F44EE, 0x00028002, 0x8000_0001], dtype="<u4")  # timestamps follow
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, source:
        address = (source.host, source.port)
        packets = iter(source)
        next(packets)  # reading has started: datagrams from now on are live
        tx.sendto(spif_encode(np.concatenate([inside, outside])).tobytes(), address)
        tx.sendto(stamped.tobytes(), address)  # aestream --include-timestamp style
        tx.sendto(spif_encode(inside).tobytes() + b"\x01\x02", address)  # not a whole word at the end
        got = []
        deadline = time.monotonic() + 10
        while source.stats["datagrams"] < 3 and time.monotonic() < deadline:
            got.append(next(packets).data)
        got.append(next(packets).data)
    events = np.concatenate(got)
    assert source.stats["out_of_bounds_events"] == 2
    assert source.stats["sender_timestamps_ignored"] == 2
    assert source.stats["malformed_datagrams"] == 1
    good = inside[["x", "y", "p"]].tolist()
    assert events[["x", "y", "p"]].tolist() == [*good, (12, 7, 1), (2, 2, 1), *good]


def test_spif_words_decode_with_polarity_and_timestamp_framing():
    events = make_events([0, 1, 2], [0, 33, 32767], [5, 0, 32767], [1, 0, 1])
    words = spif_encode(events)
    assert words.tolist() == [0x8000_8005, 0x8021_0000, 0xFFFF_FFFF]
    x, y, p, skipped, leftover = spif_decode(words.tobytes())
    assert (x.tolist(), y.tolist(), p.tolist(), skipped, leftover) == (
        [0, 33, 32767],
        [5, 0, 32767],
        [1, 0, 1],
        0,
        0,
    )
    # a cleared flag means "a timestamp word follows", whatever that word's own top bit is
    framed = np.array([0x0003_8004, 0x8000_0000, 0x0001_0002, 0x0000_0010, 0x8002_0001], dtype="<u4")
    x, y, p, skipped, _ = spif_decode(framed.tobytes())
    assert (x.tolist(), y.tolist(), p.tolist(), skipped) == ([3, 1, 2], [4, 2, 1], [1, 0, 0], 2)
    with pytest.raises(ValueError, match=r"1 events have coordinates SPIF cannot carry .* x=-1, y=3"):
        spif_encode(make_events([0, 1], [5, -1], [0, 3], [1, 1]))


def receive(rx: socket.socket, until_bytes: int, out: list, arrivals: list) -> None:
    """Collect datagrams (and their arrival times) until ``until_bytes`` came or 5 s of quiet."""
    rx.settimeout(5)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # bursts: aestream does not pace
    try:
        while sum(len(d) for d in out) < until_bytes:
            out.append(rx.recv(65536))
            arrivals.append(time.monotonic())
    except TimeoutError:
        pass


def test_sender_paces_in_real_time_in_aestream_sized_datagrams():
    events = digits_dvs_events(digits_split("test")[2][:1])[0]  # 300 ms
    datagrams, arrivals = [], []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        reader = threading.Thread(target=receive, args=(rx, 4 * len(events), datagrams, arrivals))
        reader.start()
        sent = send_events(events, "127.0.0.1", rx.getsockname()[1], realtime=True)
        reader.join(10)
    assert sent == len(events)
    assert max(len(d) for d in datagrams) <= 512  # at most 128 events, as aestream reads them
    assert b"".join(datagrams) == spif_encode(events).tobytes()  # in order, nothing lost
    span = (events["t"][-1] - events["t"][0]) / 1e6
    assert arrivals[-1] - arrivals[0] >= 0.9 * span  # paced at sensor time, not blasted out


def test_aestream_sender_speaks_the_same_spif(tmp_path):
    """aestream's own sender (its CLI, streaming an AEDAT4 file) sends exactly our words."""
    aestream = shutil.which("aestream") or shutil.which("aestream", path=str(Path(sys.executable).parent))
    if aestream is None:
        pytest.skip("aestream's command-line tool is not installed")
    pytest.importorskip("dv_processing", reason="dv-processing writes the AEDAT4 file aestream reads")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from datasets_layout import write_aedat4

    events = digits_dvs_events(digits_split("test")[2][:1])[0]
    events["t"] += 1_000_000
    path = tmp_path / "digit.aedat4"
    write_aedat4(path, events, (34, 34))
    for stamped in (False, True):
        datagrams: list[bytes] = []
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
            rx.bind(("127.0.0.1", 0))
            words = len(events) * (2 if stamped else 1)
            reader = threading.Thread(target=receive, args=(rx, 4 * words, datagrams, []))
            reader.start()
            command = [aestream, "input", "file", str(path), "output", "udp", "127.0.0.1"]
            command += [str(rx.getsockname()[1]), *(["--include-timestamp", "true"] if stamped else [])]
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
            reader.join(10)
        assert done.returncode == 0, done.stderr
        decoded = [spif_decode(d) for d in datagrams]
        xyp = np.stack([np.concatenate([d[i] for d in decoded]) for i in range(3)], axis=1)
        expected = np.stack([events["x"], events["y"], events["p"]], axis=1)
        if not stamped:
            assert b"".join(datagrams) == spif_encode(events).tobytes()
            assert max(len(d) for d in datagrams) == 512
            assert np.array_equal(xyp, expected)
        else:  # event word with the flag cleared + 32-bit sender timestamp (µs) per event
            assert sum(d[3] for d in decoded) >= len(events)
            assert np.array_equal(xyp[: len(events)], expected)


def test_closing_from_another_thread_stops_a_silent_source_promptly():
    source = UDPSource(UDPSourceConfig(port=0, sensor="dvs128", silence_s=60))
    packets = []
    reader = threading.Thread(target=lambda: packets.extend(source), daemon=True)
    reader.start()
    time.sleep(0.2)
    source.close()
    reader.join(5)
    assert not reader.is_alive()
    assert packets and all(len(p.data) == 0 and p.sample is None and not p.end_of_sample for p in packets)
    assert all(a.t_end_us <= b.t0_us for a, b in itertools.pairwise(packets))


def test_port_in_use_and_bad_host_are_config_errors():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"source\.port: cannot listen for UDP on 127\.0\.0\.1:{port}"):
            UDPSource(UDPSourceConfig(port=port, sensor="dvs128"))
    with pytest.raises(ConfigError, match=r"source\.host: cannot resolve 'no-such-host\.invalid'"):
        UDPSource(UDPSourceConfig(host="no-such-host.invalid", port=0, sensor="dvs128"))
    with pytest.raises(ConfigError, match=r"source\.sensor: unknown sensor 'dvs999'"):
        UDPSource(UDPSourceConfig(port=0, sensor="dvs999"))


def test_udp_config_validation(root):
    cfg = udp_config(root)
    assert cfg.source.type == "udp" and cfg.source.host == "127.0.0.1" and cfg.source.sensor == "digits_dvs"
    with pytest.raises(ConfigError, match=r"source\.colour: unknown key"):
        udp_config(root, "source.colour=red")
    with pytest.raises(ConfigError, match="give either sensor or width and height"):
        udp_config(root, "source.width=34", "source.height=34")
    with pytest.raises(ConfigError, match="give sensor"):
        udp_config(root, "source={type: udp}")
    with pytest.raises(ConfigError, match=r"source\.port: Input should be less than or equal to 65535"):
        udp_config(root, "source.port=70000")
    with pytest.raises(ConfigError, match="expects input 2×34×34 but source 'udp' gives 2×128×128"):
        build_pipeline(udp_config(root, "source.sensor=dvs128"))


def test_a_failed_build_frees_the_port_and_closes_the_sinks_it_opened(root, tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "preds.jsonl"
    bad_sinks = f"sinks=[{{type: jsonl, path: '{out}'}}, {{type: jsonl, path: '{tmp_path}'}}]"
    for overrides, message in [
        (("source.sensor=dvs128",), "expects input 2×34×34"),  # the model check fails after binding
        ((bad_sinks,), r"sinks\[1\] \(jsonl\): .*Is a directory"),  # the second sink cannot open
    ]:
        with pytest.raises(ConfigError, match=message) as caught:
            build_pipeline(udp_config(root, f"source.port={port}", *overrides))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            # closed, not just unreachable: the caught error's traceback still holds the source
            again.bind(("127.0.0.1", port))
        assert caught.traceback
    assert out.exists() and out.read_text() == ""  # the first sink was opened, then closed


def kernel_drops(port: int) -> int:
    """The kernel's own count of datagrams dropped by the UDP socket on ``port`` (/proc/net/udp)."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port:
            return int(fields[-1])
    raise AssertionError(f"no UDP socket on port {port}")


def flood(port: int, datagrams: int) -> None:
    """``datagrams`` of 128 events each, as fast as loopback takes them."""
    words = spif_encode(make_events(np.zeros(128), np.arange(128) % 34, np.arange(128) // 34, np.ones(128)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for _ in range(datagrams):
            tx.sendto(words.tobytes(), ("127.0.0.1", port))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's drop count is Linux's")
def test_datagrams_the_kernel_drops_are_counted_as_the_kernel_counts_them(caplog):
    """A flood against a small receive buffer, before and while the source reads: every datagram
    is either received or counted as dropped, and the count is the kernel's own."""
    source = UDPSource(UDPSourceConfig(port=0, sensor="digits_dvs", receive_buffer_bytes=4096))
    reading = threading.Event()
    received: list[int] = []

    def read() -> None:
        for packet in source:
            reading.set()
            received.append(len(packet.data))

    flood(source.port, 300)  # nobody reads yet: the buffer fills and the kernel drops the rest
    reader = threading.Thread(target=read, daemon=True)
    with caplog.at_level(logging.WARNING, logger="streamsnn.sources.udp"):
        reader.start()
        assert reading.wait(10)
        flood(source.port, 300)  # while it reads
        deadline = time.monotonic() + 10
        kernel = kernel_drops(source.port)
        while time.monotonic() < deadline and (
            source.stats["datagrams"] + kernel < 600 or sum(received) < 128 * source.stats["datagrams"]
        ):
            time.sleep(0.05)  # until everything sent was read (and handed on) or dropped
            kernel = kernel_drops(source.port)
        source.close()
        reader.join(5)
    stats = source.stats
    assert kernel > 0 and stats["dropped_datagrams"] == kernel  # the last drops included (close)
    assert stats["datagrams"] + stats["dropped_datagrams"] == 600  # loopback loses nothing else
    assert stats["events"] == sum(received) == 128 * stats["datagrams"]
    assert "the kernel dropped datagrams" in caplog.text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's drop count is Linux's")
def test_the_report_shows_dropped_datagrams_and_every_out_of_bounds_event(root):
    """A pipeline whose source was flooded before it read: the report counts the datagrams the
    kernel dropped, and its top-level out_of_bounds_events the events the source dropped."""
    from streamsnn.runtime.report import report_table

    cfg = udp_config(root, "source.receive_buffer_bytes=4096", "source.stop_after_silence_s=0.5")
    pipe = build_pipeline(cfg)
    flood(pipe.source.port, 200)
    outside = spif_encode(make_events([0, 0, 0], [34, 40, 3], [0, 2, 5], [1, 0, 1]))  # 2 outside
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(outside.tobytes(), ("127.0.0.1", pipe.source.port))  # dropped too: buffer full
    run = RunThread(pipe)
    run.start()
    run.join(30)
    assert not run.is_alive() and run.error is None, run.error
    report = run.result.report
    stats = report["source_stats"]
    assert stats["dropped_datagrams"] > 0 and stats["datagrams"] + stats["dropped_datagrams"] == 201
    assert "dropped datagrams (kernel)" in report_table(report)
    # out-of-sensor events, sent once the source reads: one figure, wherever they were dropped
    pipe = build_pipeline(udp_config(root, "source.stop_after_silence_s=0.5"))
    run = RunThread(pipe)
    run.start()
    deadline = time.monotonic() + 10
    while pipe.source.t0_ns is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.sendto(outside.tobytes(), ("127.0.0.1", pipe.source.port))
    run.join(30)
    assert not run.is_alive() and run.error is None, run.error
    report = run.result.report
    assert report["source_stats"]["out_of_bounds_events"] == 2 == report["out_of_bounds_events"]


def test_a_late_sender_is_waited_for_and_silence_counts_from_its_last_datagram(caplog):
    """stop_after_silence_s counts from the last datagram: a sender that starts later than that
    after the start is still heard, and the stream ends that long after its last datagram."""
    caplog.set_level(logging.INFO, logger="streamsnn.sources.udp")
    burst = make_events(np.zeros(50, np.int64), np.arange(50) % 34, np.arange(50) // 2, np.arange(50) % 2)
    source = UDPSource(UDPSourceConfig(port=0, sensor="digits_dvs", silence_s=0.2, stop_after_silence_s=0.5))
    received, sent_at = [], None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, source:
        began = time.monotonic()
        for packet in source:
            if len(packet.data):
                received.append(packet.data)
            waited = time.monotonic() - began
            if sent_at is None and waited > 1.0:  # twice stop_after_silence_s after the start
                tx.sendto(spif_encode(burst).tobytes(), (source.host, source.port))
                sent_at = waited
            assert waited < 20, "the source did not stop after the sender's silence"
        ended = time.monotonic() - began
    stats = source.stats
    assert sum(len(r) for r in received) == stats["events"] == 50 and stats["datagrams"] == 1
    assert stats["stopped_after_silence"] == 1 and "stopped_before_data" not in stats
    assert ended - sent_at >= 0.5  # that much silence after the datagram, however long before it
    assert stats["silences"] == 2 and stats["recoveries"] == 1  # before it (reported) and after it


def test_first_datagram_timeout_s_ends_a_stream_nobody_sends_to(caplog):
    source = UDPSource(
        UDPSourceConfig(
            port=0, sensor="digits_dvs", silence_s=0.2, stop_after_silence_s=0.2, first_datagram_timeout_s=0.6
        )
    )
    with source:
        began = time.monotonic()
        packets = 0
        for _ in source:
            packets += 1
            assert time.monotonic() - began < 20, "first_datagram_timeout_s did not end the stream"
        ended = time.monotonic() - began
    assert ended >= 0.6 and packets >= 100  # a packet every ms meanwhile: the pipeline stepped on
    assert source.stats["stopped_before_data"] == 1 and "stopped_after_silence" not in source.stats
    assert "since the start: ending the stream (first_datagram_timeout_s)" in caplog.text


def test_a_pipeline_hears_a_sender_that_starts_after_stop_after_silence_s(root, tmp_path):
    """The user's case: `stop_after_silence_s: 1` and a sender started 1.5 s after the run: the
    run waits for it, decides on its digits and ends 1 s after it stops."""
    events = digit_stream(3)  # 0.9 s of sensor time
    sender = Sender(events, tmp_path)
    pipe = build_pipeline(udp_config(root, "source.silence_s=0.5", "source.stop_after_silence_s=1.0"))
    try:
        sender.wait_ready()
        run = RunThread(pipe)
        run.start()
        deadline = time.monotonic() + 30
        while pipe.source.t0_ns is None and time.monotonic() < deadline:
            time.sleep(0.01)
        while time.monotonic_ns() - pipe.source.t0_ns < 1_500_000_000:  # the sender starts late
            time.sleep(0.05)
        assert run.is_alive(), "the run ended before its sender started"
        sender.go(pipe.source.port)
        run.join(30)
        assert not run.is_alive() and run.error is None, run.error
        assert sender.proc.wait(10) == 0
    finally:
        sender.stop()
    report = run.result.report
    assert report["source_stats"]["events"] == sender.lines["sent"] == len(events)
    assert report["source_stats"]["stopped_after_silence"] == 1 and report["decisions"] >= 1
