import logging
import time
from pathlib import Path

import numpy as np
import pytest

from streamsnn.events import EVENT_DTYPE
from streamsnn.sources import SOURCES, digits
from streamsnn.sources.digits import (
    DIGITS_DVS_SENSOR,
    GENERATE_BATCH,
    RECORDING_US,
    DigitsDVS,
    DigitsDVSSourceConfig,
    DigitsFrames,
    DigitsFramesSourceConfig,
    cache_dir,
    digits_dvs_events,
    digits_split,
)


@pytest.fixture(autouse=True, scope="module")
def _module_cache(tmp_path_factory):
    """Keep this module's recordings out of the user's cache (tests needing an empty one override)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STREAMSNN_CACHE", str(tmp_path_factory.mktemp("digits_cache")))
        yield


def _spy(monkeypatch) -> list[np.ndarray]:
    """Record the indices of every ``digits_dvs_events`` call the source makes."""
    calls: list[np.ndarray] = []

    def spy(indices, seed=0, params=None):
        calls.append(np.asarray(indices).copy())
        return digits_dvs_events(indices, seed, params)

    monkeypatch.setattr(digits, "digits_dvs_events", spy)
    return calls


def _forbid_generation(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("digits_dvs_events called: the cache was not used")

    monkeypatch.setattr(digits, "digits_dvs_events", fail)


def _assert_same(got: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == EVENT_DTYPE and a.shape == b.shape
        for field in EVENT_DTYPE.names:
            assert np.array_equal(a[field], b[field])


def _events(src: DigitsDVS) -> list[np.ndarray]:
    positions, events = zip(*src.recordings(), strict=True) if len(src) else ((), ())
    assert list(positions) == list(range(len(src)))
    return list(events)


def test_fixed_stratified_splits():
    sizes = {s: len(digits_split(s)[1]) for s in ("train", "val", "test")}
    assert sizes == {"train": 1077, "val": 360, "test": 360}
    idx = [set(digits_split(s)[2].tolist()) for s in ("train", "val", "test")]
    assert not (idx[0] & idx[1]) and not (idx[0] & idx[2]) and not (idx[1] & idx[2])
    for s in ("val", "test"):
        assert np.bincount(digits_split(s)[1]).min() >= 35  # every class present, stratified
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        digits_split("dev")


def test_recordings_are_deterministic_and_independent_of_batching():
    index = digits_split("test")[2][:5]
    together = digits_dvs_events(index)
    alone = [digits_dvs_events(index[i : i + 1])[0] for i in range(5)]
    again = digits_dvs_events(index)
    for a, b, c in zip(together, alone, again, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)
    other_seed = digits_dvs_events(index[:1], seed=1)[0]
    assert not np.array_equal(other_seed, together[0])


def test_recordings_look_like_nmnist():
    events = digits_dvs_events(digits_split("test")[2][:20])
    counts = [len(e) for e in events]
    assert 3_000 < np.mean(counts) < 10_000  # N-MNIST: a few thousand events per digit
    for e in events:
        assert np.all(np.diff(e["t"]) >= 0)
        assert e["t"].min() >= 0 and e["t"].max() < RECORDING_US
        assert e["x"].max() < DIGITS_DVS_SENSOR.width and e["y"].max() < DIGITS_DVS_SENSOR.height
        on = (e["p"] == 1).mean()
        assert 0.3 < on < 0.7  # a moving digit makes both polarities
        # every saccade moves the digit: events in each 100 ms third
        thirds = np.bincount(e["t"] // 100_000, minlength=3)
        assert thirds.min() > 0.15 * len(e)


def test_dvs_source_yields_labelled_samples():
    with SOURCES.build(DigitsDVSSourceConfig(split="val", limit=3)) as src:
        packets = list(src)
    assert len(src) == 3 and [p.sample for p in packets] == [0, 1, 2]
    assert [p.label for p in packets] == digits_split("val")[1][:3].tolist()
    assert all(p.end_of_sample and p.t0_us == 0 and p.t_end_us == RECORDING_US for p in packets)


def test_live_mode_streams_one_clock_in_real_time():
    src = DigitsDVS(DigitsDVSSourceConfig(split="test", limit=2, live=True, packet_us=10_000))
    started = time.monotonic()
    packets = list(src)
    elapsed = time.monotonic() - started
    assert elapsed >= 0.55  # two 300 ms recordings, paced on the sensor clock
    assert len(packets) == 60 and all(not p.end_of_sample and p.sample is None for p in packets)
    t = np.concatenate([p.data["t"] for p in packets])
    assert np.all(np.diff(t) >= 0) and t.max() >= RECORDING_US  # second recording continues the clock
    labels = digits_split("test")[1][:2].tolist()
    assert [p.label for p in packets[:30]] == [labels[0]] * 30 and packets[-1].label == labels[1]


def test_frame_source():
    src = DigitsFrames(DigitsFramesSourceConfig(split="test", limit=4, size=16))
    frames = [p.data for p in src]
    assert src.kind == "frames" and src.sensor.shape == (1, 16, 16)
    assert all(f.shape == (16, 16) and f.min() >= 0 and f.max() <= 1 for f in frames)
    assert max(f.max() for f in frames) > 0.5


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMSNN_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "digits_dvs"
    monkeypatch.delenv("STREAMSNN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "streamsnn" / "digits_dvs"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == Path(tmp_path / "home" / ".cache" / "streamsnn" / "digits_dvs")


def test_recordings_are_cached_bit_identical(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMSNN_CACHE", str(tmp_path))
    index = digits_split("test")[2]
    # the batches the source generated in before the cache: 0..63, then 64..69
    expected = digits_dvs_events(index[:64]) + digits_dvs_events(index[64:70])
    _forbid_generation(monkeypatch)
    src = DigitsDVS(DigitsDVSSourceConfig(split="test", limit=70))  # lazy: constructing generates nothing
    assert not any(tmp_path.rglob("*"))

    calls = _spy(monkeypatch)
    _assert_same(_events(src), expected)
    assert [c.tolist() for c in calls] == [index[:64].tolist(), index[64:128].tolist()]  # whole chunks
    files = sorted((tmp_path / "digits_dvs").iterdir())
    assert len(files) == 2 and all(f.suffix == ".npz" for f in files)  # no temp files left over

    _forbid_generation(monkeypatch)
    _assert_same(_events(DigitsDVS(DigitsDVSSourceConfig(split="test", limit=70))), expected)
    packets = list(
        DigitsDVS(DigitsDVSSourceConfig(split="test", limit=70))
    )  # the source itself reads the cache too
    _assert_same([p.data for p in packets], expected)


def test_cache_key_changes_with_seed_and_split(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMSNN_CACHE", str(tmp_path))
    names = {
        digits._chunk_name(split, seed, 0, digits_split(split)[2][:GENERATE_BATCH])
        for split, seed in [("test", 0), ("test", 1), ("val", 0)]
    }
    assert len(names) == 3
    monkeypatch.setattr(digits, "CACHE_VERSION", digits.CACHE_VERSION + 1)
    assert digits._chunk_name("test", 0, 0, digits_split("test")[2][:GENERATE_BATCH]) not in names


def test_limit_touches_only_the_chunks_it_needs(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMSNN_CACHE", str(tmp_path))
    calls = _spy(monkeypatch)
    events = _events(DigitsDVS(DigitsDVSSourceConfig(split="test", limit=20)))
    assert len(events) == 20 and [len(c) for c in calls] == [GENERATE_BATCH]
    assert len(list((tmp_path / "digits_dvs").iterdir())) == 1
    _assert_same(events, digits_dvs_events(digits_split("test")[2][:20]))  # as generated alone
    _forbid_generation(monkeypatch)  # any limit within the first chunk reads that one file
    assert (
        len(_events(DigitsDVS(DigitsDVSSourceConfig(split="test", limit=GENERATE_BATCH)))) == GENERATE_BATCH
    )


@pytest.mark.parametrize("damage", ["truncate", "garbage", "offsets"])
def test_broken_cache_file_is_regenerated_with_a_warning(monkeypatch, tmp_path, caplog, damage):
    monkeypatch.setenv("STREAMSNN_CACHE", str(tmp_path))
    monkeypatch.setattr(digits, "GENERATE_BATCH", 8)  # small chunks, same code path, faster
    expected = digits_dvs_events(digits_split("test")[2][:5])
    _assert_same(_events(DigitsDVS(DigitsDVSSourceConfig(split="test", limit=5))), expected)
    (path,) = (tmp_path / "digits_dvs").iterdir()
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file" * 100)
    else:  # a readable file whose offsets do not fit its events
        with np.load(path) as z:
            content = dict(z)
        content["offsets"] = content["offsets"][:-1]
        np.savez(path, **content)

    with caplog.at_level(logging.WARNING, logger="streamsnn.sources.digits"):
        _assert_same(_events(DigitsDVS(DigitsDVSSourceConfig(split="test", limit=5))), expected)
    assert [r.levelno for r in caplog.records] == [logging.WARNING] and path.name in caplog.text

    caplog.clear()
    _forbid_generation(monkeypatch)  # overwritten with a good file
    with caplog.at_level(logging.WARNING):
        _assert_same(_events(DigitsDVS(DigitsDVSSourceConfig(split="test", limit=5))), expected)
    assert not caplog.records


def test_unwritable_cache_still_yields_the_recordings(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("STREAMSNN_CACHE", str(blocker / "cache"))  # cannot be created, even by root
    calls = _spy(monkeypatch)
    with caplog.at_level(logging.WARNING):
        events = _events(DigitsDVS(DigitsDVSSourceConfig(split="test", limit=3)))
    _assert_same(events, digits_dvs_events(digits_split("test")[2][:3]))
    assert [len(c) for c in calls] == [3]  # nothing to keep, so only what was asked for
    assert not caplog.records and blocker.read_text() == ""


def test_offset_and_limit_select_a_range_numbered_as_in_the_split(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMSNN_CACHE", str(tmp_path))
    monkeypatch.setattr(digits, "GENERATE_BATCH", 8)  # the range crosses chunk boundaries
    whole = list(DigitsDVS(DigitsDVSSourceConfig(split="test", limit=24)))
    part = DigitsDVS(DigitsDVSSourceConfig(split="test", offset=13, limit=9))
    packets = list(part)
    assert len(part) == 9 and [p.sample for p in packets] == list(range(13, 22))
    assert [p.label for p in packets] == [p.label for p in whole[13:22]]
    _assert_same([p.data for p in packets], [p.data for p in whole[13:22]])
    tail = DigitsDVS(
        DigitsDVSSourceConfig(split="test", offset=355, limit=10)
    )  # runs past the end: what is there
    assert [p.sample for p in tail] == list(range(355, 360))
    assert len(DigitsDVS(DigitsDVSSourceConfig(split="test", offset=400))) == 0
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("STREAMSNN_CACHE", str(blocker / "cache"))  # nothing kept: only the range made
    calls = _spy(monkeypatch)
    _assert_same(
        [p.data for p in DigitsDVS(DigitsDVSSourceConfig(split="test", offset=13, limit=9))],
        [p.data for p in packets],
    )
    assert [len(c) for c in calls] == [3, 6]  # positions 13–15 of one chunk, 16–21 of the next
    frames = DigitsFrames(DigitsFramesSourceConfig(split="test", offset=3, limit=2))
    whole_frames = list(DigitsFrames(DigitsFramesSourceConfig(split="test", limit=5)))
    assert [(p.sample, p.label) for p in frames] == [(p.sample, p.label) for p in whole_frames[3:5]]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(frames, whole_frames[3:5], strict=True))
