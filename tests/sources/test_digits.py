import time

import numpy as np
import pytest

from streamsnn.sources import make_source
from streamsnn.sources.digits import (
    DIGITS_DVS_SENSOR,
    RECORDING_US,
    DigitsDVS,
    DigitsFrames,
    digits_dvs_events,
    digits_split,
)


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
    with make_source("digits_dvs", split="val", limit=3) as src:
        packets = list(src)
    assert len(src) == 3 and [p.sample for p in packets] == [0, 1, 2]
    assert [p.label for p in packets] == digits_split("val")[1][:3].tolist()
    assert all(p.end_of_sample and p.t0_us == 0 and p.t_end_us == RECORDING_US for p in packets)


def test_live_mode_streams_one_clock_in_real_time():
    src = DigitsDVS(split="test", limit=2, live=True, packet_us=10_000)
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
    src = DigitsFrames(split="test", limit=4, size=16)
    frames = [p.data for p in src]
    assert src.kind == "frames" and src.sensor.shape == (1, 16, 16)
    assert all(f.shape == (16, 16) and f.min() >= 0 and f.max() <= 1 for f in frames)
    assert max(f.max() for f in frames) > 0.5
