"""An emulated DVS: intensity frames in, ON/OFF events out (log-intensity change against a
per-pixel contrast threshold with mismatch), and Poisson background noise. The digits-dvs
data set and webcams with ``emulate_dvs`` record through it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamsnn.events import make_events


@dataclass(frozen=True)
class DVSParams:
    """Emulated DVS pixel: contrast threshold on log(I + eps) with per-pixel mismatch."""

    threshold: float = 0.2
    mismatch: float = 0.02  # std of the per-pixel threshold around ``threshold``
    log_eps: float = 0.1
    noise_hz: float = 0.5  # background activity per pixel


class DVSEmulator:
    """An emulated DVS pixel array watching intensity frames (values in [0, 1]).

    Each pixel keeps a reference log intensity, log(I + eps) of the first frame; whenever the log
    intensity moves one threshold above or below it, an ON or OFF event fires and the reference
    moves by one threshold. Crossings between two frames are timed by linear interpolation.
    Pixels are the trailing dimensions of the frames, so a batch N×H×W emulates N recordings at
    once; ``thresholds`` (per pixel, with mismatch) broadcast against them.
    """

    def __init__(self, thresholds: np.ndarray, params: DVSParams) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.params = params
        self._log: np.ndarray | None = None
        self._ref: np.ndarray | None = None
        self._t = 0.0

    def __call__(
        self, frame: np.ndarray, t_us: float
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
        """Feed the frame seen at ``t_us``; return event times (µs, float), pixel index arrays
        (one per frame dimension) and polarities (1 ON, 0 OFF) of the crossings since the last one."""
        cur = np.log(np.asarray(frame, dtype=np.float64) + self.params.log_eps)
        if self._ref is None or self._log is None:
            self._log, self._ref, self._t = cur, cur.copy(), float(t_us)
            return np.empty(0), tuple(np.empty(0, np.int64) for _ in cur.shape), np.empty(0, np.int8)
        prev, ref, thr = self._log, self._ref, np.broadcast_to(self.thresholds, cur.shape)
        up = np.floor((cur - ref) / thr)
        down = np.floor((ref - cur) / thr)
        n = np.where(up > 0, up, np.where(down > 0, -down, 0)).astype(np.int64)
        where = np.nonzero(n)
        counts, sign = np.abs(n[where]), np.sign(n[where])
        # the j-th crossing (j = 1..count) of a pixel happens at level ref + sign * j * threshold
        rep = np.repeat(np.arange(len(counts)), counts)
        j = np.arange(len(rep)) - np.repeat(np.cumsum(counts) - counts, counts) + 1
        idx = tuple(w[rep] for w in where)
        level = ref[idx] + sign[rep] * j * thr[idx]
        span = cur[idx] - prev[idx]
        frac = np.clip((level - prev[idx]) / np.where(span == 0, 1, span), 0, 1)
        t = self._t + frac * (t_us - self._t)
        ref[where] += n[where] * thr[where]
        self._log, self._t = cur, float(t_us)
        return t, idx, (sign[rep] > 0).astype(np.int8)


def background_noise(
    rng: np.random.Generator, t0_us: float, t1_us: float, width: int, height: int, rate_hz: float
) -> np.ndarray:
    """Poisson background events at ``rate_hz`` per pixel over [t0_us, t1_us), random polarity."""
    n = rng.poisson(rate_hz * width * height * (t1_us - t0_us) * 1e-6)
    return make_events(
        np.floor(rng.uniform(t0_us, t1_us, n)),
        rng.integers(0, width, n),
        rng.integers(0, height, n),
        rng.integers(0, 2, n),
    )
