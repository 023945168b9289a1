import numpy as np
import pytest
import torch
from tonic.functional import to_frame_numpy

from streamsnn.encoding import (
    DVSEmulator,
    DVSParams,
    EventRateEncoder,
    PoissonEncoder,
    background_noise,
    bin_events,
    make_encoder,
)
from streamsnn.events import Slice, make_events


def test_binning_matches_tonic_to_frame():
    rng = np.random.default_rng(0)
    n = 4000
    ev = make_events(
        np.sort(rng.integers(0, 10_000, n)),
        rng.integers(0, 40, n),
        rng.integers(0, 30, n),
        rng.integers(0, 2, n),
    )
    ours, dropped = bin_events(ev, (2, 30, 40))
    theirs = to_frame_numpy(ev, (40, 30, 2), event_count=n)[0]
    assert dropped == 0
    assert np.array_equal(ours, theirs.astype(np.float32))


def test_events_outside_the_sensor_are_dropped_and_counted():
    ev = make_events([1, 2, 3, 4], [0, 40, 5, -1], [0, 0, 30, 2], [1, 1, 0, 0])
    counts, dropped = bin_events(ev, (2, 30, 40))
    assert dropped == 3 and counts.sum() == 1 and counts[1, 0, 0] == 1


def test_rate_encoder_normalises_by_slice_duration():
    ev = make_events([0, 1, 2, 3], [1, 1, 1, 1], [2, 2, 2, 2], [1, 1, 1, 1])
    enc = EventRateEncoder((2, 4, 4), rate_unit_us=10_000)
    short = enc(Slice("s", 0, 0, 0, 5_000, ev))
    long = enc(Slice("s", 0, 0, 0, 20_000, ev))
    assert short[1, 2, 1] == pytest.approx(8.0) and long[1, 2, 1] == pytest.approx(2.0)


def test_poisson_encoding_is_seeded_per_sample_and_step():
    frame = np.full((1, 8, 8), 0.3, np.float32)
    enc = make_encoder("poisson", (1, 8, 8), seed=3)
    a = enc(Slice("s", 4, 2, 0, 0, frame))
    b = PoissonEncoder((1, 8, 8), seed=3)(Slice("s", 4, 2, 0, 0, frame))
    c = enc(Slice("s", 4, 3, 0, 0, frame))
    assert torch.equal(a, b) and not torch.equal(a, c)
    rate = torch.stack([enc(Slice("s", 0, i, 0, 0, frame)) for i in range(400)]).mean()
    assert abs(float(rate) - 0.3) < 0.02


def test_dvs_emulator_counts_log_intensity_crossings():
    params = DVSParams(threshold=0.2, mismatch=0.0, log_eps=0.1, noise_hz=0.0)
    dvs = DVSEmulator(np.full((1, 2), 0.2), params)
    dvs(np.array([[0.0, 1.0]]), 0)
    t, (_ys, xs), p = dvs(np.array([[1.0, 0.0]]), 1_000)
    # log(1.1) - log(0.1) = 2.398: 11 ON events at pixel 0, 11 OFF at pixel 1
    assert (xs == 0).sum() == 11 and (xs == 1).sum() == 11
    assert set(p[xs == 0]) == {1} and set(p[xs == 1]) == {0}
    assert np.all((t >= 0) & (t <= 1_000)) and np.all(np.diff(t[xs == 0]) > 0)
    # no change, no events; the reference keeps the remainder (0.198 < threshold)
    assert len(dvs(np.array([[1.0, 0.0]]), 2_000)[0]) == 0


def test_background_noise_rate():
    ev = background_noise(np.random.default_rng(0), 0, 1_000_000, 34, 34, 2.0)
    assert abs(len(ev) - 2 * 34 * 34) < 5 * np.sqrt(2 * 34 * 34)
    assert ev["x"].max() < 34 and ev["t"].max() < 1_000_000


def test_unknown_encoder_is_named():
    with pytest.raises(KeyError, match="unknown encoder 'nope'"):
        make_encoder("nope", (2, 4, 4))
