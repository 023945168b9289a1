import numpy as np
import pytest
import tonic.slicers

from streamsnn.events import make_events
from streamsnn.slicing import Slicer


def random_events(n=5000, seed=0, t_max=1_000_000):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(t, rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n))


def test_time_windows_match_tonic_slice_by_time():
    ev = random_events()
    s = Slicer(time_window_us=33_000)
    ours = s.push(ev) + s.flush()
    theirs = tonic.slicers.SliceByTime(time_window=33_000, include_incomplete=True).slice(ev, 0)[0]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert np.array_equal(a.events, b)
        assert a.t_end_us - a.t_start_us == 33_000


def test_event_count_matches_tonic_slice_by_event_count():
    ev = random_events()
    s = Slicer(event_count=700)
    ours = s.push(ev) + s.flush()
    theirs = tonic.slicers.SliceByEventCount(event_count=700, include_incomplete=True).slice(ev, 0)[0]
    assert [len(a.events) for a in ours] == [len(b) for b in theirs]
    assert all(np.array_equal(a.events, b) for a, b in zip(ours, theirs, strict=True))


def test_n_time_bins_keeps_every_event_unlike_tonic():
    ev = random_events()
    s = Slicer(n_time_bins=7)
    s.reset(0)
    s.push(ev)
    bins = s.flush(1_000_000)
    assert len(bins) == 7
    assert sum(len(b.events) for b in bins) == len(ev)
    assert bins[0].t_start_us == 0 and bins[-1].t_end_us == 1_000_000
    for b in bins:
        assert np.all((b.events["t"] >= b.t_start_us) & (b.events["t"] < b.t_end_us))
    tonic_total = sum(len(b) for b in tonic.slicers.SliceByTimeBins(bin_count=7).slice(ev, 0)[0])
    assert tonic_total < len(ev)  # tonic drops the last event(s); we do not


@pytest.mark.parametrize("mode", [{"time_window_us": 20_000}, {"event_count": 333}])
def test_streaming_in_packets_equals_slicing_at_once(mode):
    ev = random_events(seed=1)
    whole = Slicer(**mode)
    ref = whole.push(ev) + whole.flush()
    streaming = Slicer(**mode)
    got = []
    for packet in np.array_split(ev, 37):
        got += streaming.push(packet)
    got += streaming.flush()
    assert [(s.t_start_us, s.t_end_us) for s in got] == [(s.t_start_us, s.t_end_us) for s in ref]
    assert all(np.array_equal(a.events, b.events) for a, b in zip(got, ref, strict=True))


def test_windows_anchor_at_sample_start_and_empty_windows_are_slices():
    ev = make_events([5_000, 95_000], [0, 1], [0, 1], [1, 0])
    s = Slicer(time_window_us=10_000)
    s.reset(0)
    out = s.push(ev) + s.flush(100_000)
    assert [len(x.events) for x in out] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert out[0].t_start_us == 0 and out[-1].t_end_us == 100_000


def test_late_events_are_dropped_and_counted():
    s = Slicer(time_window_us=10_000)
    s.reset(0)
    first = s.push(make_events([1_000, 25_000], [0, 0], [0, 0], [1, 1]))
    assert len(first) == 2  # [0, 10 ms) and [10, 20 ms) are complete
    s.push(make_events([3_000, 26_000], [0, 0], [0, 0], [1, 1]))  # 3 ms is in a closed window
    rest = s.flush()
    assert s.late_events == 1
    assert sum(len(x.events) for x in first + rest) == 3


def test_unsorted_packet_is_sorted_not_lost():
    s = Slicer(time_window_us=10_000)
    s.reset(0)
    out = s.push(make_events([15_000, 2_000, 9_000, 31_000], [0] * 4, [0] * 4, [1] * 4)) + s.flush()
    assert s.late_events == 0
    assert [x.events["t"].tolist() for x in out] == [[2_000, 9_000], [15_000], [], [31_000]]


def test_exactly_one_slicing_option():
    with pytest.raises(ValueError, match="exactly one"):
        Slicer(time_window_us=1, event_count=3)
    with pytest.raises(ValueError, match="exactly one"):
        Slicer()
    with pytest.raises(ValueError, match="event_count must be >= 1"):
        Slicer(event_count=0)
