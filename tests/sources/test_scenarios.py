"""Live scenarios of digits-dvs: seeded timelines, their event streams and packets (labels and
heartbeats), and today's live mode kept as the back_to_back scenario."""

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from streamsnn.events import make_events
from streamsnn.sources import DigitsDVS, DigitsDVSSourceConfig
from streamsnn.sources.digits import RECORDING_US, digits_split
from streamsnn.sources.dvs_emulator import DVSParams
from streamsnn.sources.scenarios import Segment, packets, segment_at, segments_from, timeline


def source(**options) -> DigitsDVS:
    return DigitsDVS(DigitsDVSSourceConfig(**{"split": "val", "live": True, "pace": False, **options}))


def contiguous(segments: list[Segment]) -> bool:
    return segments[0].start_us == 0 and all(a.end_us == b.start_us for a, b in itertools.pairwise(segments))


def test_back_to_back_is_the_recordings_one_after_another():
    src = source(offset=5, limit=4)
    segments = src.timeline()
    labels = digits_split("val")[1][5:9].tolist()
    assert segments == [
        Segment(i * RECORDING_US, (i + 1) * RECORDING_US, "digit", labels[i], 5 + i) for i in range(4)
    ]
    recordings = [events for _, events in src.recordings()]
    for segment, events, recording in zip(segments, src.segment_events(), recordings, strict=True):
        assert np.array_equal(events["t"], recording["t"] + segment.start_us)
        assert np.array_equal(events[["x", "y", "p"]], recording[["x", "y", "p"]])


def test_gaps_are_seeded_uniform_in_range_and_hold_noise_only():
    src = source(scenario="gaps", limit=25, gap_max_ms=400)
    segments = src.timeline()
    assert contiguous(segments)
    kinds = [s.kind for s in segments]
    assert kinds[0] == "digit" and kinds.count("digit") == 25
    assert all(a != b for a, b in itertools.pairwise(kinds))  # digits separated by (non-empty) gaps
    gaps = [s.end_us - s.start_us for s in segments if s.empty]
    assert len(gaps) >= 23 and all(0 < g <= 400_000 for g in gaps)
    assert max(gaps) > 300_000 and min(gaps) < 100_000  # spread over the range
    assert src.timeline() == segments  # computed again: the same
    assert source(scenario="gaps", limit=25, gap_max_ms=400, seed=1).timeline() != segments
    # a shorter range is a prefix: gaps are drawn per digit, not per run
    assert source(scenario="gaps", limit=10, gap_max_ms=400).timeline() == segments[: 2 * 10 - 1]
    # the same seed gives the same events
    a, b = source(scenario="gaps", limit=6).events(), source(scenario="gaps", limit=6).events()
    assert len(a) and np.array_equal(a, b)
    assert not np.array_equal(a, source(scenario="gaps", limit=6, seed=3).events())
    # a gap holds noise only, at the recordings' own background rate
    parts = list(src.segment_events(segments))
    noise = [(s, e) for s, e in zip(segments, parts, strict=True) if s.empty]
    n = sum(len(e) for _, e in noise)
    expected = DVSParams().noise_hz * 34 * 34 * sum(gaps) * 1e-6
    assert abs(n - expected) < 5 * expected**0.5
    assert all(len(e) == 0 or (e["t"].min() >= s.start_us and e["t"].max() < s.end_us) for s, e in noise)


def test_no_gaps_with_gap_max_zero():
    segments = source(scenario="gaps", limit=3, gap_max_ms=0).timeline()
    assert segments == source(limit=3).timeline()


@pytest.mark.parametrize("scenario", ["noise", "silence"])
def test_empty_scenarios_frame_a_long_empty_stretch_with_two_digits(scenario):
    src = source(scenario=scenario, offset=7, limit=30, empty_s=2.5)
    segments = src.timeline()
    labels = digits_split("val")[1][7:9].tolist()
    assert [(s.kind, s.label, s.sample) for s in segments] == [
        ("digit", labels[0], 7),
        (scenario, None, None),
        ("digit", labels[1], 8),
    ]
    assert contiguous(segments) and segments[1].end_us - segments[1].start_us == 2_500_000
    parts = list(src.segment_events(segments))
    if scenario == "silence":
        assert len(parts[1]) == 0
    else:
        assert len(parts[1]) > 0.8 * DVSParams().noise_hz * 34 * 34 * 2.5
    # one digit only: the empty stretch after it
    single = source(scenario=scenario, limit=1, empty_s=1).timeline()
    assert [s.kind for s in single] == ["digit", scenario] and single[-1].end_us == RECORDING_US + 1_000_000


def test_packets_are_heartbeats_with_the_label_in_view():
    src = source(scenario="silence", limit=2, empty_s=0.5, packet_us=3_000)
    segments = src.timeline()
    events = src.events()
    pk = list(src)
    assert all(not p.end_of_sample and p.sample is None for p in pk)
    # every packet, also in silence, says how far sensor time has got: they tile the timeline
    assert pk[0].t0_us == 0 and pk[-1].t_end_us == segments[-1].end_us
    assert all(a.t_end_us == b.t0_us for a, b in itertools.pairwise(pk))
    assert all(p.t_end_us - p.t0_us == 3_000 for p in pk[:-1])
    for p in pk:
        assert p.label == segment_at(segments, (p.t0_us + p.t_end_us) / 2).label
        assert len(p.data) == 0 or (p.data["t"].min() >= p.t0_us and p.data["t"].max() < p.t_end_us)
    silent = [p for p in pk if segments[1].start_us <= p.t0_us and p.t_end_us <= segments[1].end_us]
    assert len(silent) >= 160 and all(len(p.data) == 0 and p.label is None for p in silent)
    assert np.array_equal(np.concatenate([p.data for p in pk]), events)  # nothing lost or reordered


def test_packets_cut_any_timeline():
    segments = [Segment(0, 5, "noise"), Segment(5, 12, "digit", 3), Segment(12, 13, "silence")]
    parts = [
        make_events([1, 4], [0, 0], [0, 0], [1, 0]),
        make_events([5, 9, 11], [1] * 3, [1] * 3, [1] * 3),
        make_events([], [], [], []),
    ]
    got = [(t0, t1, e["t"].tolist(), label) for t0, t1, e, label in packets(segments, parts, 4)]
    assert got == [(0, 4, [1], None), (4, 8, [4, 5], 3), (8, 12, [9, 11], 3), (12, 13, [], None)]
    assert segments_from([s.to_dict() for s in segments]) == segments
    with pytest.raises(ValueError, match="unknown scenario 'loop'"):
        timeline("loop", [0], [1], RECORDING_US)


def test_unpaced_is_a_stream_replayed_without_drops_and_options_need_live():
    paced, unpaced = source(pace=True, limit=1), source(limit=1)
    assert paced.live and not paced.segmented
    assert not unpaced.live and not unpaced.segmented
    assert DigitsDVS(DigitsDVSSourceConfig(split="val", limit=1)).segmented
    assert source(scenario="gaps", limit=1).stream == "digits-dvs/val/live-gaps"
    assert unpaced.stream == "digits-dvs/val/live"
    for bad in ({"scenario": "gaps"}, {"pace": False}):
        with pytest.raises(ValidationError, match="apply to a live stream: set live: true"):
            DigitsDVSSourceConfig(split="val", **bad)
    with pytest.raises(ValueError, match="only a live stream"):
        DigitsDVS(DigitsDVSSourceConfig(split="val", limit=1)).timeline()
