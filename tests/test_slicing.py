from itertools import pairwise

import numpy as np
import pytest
import tonic.slicers
from pydantic import ValidationError
from tonic.functional import to_frame_numpy

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.encoding import bin_events
from streamsnn.events import make_events
from streamsnn.runtime import build_pipeline
from streamsnn.slicing import Slicer, SlicingConfig


def random_events(n=5000, seed=0, t_max=1_000_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(t, rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n))


def test_time_windows_match_tonic_slice_by_time():
    ev = random_events()
    s = Slicer(SlicingConfig(time_window_us=33_000))
    ours = s.push(ev) + s.flush()
    theirs = tonic.slicers.SliceByTime(time_window=33_000, include_incomplete=True).slice(ev, 0)[0]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a.data, b)
        assert a.t_end_us - a.t_start_us == 33_000


def test_event_count_matches_tonic_slice_by_event_count():
    ev = random_events()
    s = Slicer(SlicingConfig(event_count=700))
    ours = s.push(ev) + s.flush()
    theirs = tonic.slicers.SliceByEventCount(event_count=700, include_incomplete=True).slice(ev, 0)[0]
    assert [len(a.data) for a in ours] == [len(b) for b in theirs]
    assert all(np.array_equal(a.data, b) for a, b in zip(ours, theirs, strict=True))


def test_n_time_bins_keeps_every_event_unlike_tonic():
    ev = random_events()
    s = Slicer(SlicingConfig(n_time_bins=7))
    s.reset(0)
    s.push(ev)
    bins = s.flush(1_000_000)
    assert len(bins) == 7
    assert sum(len(b.data) for b in bins) == len(ev)
    assert bins[0].t_start_us == 0 and bins[-1].t_end_us == 1_000_000
    for b in bins:
        assert np.all((b.data["t"] >= b.t_start_us) & (b.data["t"] < b.t_end_us))
    tonic_total = sum(len(b) for b in tonic.slicers.SliceByTimeBins(bin_count=7).slice(ev, 0)[0])
    assert tonic_total < len(ev)  # tonic drops the last event(s); we do not


@pytest.mark.parametrize(
    "mode", [{"time_window_us": 20_000}, {"event_count": 333}, {"n_time_bins": 9}, {"n_event_bins": 9}]
)
def test_streaming_in_packets_equals_slicing_at_once(mode):
    ev = random_events(seed=1)
    whole = Slicer(SlicingConfig(**mode))
    ref = whole.push(ev) + whole.flush()
    streaming = Slicer(SlicingConfig(**mode))
    got = []
    for packet in np.array_split(ev, 37):
        got += streaming.push(packet)
    got += streaming.flush()
    assert [(s.t_start_us, s.t_end_us) for s in got] == [(s.t_start_us, s.t_end_us) for s in ref]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(got, ref, strict=True))


def test_windows_anchor_at_sample_start_and_empty_windows_are_slices():
    ev = make_events([5_000, 95_000], [0, 1], [0, 1], [1, 0])
    s = Slicer(SlicingConfig(time_window_us=10_000))
    s.reset(0)
    out = s.push(ev) + s.flush(100_000)
    assert [len(x.data) for x in out] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert out[0].t_start_us == 0 and out[-1].t_end_us == 100_000


def test_advance_closes_silent_windows_on_time():
    s = Slicer(SlicingConfig(time_window_us=10_000))
    assert s.advance(50_000) == []  # no event yet: the windows are not anchored
    assert s.push(make_events([1_000], [0], [0], [1])) == []
    out = s.advance(30_999)  # [1, 11) and [11, 21) ms are complete, [21, 31) is not yet
    assert [(w.t_start_us, w.t_end_us, len(w.data)) for w in out] == [
        (1_000, 11_000, 1),
        (11_000, 21_000, 0),
    ]
    assert [(w.t_start_us, len(w.data)) for w in s.advance(31_000)] == [(21_000, 0)]
    assert s.advance(31_000) == [] and s.advance(5_000) == []  # nothing twice, time never goes back
    s.push(make_events([25_000, 45_000], [0, 0], [0, 0], [1, 1]))
    assert s.late_events == 1  # 25 ms lies in a window already closed by the heartbeat
    assert [len(w.data) for w in s.flush()] == [1]


def test_heartbeats_do_not_change_the_slices():
    ev = random_events(seed=2)
    whole = Slicer(SlicingConfig(time_window_us=20_000))
    ref = whole.push(ev) + whole.flush(1_000_000)
    streaming, got = Slicer(SlicingConfig(time_window_us=20_000)), []
    ends = np.arange(7_000, 1_000_000, 7_000)  # packets of 7 ms, each closed by its end time
    for lo, hi, end in zip([0, *ends[:-1]], ends, ends, strict=True):
        got += streaming.push(ev[(ev["t"] >= lo) & (ev["t"] < hi)]) + streaming.advance(int(end))
    got += streaming.push(ev[ev["t"] >= ends[-1]]) + streaming.flush(1_000_000)
    assert [(s.t_start_us, s.t_end_us) for s in got] == [(s.t_start_us, s.t_end_us) for s in ref]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(got, ref, strict=True))
    assert streaming.late_events == 0


def test_late_events_are_dropped_and_counted():
    s = Slicer(SlicingConfig(time_window_us=10_000))
    s.reset(0)
    first = s.push(make_events([1_000, 25_000], [0, 0], [0, 0], [1, 1]))
    assert len(first) == 2  # [0, 10 ms) and [10, 20 ms) are complete
    s.push(make_events([3_000, 26_000], [0, 0], [0, 0], [1, 1]))  # 3 ms is in a closed window
    rest = s.flush()
    assert s.late_events == 1
    assert sum(len(x.data) for x in first + rest) == 3


def test_unsorted_packet_is_sorted_not_lost():
    s = Slicer(SlicingConfig(time_window_us=10_000))
    s.reset(0)
    out = s.push(make_events([15_000, 2_000, 9_000, 31_000], [0] * 4, [0] * 4, [1] * 4)) + s.flush()
    assert s.late_events == 0
    assert [x.data["t"].tolist() for x in out] == [[2_000, 9_000], [15_000], [], [31_000]]


def test_exactly_one_slicing_option():
    with pytest.raises(ValidationError, match="exactly one"):
        SlicingConfig(time_window_us=1, event_count=3)
    with pytest.raises(ValidationError, match="exactly one"):
        SlicingConfig()
    with pytest.raises(ValidationError, match=r"event_count\n.*greater than 0"):
        SlicingConfig(event_count=0)


def unique_times(n, seed, t_max=1_000_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.choice(t_max, n, replace=False))
    return make_events(t, rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n))


@pytest.mark.parametrize("n", [5003, 5000, 69])
def test_n_event_bins_matches_tonic_to_frame(n):
    ev = random_events(n=n, seed=n)
    s = Slicer(SlicingConfig(n_event_bins=7))
    bins = s.push(ev) + s.flush()
    theirs = tonic.slicers.SliceByEventBins(bin_count=7).slice(ev, 0)[0]
    assert len(bins) == 7
    assert all(np.array_equal(a.data, b) for a, b in zip(bins, theirs, strict=True))
    frames = np.stack([bin_events(b.data, (2, 34, 34))[0] for b in bins])
    assert np.array_equal(frames, to_frame_numpy(ev, (34, 34, 2), n_event_bins=7).astype(np.float32))
    assert s.unbinned_events == n % 7  # tonic's rule: the last n mod k events are left out


def test_n_event_bins_tile_the_sample_and_end_after_their_last_event():
    ev = unique_times(4000, seed=3)
    s = Slicer(SlicingConfig(n_event_bins=10))
    s.reset(0)
    bins = s.push(ev) + s.flush(1_000_000)
    assert [len(b.data) for b in bins] == [400] * 10
    assert bins[0].t_start_us == 0 and bins[-1].t_end_us == 1_000_000
    assert all(a.t_end_us == b.t_start_us for a, b in pairwise(bins))
    for b in bins:
        assert np.all((b.data["t"] >= b.t_start_us) & (b.data["t"] < b.t_end_us))
    assert all(b.t_end_us == b.data["t"][-1] + 1 for b in bins[:-1])


def test_n_event_bins_with_fewer_events_than_bins_gives_empty_slices_like_tonic():
    ev = make_events([10, 20, 30], [0, 1, 2], [0, 0, 0], [1, 0, 1])
    s = Slicer(SlicingConfig(n_event_bins=5))
    s.reset(0)
    bins = s.push(ev) + s.flush(100)
    assert [len(b.data) for b in bins] == [0] * 5 and s.unbinned_events == 3
    assert not to_frame_numpy(ev, (34, 34, 2), n_event_bins=5).any()
    assert [(b.t_start_us, b.t_end_us) for b in bins] == [(0, 20), (20, 40), (40, 60), (60, 80), (80, 100)]


def test_overlapping_packets_of_a_sample_are_sorted_before_binning():
    ev = unique_times(1000, seed=4)
    s = Slicer(SlicingConfig(n_time_bins=4))
    s.push(ev[::2])
    s.push(ev[1::2])  # the second packet goes back in time
    bins = s.flush()
    ref = Slicer(SlicingConfig(n_time_bins=4))
    assert all(np.array_equal(a.data, b.data) for a, b in zip(bins, ref.push(ev) + ref.flush(), strict=True))


def test_n_event_bins_config_and_live_sources(root):
    assert SlicingConfig(n_event_bins=10).n_event_bins == 10
    with pytest.raises(ValidationError, match=r"exactly one of .*n_event_bins"):
        SlicingConfig(n_event_bins=10, n_time_bins=10)
    base = ["runtime.progress=false", "sinks=[]", "report.path=null", "slicing={n_event_bins: 5}"]
    cfg = load_pipeline(root / "pipelines" / "digits_dvs.yaml", [*base, "source.live=true"])
    with pytest.raises(ConfigError, match=r"slicing\.n_event_bins needs sample boundaries"):
        build_pipeline(cfg)
    assert (
        build_pipeline(load_pipeline(root / "pipelines" / "digits_dvs.yaml", base)).new_slicer().n_event_bins
        == 5
    )
