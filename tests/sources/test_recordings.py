"""Recorded files: the real recordings in ../shared/data/events/, files written here in the real
formats by the formats' own writers (dv-processing, expelliarmus), damaged files, and a live
session recorded with the ``record`` sink and replayed."""

import json
import shutil

import numpy as np
import pytest

from streamsnn.config import load_pipeline
from streamsnn.events import make_events
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.runtime.report import report_table
from streamsnn.sources.recordings import (
    RecordingError,
    RecordingSource,
    RecordingSourceConfig,
    open_recording,
    read_events,
)
from tests.conftest import SHARED_EVENTS

needs_shared = pytest.mark.skipif(not SHARED_EVENTS.is_dir(), reason=f"{SHARED_EVENTS} is absent")


@needs_shared
def test_real_aedat4_recording_matches_its_readme_and_tonic():
    import tonic

    path = SHARED_EVENTS / "sample.aedat4"
    rec = open_recording(path)
    events = read_events(path)
    assert (rec.format, rec.sensor.width, rec.sensor.height) == ("aedat4", 320, 240)
    assert len(events) == 111_954
    assert events["x"].max() <= 319 and events["y"].max() <= 239 and events["x"].min() >= 0
    assert 0.58e6 < events["t"][-1] - events["t"][0] < 0.60e6
    assert set(np.unique(events["p"])) == {0, 1}
    theirs = tonic.io.read_aedat4(str(path))
    for ours, field in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "p")):
        assert np.array_equal(events[ours], theirs[field].astype(events[ours].dtype))


@needs_shared
def test_real_nmnist_recording_matches_its_readme_and_tonic():
    import tonic

    path = SHARED_EVENTS / "sample_nmnist.bin"
    events = read_events(path)
    assert open_recording(path).sensor.size == (34, 34, 2)
    assert len(events) == 4_325
    assert events["x"].max() <= 33 and events["y"].max() <= 33
    assert 0.30e6 < events["t"].max() - events["t"].min() < 0.32e6
    theirs = tonic.io.read_mnist_file(str(path), tonic.datasets.NMNIST.dtype)
    assert np.array_equal(events["t"], theirs["t"]) and np.array_equal(events["x"], theirs["x"])


@needs_shared
def test_real_jaer_header_only_file_has_its_geometry_and_no_events():
    import tonic

    path = SHARED_EVENTS / "sample_aedat_header.aedat"
    assert tonic.io.read_aedat_header_from_file(str(path)) == (2.0, 598, 1695355587880)
    rec = open_recording(path)
    assert (rec.format, rec.sensor.width, rec.sensor.height) == ("aedat", 346, 260)
    assert len(read_events(path)) == 0


@needs_shared
def test_real_recordings_stream_through_the_source_without_loss():
    source = RecordingSource(
        RecordingSourceConfig(path=str(SHARED_EVENTS / "sample.aedat4"), packet_us=10_000)
    )
    packets = list(source)
    assert sum(len(p.data) for p in packets) == 111_954
    assert all(not p.end_of_sample and p.sample is None for p in packets)
    assert all(len(p.data) == 0 or p.data["t"][-1] - p.data["t"][0] < 10_000 for p in packets)
    samples = list(
        RecordingSource(RecordingSourceConfig(path=str(SHARED_EVENTS / "sample_nmnist.bin"), mode="sample"))
    )
    assert len(samples) == 1 and len(samples[0].data) == 4_325 and samples[0].end_of_sample


def random_events(n, width, height, seed=0, t_max=1_000_000):
    rng = np.random.default_rng(seed)
    return make_events(
        np.sort(rng.integers(0, t_max, n)),
        rng.integers(0, width, n),
        rng.integers(0, height, n),
        rng.integers(0, 2, n),
    )


@pytest.mark.parametrize("encoding,name", [("dat", "x.dat"), ("evt2", "x.raw"), ("evt3", "x.raw")])
def test_prophesee_files_written_by_expelliarmus_read_back_exactly(tmp_path, encoding, name):
    from expelliarmus import Wizard

    events = random_events(3_000, 1280, 720)
    path = tmp_path / name
    Wizard(encoding=encoding).save(str(path), events)
    back = read_events(path)
    for field in ("t", "x", "y", "p"):
        assert np.array_equal(back[field], events[field]), field
    # expelliarmus states no geometry: the profile gives it, and a wrong profile is refused
    assert RecordingSource(RecordingSourceConfig(path=str(path), sensor="prophesee_gen4")).sensor.size == (
        1280,
        720,
        2,
    )


def test_prophesee_dat_geometry_from_its_header(tmp_path):
    from expelliarmus import Wizard

    plain = tmp_path / "plain.dat"
    Wizard(encoding="dat").save(str(plain), random_events(100, 640, 480))
    data = plain.read_bytes()
    headed = tmp_path / "headed.dat"
    headed.write_bytes(b"% Width 640\n% Height 480\n" + data)
    assert open_recording(headed).sensor.size == (640, 480, 2)
    assert len(read_events(headed)) == 100
    with pytest.raises(ValueError, match="the file says 640×480 but sensor 'dvs128' is 128×128"):
        RecordingSource(RecordingSourceConfig(path=str(headed), sensor="dvs128"))


def test_numpy_recordings_need_a_profile_and_the_right_fields(tmp_path):
    path = tmp_path / "events.npy"
    np.save(path, random_events(50, 34, 34))
    assert len(read_events(path)) == 50
    with pytest.raises(ValueError, match="states no geometry; name a sensor profile"):
        RecordingSource(RecordingSourceConfig(path=str(path)))
    assert RecordingSource(RecordingSourceConfig(path=str(path), sensor="nmnist")).sensor.size == (34, 34, 2)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(3, dtype=[("time", "<i8"), ("x", "<i2")]))
    with pytest.raises(RecordingError, match=r"bad\.npy: event array has no field t / timestamp"):
        read_events(bad)


@needs_shared
def test_truncated_and_corrupt_files_name_the_position_and_keep_what_came_before(tmp_path):
    data = (SHARED_EVENTS / "sample.aedat4").read_bytes()
    truncated = tmp_path / "truncated.aedat4"
    truncated.write_bytes(data[: len(data) // 2])
    corrupt = tmp_path / "corrupt.aedat4"
    damaged = bytearray(data)
    damaged[len(data) // 2 : len(data) // 2 + 200] = bytes(200)
    corrupt.write_bytes(bytes(damaged))
    for path in (truncated, corrupt):
        kept = []
        with pytest.raises(
            RecordingError, match=rf"{path.name}: damaged at packet \d+ \(after [\d,]+ events\)"
        ):
            for events in open_recording(path).packets():
                kept.append(events)
        assert 0 < sum(map(len, kept)) < 111_954
    nmnist = (SHARED_EVENTS / "sample_nmnist.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(nmnist[:-2])
    with pytest.raises(RecordingError, match=r"cut\.bin: truncated at byte 21620 .*4,324 whole events"):
        read_events(cut)


@needs_shared
def test_a_damaged_file_in_a_folder_is_counted_and_the_rest_continues(tmp_path):
    folder = tmp_path / "session"
    folder.mkdir()
    shutil.copy(SHARED_EVENTS / "sample_nmnist.bin", folder / "a.bin")
    (folder / "b.bin").write_bytes((SHARED_EVENTS / "sample_nmnist.bin").read_bytes()[:-1])
    shutil.copy(SHARED_EVENTS / "sample_nmnist.bin", folder / "c.bin")
    source = RecordingSource(RecordingSourceConfig(path=str(folder), mode="sample"))
    packets = list(source)
    assert [len(p.data) for p in packets] == [4_325, 4_324, 4_325]
    assert source.stats == {"damaged_files": 1} and "b.bin: truncated" in source.errors[0]


def test_a_live_session_recorded_to_aedat4_replays_event_for_event(root, tmp_path):
    """digits-dvs played as a live camera, recorded by the record sink, read back by every AEDAT4
    reader and replayed as a recording: same events, same predictions."""
    live = load_pipeline(
        root / "pipelines" / "digits_dvs.yaml",
        [
            "source.live=true",
            "source.limit=3",
            "source.packet_us=5000",
            "runtime.progress=false",
            "runtime.batch_size=1",
            f"sinks=[{{type: record, path: '{tmp_path}/{{stream}}.aedat4'}}, "
            f"{{type: jsonl, path: '{tmp_path}/live.jsonl'}}]",
            "policy.reset={type: periodic, every_steps: 15}",
            f"report.path={tmp_path}/live.json",
        ],
    )
    pipe = build_pipeline(live)
    pipe.source.realtime = False
    result = run_pipeline(pipe)
    files = list(tmp_path.glob("*.aedat4"))
    assert len(files) == 1 and result.report["recorded_events"] > 0
    recorded = read_events(files[0])
    from streamsnn.sources.digits import RECORDING_US, digits_dvs_events, digits_split

    _, _, index = digits_split("test")
    expected = digits_dvs_events(index[:3])
    for i, events in enumerate(expected):
        events["t"] += i * RECORDING_US
    expected = np.concatenate(expected)
    assert len(recorded) == len(expected) == result.report["recorded_events"]
    for field in ("t", "x", "y", "p"):
        assert np.array_equal(recorded[field], expected[field]), field
    import tonic

    assert len(tonic.io.read_aedat4(str(files[0]))) == len(expected)  # tonic reads it too
    assert result.report["dropped_slices"] == 0

    def replay(path, batch_size, sinks):
        return load_pipeline(
            root / "pipelines" / "digits_dvs.yaml",
            [
                f"source={{type: recording, path: '{path}', sensor: digits_dvs, packet_us: 5000}}",
                "runtime.progress=false",
                f"runtime.batch_size={batch_size}",
                f"sinks={sinks}",
                "policy.reset={type: periodic, every_steps: 15}",
            ],
        )

    single = run_pipeline(
        build_pipeline(replay(files[0], 1, f"[{{type: jsonl, path: '{tmp_path}/replay.jsonl'}}]"))
    )
    keys = ("step", "class", "confidence", "final", "reason", "t_end_us")
    a, b = (
        [[json.loads(line)[k] for k in keys] for line in (tmp_path / f).read_text().splitlines()]
        for f in ("live.jsonl", "replay.jsonl")
    )
    assert a == b and len(a) >= 3 * 15

    # two copies of the session side by side: two streams, each reported on its own
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("left", "right"):
        shutil.copy(files[0], folder / f"{name}.aedat4")
    both = run_pipeline(build_pipeline(replay(folder, 2, "[]"))).report
    (only,) = single.report["streams"].values()
    assert set(both["streams"]) == {"left", "right"}
    for stream in both["streams"].values():
        assert stream["decisions"] == only["decisions"] and stream["mean_steps"] == only["mean_steps"]
        assert stream["input_latency_ms"]["p50"] == only["input_latency_ms"]["p50"]  # sensor time
        assert stream["compute_latency_ms"]["p50"] > 0
    assert both["samples"] == 2 * single.report["samples"]
    assert "stream left" in report_table(both) and "stream right" in report_table(both)
