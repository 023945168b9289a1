"""The emulated DVS (digits-dvs, webcams with emulate_dvs)."""

import numpy as np

from streamsnn.sources.dvs_emulator import DVSEmulator, DVSParams, background_noise


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
