"""Recorded files: the real recordings in ../shared/data/events/, files written here in the real
formats by the formats' own writers (dv-processing, expelliarmus), damaged files, and a live
session recorded with the ``record`` sink and replayed."""

import json
import re
import shutil
import subprocess
import sys

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


def three_digits():
    """Three digits-dvs test recordings one after another (µs, sorted): a real stream."""
    from streamsnn.sources.digits import RECORDING_US, digits_dvs_events, digits_split

    _, _, index = digits_split("test")
    parts = digits_dvs_events(index[:3])
    for i, events in enumerate(parts):
        events["t"] += i * RECORDING_US
    return np.concatenate(parts)


def save_npy(path, events, t_type="<i8", xy_type="<i4"):
    """``events`` as a user would save them: their own field types."""
    array = np.zeros(len(events), dtype=[("t", t_type), ("x", xy_type), ("y", xy_type), ("p", "i1")])
    for field in ("t", "x", "y", "p"):
        array[field] = events[field]
    np.save(path, array)
    return path


def run_cli(root, cwd, source, *flags):
    """``streamsnn run pipelines/digits_dvs.yaml`` with ``source`` in a process of its own, bounded
    in time."""
    pipeline = str(root / "pipelines" / "digits_dvs.yaml")
    sets = ["--set", f"source={source}", "--set", "sinks=[]", *flags]
    run = [sys.executable, "-m", "streamsnn.cli", "run", pipeline, *sets]
    return subprocess.run(run, capture_output=True, text=True, timeout=180, cwd=cwd)


def replay(root, path, *overrides):
    cfg = load_pipeline(
        root / "pipelines" / "digits_dvs.yaml",
        [
            f"source={{type: recording, path: '{path}', sensor: digits_dvs}}",
            "sinks=[]",
            "report.path=null",
            "runtime.progress=false",
            *overrides,
        ],
    )
    return run_pipeline(build_pipeline(cfg)).report


def test_npy_recordings_are_checked_on_the_way_in_counted_or_refused(root, tmp_path):
    events = three_digits()
    clean = replay(root, save_npy(tmp_path / "clean.npy", events))
    assert clean["samples"] >= 3 and clean["source_stats"] == {}

    wrapped = events.copy().astype([("t", "<i8"), ("x", "<i4"), ("y", "<i4"), ("p", "i1")])
    wrapped["x"][100] = 65541  # int16 would make it 5, inside the sensor
    np.save(tmp_path / "wrapped.npy", wrapped)
    source = RecordingSource(RecordingSourceConfig(path=str(tmp_path / "wrapped.npy"), sensor="digits_dvs"))
    assert sum(len(p.data) for p in source) == len(events) - 1
    assert source.stats == {"out_of_bounds_events": 1}

    floats = events.copy().astype([("t", "<f8"), ("x", "<f4"), ("y", "<f4"), ("p", "i1")])
    floats["x"][[10, 20]] = np.nan
    floats["t"][30] = np.nan
    np.save(tmp_path / "nan.npy", floats)
    report = replay(root, tmp_path / "nan.npy")
    assert report["source_stats"] == {"invalid_events": 3} and report["samples"] == clean["samples"]

    early = events.copy()
    early["t"][:50] -= 1_000_000  # negative time stamps: dropped, not a second of empty windows
    report = replay(root, save_npy(tmp_path / "negative.npy", early))
    assert report["source_stats"] == {"invalid_events": 50}
    assert report["samples"] == clean["samples"] and report["max_steps"] == clean["max_steps"]

    report = replay(root, save_npy(tmp_path / "reversed.npy", events[::-1]))
    stats = report["source_stats"]
    assert stats["damaged_files"] == 1 and stats["reordered_events"] > 0.9 * len(events)
    assert report["samples"] == 0  # refused: not one decision on it
    with pytest.raises(RecordingError, match=r"reversed\.npy: time stamps out of order for [\d,]+ of the"):
        read_events(tmp_path / "reversed.npy")


@pytest.mark.parametrize("defect", ["huge", "nan"])
def test_absurd_time_stamps_end_in_bounded_time_with_the_file_and_event_named(root, tmp_path, defect):
    """One t = 2**62, or NaN float time stamps: the run ends (a subprocess with a time bound) and
    says what it met."""
    events = three_digits()
    if defect == "huge":
        bad = events.copy()
        bad["t"][5_000] = 2**62
        path = save_npy(tmp_path / "huge.npy", bad)
    else:
        bad = events.copy().astype([("t", "<f8"), ("x", "<i2"), ("y", "<i2"), ("p", "i1")])
        bad["t"][[1_000, 5_000, 9_000]] = np.nan
        path = tmp_path / "nan.npy"
        np.save(path, bad)
    source = f"{{type: recording, path: '{path}', sensor: digits_dvs}}"
    done = run_cli(root, tmp_path, source, "--no-progress", "--report", str(tmp_path / "report.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["samples"] >= 1
    if defect == "huge":
        assert report["source_stats"]["damaged_files"] == 1
        assert f"huge.npy: event 5,000 (t = {2**62} µs) comes" in done.stderr
        assert re.search(r"damaged files +1\n", done.stdout)  # the console table says it
    else:
        assert report["source_stats"] == {"invalid_events": 3}
        assert re.search(r"invalid events +3\n", done.stdout)


def test_random_bytes_are_not_a_dat_recording(root, tmp_path):
    """Random bytes saved as .dat: no header, a header with a wrong event type, or a well-formed
    header followed by random events: refused, or nothing left to decide on."""
    from expelliarmus import Wizard

    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, 80_000, dtype=np.uint8).tobytes()
    Wizard(encoding="dat").save(str(tmp_path / "model.dat"), random_events(10, 34, 34))
    header = (tmp_path / "model.dat").read_bytes()
    header = header[: header.index(b"% Version 2 \n") + len(b"% Version 2 \n")]
    folder = tmp_path / "session"
    folder.mkdir()
    (folder / "a_bare.dat").write_bytes(noise)
    (folder / "b_type.dat").write_bytes(header + b"\x2b\x55" + noise)
    (folder / "c_events.dat").write_bytes(header + b"\x00\x08" + noise)
    with pytest.raises(RecordingError, match=r"a_bare\.dat: not a Prophesee DAT file: no '% \.\.\.' header"):
        read_events(folder / "a_bare.dat")
    with pytest.raises(
        RecordingError, match=r"b_type\.dat: not a Prophesee DAT file of events: event type 43"
    ):
        read_events(folder / "b_type.dat")
    report = replay(root, folder)
    assert report["samples"] == 0  # not one decision on garbage
    assert report["source_stats"]["damaged_files"] >= 2


def test_a_quiet_stretch_of_a_stream_goes_out_as_heartbeats(tmp_path):
    """A recording with 2 s without events: the stream mode sends one empty packet per packet_us
    with its end, so the slices of the gap close one by one (as a live sensor's), not all at once."""
    events = random_events(200, 34, 34, t_max=100_000)
    later = random_events(200, 34, 34, seed=1, t_max=100_000)
    later["t"] += 2_100_000
    path = save_npy(tmp_path / "gap.npy", np.concatenate([events, later]))
    packets = list(RecordingSource(RecordingSourceConfig(path=str(path), sensor="nmnist", packet_us=10_000)))
    quiet = [p for p in packets if not len(p.data) and not p.end_of_stream]
    assert sum(len(p.data) for p in packets) == 400
    assert 195 <= len(quiet) <= 201 and all(p.t_end_us is not None for p in quiet)
    ends = [p.t_end_us for p in quiet]
    assert ends == list(range(ends[0], ends[0] + 10_000 * len(ends), 10_000))


@needs_shared
def test_warnings_print_on_lines_of_their_own_above_the_progress_bar(root, tmp_path):
    """A replay with its progress bar (stderr, as a terminal would show it) and a damaged file: the
    warning starts its own line (the bar is cleared first) instead of running on after the bar."""
    folder = tmp_path / "session"
    folder.mkdir()
    data = (SHARED_EVENTS / "sample_nmnist.bin").read_bytes()
    for name, content in (("a.bin", data), ("b.bin", data[:-1]), ("c.bin", data)):
        (folder / name).write_bytes(content)
    source = f"{{type: recording, path: '{folder}', mode: sample, sensor: digits_dvs}}"
    done = run_cli(root, tmp_path, source, "--set", "report.path=null")  # with the progress bar
    assert done.returncode == 0, done.stderr[-2000:]
    assert "digits_dvs:" in done.stderr  # the bar was drawn
    (line,) = [x for x in done.stderr.split("\n") if "b.bin: truncated at byte" in x]
    assert line.split("\r")[-1].startswith(str(folder / "b.bin")), repr(line)
    assert re.search(r"damaged files +1\n", done.stdout)


def test_read_events_counts_what_it_drops_or_refuses_the_file(tmp_path):
    events = random_events(100, 34, 34).astype([("t", "<i8"), ("x", "<i4"), ("y", "<i4"), ("p", "i1")])
    events["x"][7] = 65541
    np.save(tmp_path / "stray.npy", events)
    counts = {}
    assert len(read_events(tmp_path / "stray.npy", counts=counts)) == 99
    assert counts == {"out_of_bounds_events": 1}
    with pytest.raises(
        RecordingError, match=r"stray\.npy: event 7 \(t = \d+, x = 65541, .*outside the sensor"
    ):
        read_events(tmp_path / "stray.npy")
