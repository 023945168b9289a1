"""The ``streams`` source: several continuous sources stepped by one operator (digits-dvs played
live in real time, real UDP sockets on 127.0.0.1)."""

import threading
import time

import pytest

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.events import Packet, make_events
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sources import StreamsSource, StreamsSourceConfig, UDPSourceConfig

LIVE = "{type: digits_dvs, live: true, packet_us: 2000, limit: 2"  # 0.6 s in real time


def live(offset: int) -> str:
    return f"{LIVE}, offset: {offset}}}"


def streams_config(root, sources: list[str], *overrides: str):
    return load_pipeline(
        root / "pipelines" / "digits_dvs.yaml",
        [
            "runtime.progress=false",
            "report.path=null",
            "sinks=[]",
            "policy.reset=on_exit",
            f"source={{type: streams, sources: [{', '.join(sources)}]}}",
            *overrides,
        ],
    )


def decisions(result, stream: str | None = None) -> list[tuple]:
    return [
        (o.sample, o.label, o.cls, o.steps, o.reason)
        for o in result.outcomes
        if stream is None or o.stream == stream
    ]


def test_streams_stepped_together_decide_as_each_alone(root):
    together = run_pipeline(build_pipeline(streams_config(root, [live(0), live(5), live(9)])))
    streams = sorted({o.stream for o in together.outcomes})
    assert streams == [f"digits-dvs/test/live#{i}" for i in range(3)]
    assert together.report["dropped_slices"] == together.report["skipped_slices"] == 0
    for i, offset in enumerate((0, 5, 9)):
        alone = run_pipeline(build_pipeline(streams_config(root, [live(offset)])))
        assert {o.stream for o in alone.outcomes} == {"digits-dvs/test/live#0"}
        assert decisions(together, f"digits-dvs/test/live#{i}") == decisions(alone)


def test_offset_and_limit_select_sources_and_names_keep_their_positions(root):
    cfg = streams_config(root, [live(0), live(5), live(9)], "source.offset=1", "source.limit=1")
    result = run_pipeline(build_pipeline(cfg))
    assert {o.stream for o in result.outcomes} == {"digits-dvs/test/live#1"}
    assert result.outcomes[0].label == 9  # split position 5


def test_sources_that_do_not_fit_together_are_named(root):
    replay = "{type: digits_dvs, limit: 2}"
    with pytest.raises(ConfigError, match=r"sources\[1\] \(digits_dvs\) gives whole samples"):
        build_pipeline(streams_config(root, [live(0), replay]))
    udp = "{type: udp, port: 0, sensor: dvs128}"
    mismatch = r"sources\[1\] \(udp\): sensor 128×128 differs from sources\[0\]'s 34×34"
    with pytest.raises(ConfigError, match=mismatch):
        build_pipeline(streams_config(root, [live(0), udp]))
    with pytest.raises(ConfigError, match=r"source\.sources\.0\.speed: unknown key"):
        streams_config(root, ["{type: digits_dvs, live: true, speed: 2}"])
    with pytest.raises(ConfigError, match=r"runtime\.batch_size: 2 operator slots for 3 streams"):
        build_pipeline(streams_config(root, [live(0), live(1), live(2)], "runtime.batch_size=2"))
    with pytest.raises(ConfigError, match="offset 3 selects none of the 3 sources"):
        build_pipeline(streams_config(root, [live(0), live(1), live(2)], "source.offset=3"))


class Unplugged:
    """A live source that gives one packet, then fails like a device pulled out."""

    kind, live, labels, segmented, realtime, stats = "events", True, False, False, False, {}

    def __iter__(self):
        yield Packet("cam", None, make_events([1], [2], [3], [1]), end_of_sample=False)
        raise OSError("device unplugged")

    def close(self):
        pass


def test_a_failing_source_is_named_after_what_it_gave(root):
    quiet = UDPSourceConfig(port=0, sensor="dvs128", packet_us=60_000_000)  # no packet during the test
    source = StreamsSource(StreamsSourceConfig(sources=[quiet, quiet]))
    source.members[1].source.close()
    source.members[1].source = Unplugged()
    got = []
    with pytest.raises(RuntimeError, match=r"source.sources\[1\]: device unplugged"):
        for packet in source:
            got.append(packet)
    assert [p.stream for p in got] == ["cam#1"]  # what came before the failure went on


def test_close_from_another_thread_ends_every_reading_thread():
    udp = UDPSourceConfig(port=0, sensor="dvs128", packet_us=10_000)
    source = StreamsSource(StreamsSourceConfig(sources=[udp, udp]))
    packets = []
    reader = threading.Thread(target=lambda: packets.extend(source), daemon=True)
    reader.start()
    time.sleep(0.2)
    started = time.monotonic()
    source.close()
    reader.join(2)
    assert not reader.is_alive() and time.monotonic() - started < 1.0
    names = {f"udp/127.0.0.1:{s.port}#{i}" for i, s in enumerate(source.sources)}
    assert {p.stream for p in packets} == names  # empty heartbeats of both streams
    assert all(len(p.data) == 0 for p in packets)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("streams-")]
