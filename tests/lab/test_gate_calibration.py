"""The event-rate gate chosen between background noise and digits, on val."""

import numpy as np
import pytest

from streamsnn.cli import main
from streamsnn.config import ConfigError, load_pipeline
from streamsnn.events import make_events
from streamsnn.lab.gate_calibration import calibrate_gate, slice_rates


def test_slice_rates_are_means_over_runs_of_slices():
    t = np.concatenate([np.full(20, 5_000), np.full(60, 25_000), np.full(10, 45_000)])
    ev = make_events(t, np.zeros(len(t)), np.zeros(len(t)), np.ones(len(t)))
    # slices of 20 ms hold 20, 60, 10 events: 1, 3, 0.5 events per ms
    assert slice_rates(ev, 0, 60_000, 20_000, 1).tolist() == [1.0, 3.0, 0.5]
    assert slice_rates(ev, 0, 60_000, 20_000, 2).tolist() == [2.0, 1.75]
    assert slice_rates(ev, 0, 50_000, 20_000, 1).tolist() == [1.0, 3.0]  # whole slices only


def test_the_gate_sits_between_noise_and_digits(root):
    source = "source={type: digits_dvs, live: true, limit: 24, empty_s: 10}"
    cfg = load_pipeline(root / "pipelines" / "udp_live.yaml", [source])
    cal = calibrate_gate(cfg, "val")
    assert cal.over_steps == 2 and cal.slice_us == 20_000  # the pipeline's gate and slicing
    assert 0.3 < cal.noise_max < 2.0 and cal.digits_min > 4.0  # noise ~0.6 events/ms, digits ~20
    assert cal.noise_max < cal.min_events_per_ms < cal.digits_min
    assert cal.min_events_per_ms == pytest.approx(np.sqrt(cal.noise_max * cal.digits_min), abs=0.1)
    wider = calibrate_gate(cfg, "val", over_steps=5)
    assert wider.noise_max < cal.noise_max and wider.digits_min > cal.digits_min  # longer means spread less


def test_calibrate_live_writes_the_gate_and_refuses_test(root, tmp_path, capsys):
    pipeline = str(root / "pipelines" / "udp_live.yaml")
    source = "source={type: digits_dvs, live: true, limit: 12, empty_s: 5}"
    out = tmp_path / "gate.json"
    assert main(["calibrate", pipeline, "--live", "--set", source, "--output", str(out)]) == 0
    assert "min_events_per_ms" in capsys.readouterr().out and out.exists()
    with pytest.raises(ConfigError, match="never on the test split"):
        calibrate_gate(load_pipeline(pipeline, [source]), "test")
