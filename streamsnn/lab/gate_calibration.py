"""The event-rate gate chosen on validation streams (``streamsnn calibrate PIPELINE --live``).

The gate (``policy.gate: event_rate``) must stay shut on the sensor's background noise and open
on what the model should see, so its rate is set between the two, measured on the val scenarios
of digits-dvs (``streamsnn.sources.scenarios``) cut into the pipeline's own slices:

- noise: the highest mean event rate over ``over_steps`` consecutive slices of the ``noise``
  scenario's empty stretch (``empty_s`` of background noise);
- digits: the lowest mean rate over ``over_steps`` consecutive slices of the ``back_to_back``
  scenario (digits always in view);
- the rate chosen: their geometric mean (a ratio apart from each), rounded down to 0.1 event/ms.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from streamsnn.config import ConfigError, PipelineConfig
from streamsnn.lab.live import scenario_config
from streamsnn.lab.progress import Stages
from streamsnn.policies import EventRateGateConfig
from streamsnn.sources.digits import DigitsDVS


@dataclass
class GateCalibration:
    """Rates in events per ms of sensor time, over ``over_steps`` slices of ``slice_us``."""

    split: str
    slice_us: int
    over_steps: int
    noise_max: float
    digits_min: float
    min_events_per_ms: float

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def slice_rates(events: np.ndarray, start_us: int, end_us: int, slice_us: int, over_steps: int) -> np.ndarray:
    """Mean event rates (events per ms) over every run of ``over_steps`` consecutive slices of
    ``slice_us`` from ``start_us`` to ``end_us`` (whole slices only)."""
    edges = np.arange(start_us, end_us + 1, slice_us)
    counts = np.diff(np.searchsorted(events["t"], edges))
    rates = counts * 1000.0 / slice_us
    return np.convolve(rates, np.ones(over_steps) / over_steps, mode="valid")


def calibrate_gate(
    cfg: PipelineConfig, split: str = "val", over_steps: int | None = None, progress: bool = False
) -> GateCalibration:
    """The gate's rate for ``cfg``'s slicing, measured on ``split`` (never test);
    ``over_steps``: the pipeline's gate's, else the gate's default; ``progress``: stage lines."""
    if split == "test":
        raise ConfigError("the gate's rate is chosen here, so never on the test split; use val")
    slice_us = cfg.slicing.time_window_us
    if slice_us is None:
        raise ConfigError("slicing: the gate is calibrated on time slices (time_window_us)")
    gate = cfg.policy.gate
    over = over_steps or (gate.over_steps if isinstance(gate, EventRateGateConfig) else None)
    over = over or EventRateGateConfig.model_fields["over_steps"].default
    stage = Stages("calibrate --live", progress)
    stage(f"event rates of background noise: the {split} noise scenario's empty stretch")
    noise_source = DigitsDVS(scenario_config(cfg, scenario="noise", split=split))
    segments = noise_source.timeline()
    empty = next(s for s in segments if s.empty)
    noise = np.concatenate(list(noise_source.segment_events(segments)))
    noise_max = float(slice_rates(noise, empty.start_us, empty.end_us, slice_us, over).max())
    stage(f"event rates of digits in view: the {split} split back to back")
    digits_source = DigitsDVS(scenario_config(cfg, scenario="back_to_back", split=split))
    end = digits_source.timeline()[-1].end_us
    digits_min = float(slice_rates(digits_source.events(), 0, end, slice_us, over).min())
    chosen = math.floor(math.sqrt(max(noise_max, 1e-9) * digits_min) * 10) / 10
    return GateCalibration(split, slice_us, over, noise_max, digits_min, chosen)


def format_gate(cal: GateCalibration) -> str:
    return "\n".join(
        [
            f"event-rate gate on {cal.split}, over {cal.over_steps} slices of {cal.slice_us / 1000:g} ms",
            f"  background noise: at most {cal.noise_max:.2f} events/ms",
            f"  digits in view:   at least {cal.digits_min:.2f} events/ms",
            f"  min_events_per_ms: {cal.min_events_per_ms:g}  (their geometric mean, rounded down)",
            "  policy.gate: {type: event_rate, "
            f"min_events_per_ms: {cal.min_events_per_ms:g}, over_steps: {cal.over_steps}}}",
        ]
    )
