import numpy as np
import pytest
import torch
from tonic.functional import to_frame_numpy

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.encoding import (
    ENCODERS,
    EventCountEncoder,
    EventCountEncoderConfig,
    EventRateEncoder,
    EventRateEncoderConfig,
    PoissonEncoder,
    PoissonEncoderConfig,
    bin_events,
)
from streamsnn.events import Slice, make_events
from streamsnn.lab.datasets import seenn_frames
from streamsnn.runtime import build_pipeline
from streamsnn.slicing import Slicer, SlicingConfig


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


def test_binning_in_blocks_sums_the_full_binning_and_drops_what_is_outside_the_sensor():
    rng = np.random.default_rng(1)
    n = 3000
    ev = make_events(np.arange(n), rng.integers(-2, 37, n), rng.integers(-2, 31, n), rng.integers(0, 2, n))
    full, dropped_full = bin_events(ev, (2, 29, 35))
    blocks, dropped = bin_events(ev, (2, 29, 35), block=4)  # 29×35 → 8×9, the last blocks partial
    padded = np.zeros((2, 32, 36), np.float32)
    padded[:, :29, :35] = full
    assert blocks.shape == (2, 8, 9) and dropped == dropped_full > 0
    assert np.array_equal(blocks, padded.reshape(2, 8, 4, 9, 4).sum((2, 4)))


def test_rate_encoder_normalises_by_slice_duration():
    ev = make_events([0, 1, 2, 3], [1, 1, 1, 1], [2, 2, 2, 2], [1, 1, 1, 1])
    enc = EventRateEncoder(EventRateEncoderConfig(rate_unit_us=10_000), (2, 4, 4))
    short = enc(Slice("s", 0, 0, 0, 5_000, ev))
    long = enc(Slice("s", 0, 0, 0, 20_000, ev))
    assert short[1, 2, 1] == pytest.approx(8.0) and long[1, 2, 1] == pytest.approx(2.0)


def test_poisson_encoding_is_seeded_per_sample_and_step():
    frame = np.full((1, 8, 8), 0.3, np.float32)
    enc = ENCODERS.build(PoissonEncoderConfig(seed=3), (1, 8, 8))
    a = enc(Slice("s", 4, 2, 0, 0, frame))
    b = PoissonEncoder(PoissonEncoderConfig(seed=3), (1, 8, 8))(Slice("s", 4, 2, 0, 0, frame))
    c = enc(Slice("s", 4, 3, 0, 0, frame))
    assert torch.equal(a, b) and not torch.equal(a, c)
    rate = torch.stack([enc(Slice("s", 0, i, 0, 0, frame)) for i in range(400)]).mean()
    assert abs(float(rate) - 0.3) < 0.02


def test_unknown_encoder_is_named():
    with pytest.raises(KeyError, match="unknown encoder 'nope'; known: direct, event_count"):
        ENCODERS.plugin("nope")


def test_the_rate_unit_defaults_to_the_models():
    options = EventRateEncoderConfig()
    assert EventRateEncoder(options, (2, 4, 4), {"rate_unit_us": 100_000.0}).rate_unit_us == 100_000.0
    assert EventRateEncoder(options, (2, 4, 4), {}).rate_unit_us == EventRateEncoder.DEFAULT_RATE_UNIT_US
    given = EventRateEncoderConfig(rate_unit_us=5_000)
    assert EventRateEncoder(given, (2, 4, 4), {"rate_unit_us": 100_000.0}).rate_unit_us == 5_000


def test_large_frames_match_tonic_and_drop_outside_events():
    rng = np.random.default_rng(1)
    n = 20_000
    ev = make_events(np.arange(n), rng.integers(0, 1280, n), rng.integers(0, 720, n), rng.integers(0, 2, n))
    ours, dropped = bin_events(ev, (2, 720, 1280))  # 1.8 M cells: the scatter path
    assert dropped == 0
    assert np.array_equal(ours, to_frame_numpy(ev, (1280, 720, 2), event_count=n)[0].astype(np.float32))
    bad = make_events([1, 2, 3, 4], [1280, -1, 3, 5], [0, 0, 720, 7], [1, 1, 1, 0])
    counts, dropped = bin_events(bad, (2, 720, 1280))
    assert dropped == 3 and counts.sum() == 1 and counts[0, 7, 5] == 1


def test_single_polarity_and_wide_coordinate_fields():
    ev = np.array(
        [(1, 3, 2, 1), (2, 3, 2, 0), (3, -4, 2, 1), (4, 9, 40, 0)],
        dtype=[("t", "<i8"), ("x", "<i8"), ("y", "<i8"), ("p", "<i8")],
    )
    counts, dropped = bin_events(ev, (1, 30, 40))
    assert dropped == 2 and counts[0, 2, 3] == 2 and counts.sum() == 2


def test_returned_tensors_are_never_reused():
    enc = EventCountEncoder(EventCountEncoderConfig(), (2, 720, 1280))
    a = enc(Slice("s", 0, 0, 0, 1, make_events([0], [5], [6], [1])))
    b = enc(Slice("s", 0, 1, 1, 2, make_events([1], [7], [8], [0])))
    assert a.sum() == 1 and a[1, 6, 5] == 1 and b.sum() == 1 and b[0, 8, 7] == 1
    assert a.dtype == torch.float32 and a.shape == (2, 720, 1280)


@pytest.mark.parametrize("antialias", [False, True])
def test_seenn_preprocessing_through_slicer_and_encoder_equals_seenn_frames(antialias):
    rng = np.random.default_rng(5)
    n = 20_007  # not a multiple of 10: tonic leaves the last 7 events out, and so do we
    ev = make_events(
        np.sort(rng.integers(0, 1_300_000, n)),
        rng.integers(0, 128, n),
        rng.integers(0, 128, n),
        rng.integers(0, 2, n),
    )
    slicer = Slicer(SlicingConfig(n_event_bins=10))
    enc = ENCODERS.build(EventCountEncoderConfig(size=48), (2, 128, 128), {"antialias": antialias})
    ours = torch.stack(
        [
            enc(Slice("s", 0, i, s.t_start_us, s.t_end_us, s.data))
            for i, s in enumerate(slicer.push(ev) + slicer.flush())
        ]
    )
    assert enc.out_shape == (2, 48, 48) and ours.shape == (10, 2, 48, 48)
    assert torch.equal(ours, seenn_frames(ev, antialias=antialias))
    assert not torch.equal(ours, seenn_frames(ev, antialias=not antialias))


def test_rate_encoder_resizes_then_scales():
    ev = make_events(np.arange(64), np.arange(64) % 8, np.arange(64) // 8, np.ones(64))
    counts = EventCountEncoder(EventCountEncoderConfig(size=4), (2, 8, 8))(Slice("s", 0, 0, 0, 5_000, ev))
    rate_options = EventRateEncoderConfig(size=4, rate_unit_us=10_000)
    rate = EventRateEncoder(rate_options, (2, 8, 8))(Slice("s", 0, 0, 0, 5_000, ev))
    assert rate.shape == (2, 4, 4) and torch.allclose(rate, counts * 2)
    assert torch.allclose(counts[1], torch.ones(4, 4)) and counts[0].sum() == 0


@pytest.mark.parametrize("antialias", [False, True])
def test_rate_and_count_encoders_resize_as_the_model_was_trained(antialias):
    rng = np.random.default_rng(3)
    ev = make_events(np.arange(500), rng.integers(0, 32, 500), rng.integers(0, 32, 500), np.ones(500))
    item = Slice("s", 0, 0, 0, 10_000, ev)
    trained = {"antialias": antialias, "rate_unit_us": 10_000}
    counts = EventCountEncoder(EventCountEncoderConfig(size=8), (2, 32, 32), trained)(item)
    rate = EventRateEncoder(EventRateEncoderConfig(size=8), (2, 32, 32), trained)(item)
    assert torch.allclose(rate, counts)  # a 10 ms slice at a 10 ms rate unit: the same values
    other = {"antialias": not antialias}
    plain = EventCountEncoder(EventCountEncoderConfig(size=8), (2, 32, 32), other)(item)
    assert not torch.allclose(counts, plain)


def test_pipeline_checks_the_resized_shape_against_the_model(root):
    base = ["runtime.progress=false", "sinks=[]", "report.path=null"]
    path = root / "pipelines" / "digits_dvs.yaml"
    with pytest.raises(
        ConfigError, match="expects input 2×34×34 but source 'digits_dvs' gives 2×34×34 resized to 2×17×17"
    ):
        build_pipeline(load_pipeline(path, [*base, "encoder.size=17"]))
    assert build_pipeline(load_pipeline(path, [*base, "encoder.size=34"])).encoder.out_shape == (2, 34, 34)
    frames = root / "pipelines" / "digits_frames.yaml"
    with pytest.raises(ConfigError, match=r"encoder\.size: unknown key"):  # frames are taken as they are
        load_pipeline(frames, [*base, "encoder.size=16"])


def test_a_samples_slices_encoded_at_once_equal_one_by_one():
    rng = np.random.default_rng(0)
    encoders = [
        EventRateEncoder(EventRateEncoderConfig(rate_unit_us=100_000.0), (2, 34, 34)),
        EventCountEncoder(EventCountEncoderConfig(size=48), (2, 128, 128)),  # SEENN's resize, batched
        EventCountEncoder(EventCountEncoderConfig(), (1, 20, 30)),
    ]
    for enc in encoders:
        items = []
        for i in range(12):
            n = int(rng.integers(0, 500))  # some slices empty
            t = np.sort(rng.integers(i * 1000, (i + 1) * 1000, n))
            x = rng.integers(-2, enc.shape[2] + 3, n)  # some outside the sensor
            y = rng.integers(0, enc.shape[1] + 2, n)
            items.append(
                Slice(
                    "s", 0, i, i * 1000, (i + 1) * 1000 + 7 * i, make_events(t, x, y, rng.integers(0, 2, n))
                )
            )
        many = enc.encode_many(items)
        dropped, enc.out_of_bounds = enc.out_of_bounds, 0
        one = torch.stack([enc(item) for item in items])
        assert torch.equal(many, one)
        assert dropped == enc.out_of_bounds > 0
        assert many.shape == (12, *enc.out_shape)
