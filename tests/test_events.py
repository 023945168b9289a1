import numpy as np
import pytest

from streamsnn.events import (
    EVENT_DTYPE,
    EventCheck,
    EventError,
    list_sensors,
    load_sensor,
    make_events,
    to_events,
)

REQUIRED = {
    "nmnist": (34, 34),
    "dvs128": (128, 128),
    "cifar10dvs": (128, 128),
    "davis240": (240, 180),
    "davis320": (320, 240),
    "davis346": (346, 260),
    "prophesee_gen4": (1280, 720),
}


def test_event_dtype_uses_tonic_field_names_and_microseconds():
    assert EVENT_DTYPE.names == ("t", "x", "y", "p")
    assert EVENT_DTYPE["t"] == np.int64
    ev = make_events([5, 7], [1, 2], [3, 4], [0, 1])
    assert ev["t"].tolist() == [5, 7] and ev["p"].tolist() == [0, 1]


@pytest.mark.parametrize("name,size", sorted(REQUIRED.items()))
def test_sensor_profiles_have_the_real_geometry(name, size):
    sensor = load_sensor(name)
    assert (sensor.width, sensor.height) == size
    assert sensor.size == (size[0], size[1], 2)
    assert sensor.shape == (2, size[1], size[0])


def test_unknown_sensor_lists_the_known_ones():
    with pytest.raises(KeyError, match="dvs128"):
        load_sensor("no-such-camera")


def test_bad_profile_names_file_and_field(tmp_path, monkeypatch):
    (tmp_path / "broken.yaml").write_text("name: broken\nwidth: -3\nheight: 10\n")
    monkeypatch.setenv("STREAMSNN_SENSORS", str(tmp_path))
    with pytest.raises(ValueError, match=r"broken\.yaml.*'width'"):
        list_sensors()
    (tmp_path / "broken.yaml").write_text("name: broken\nwidth: 3\nheight: 10\nfps: 9\n")
    with pytest.raises(ValueError, match=r"broken\.yaml: unknown keys \['fps'\]"):
        list_sensors()


def test_user_profiles_are_found_first(tmp_path, monkeypatch):
    (tmp_path / "mycam.yaml").write_text("width: 64\nheight: 48\npolarities: 1\n")
    monkeypatch.setenv("STREAMSNN_SENSORS", str(tmp_path))
    sensors = list_sensors()
    assert sensors["mycam"].shape == (1, 48, 64)
    assert set(REQUIRED) <= set(sensors)


def _array(t, x, y, p, t_type="<i8", xy_type="<i4"):
    """A user's structured event array (as a .npy would hold it)."""
    a = np.zeros(len(t), dtype=[("t", t_type), ("x", xy_type), ("y", xy_type), ("p", "<f4")])
    a["t"], a["x"], a["y"], a["p"] = t, x, y, p
    return a


def test_coordinates_that_do_not_fit_are_dropped_and_counted_never_wrapped():
    a = _array([1, 2, 3, 4], [0, 65541, 5, -3], [1, 1, 40, 1], [1, 0, 1, 1])  # 65541 would wrap to 5
    counts = {}
    events = to_events(a, counts=counts)
    assert events["x"].tolist() == [0, 5] and events["y"].tolist() == [1, 40]
    assert counts == {"out_of_bounds_events": 2}
    counts = {}
    assert to_events(a, load_sensor("nmnist"), counts)["t"].tolist() == [1]  # y = 40 is off 34×34 too
    assert counts == {"out_of_bounds_events": 3}
    with pytest.raises(EventError, match=r"event 1 \(t = 2, x = 65541, y = 1, p = 0.0\) has a place outside"):
        to_events(a)  # nowhere to count: refused


def test_nan_infinite_and_negative_values_are_dropped_and_counted():
    a = _array([1.0, np.nan, 3.0, -4.0, np.inf, 6.0], [1, 2, 3, 4, 5, 6], [0] * 6, [1] * 6, t_type="<f8")
    a = a.astype([("t", "<f8"), ("x", "<f4"), ("y", "<f4"), ("p", "<f4")])
    a["x"][2] = np.nan
    a["p"][5] = np.nan
    counts = {}
    events = to_events(a, counts=counts)
    assert events["t"].tolist() == [1] and counts == {"invalid_events": 5}
    huge = _array([5, 2**63, 2**64 - 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], t_type="<u8")
    counts = {}
    assert to_events(huge, counts=counts)["t"].tolist() == [5] and counts == {"invalid_events": 2}


def test_fractional_time_stamps_and_fields_that_are_not_numbers_are_refused():
    seconds = _array([0.0015, 0.0031], [1, 2], [1, 2], [1, 0], t_type="<f8")
    with pytest.raises(EventError, match=r"field t holds fractions \(event 0: 0.0015\).*multiply by 1e6"):
        to_events(seconds, counts={})
    text = np.zeros(2, dtype=[("t", "<i8"), ("x", "<U3"), ("y", "<i2"), ("p", "<i1")])
    with pytest.raises(EventError, match="field x holds <U3 values; event fields are numbers"):
        to_events(text, counts={})


def test_the_check_sorts_a_few_late_events_and_counts_them():
    check = EventCheck()
    t = np.arange(1_000) * 10
    t[[100, 101]] = t[[101, 100]]
    t[500] = 0  # far behind
    events, error = check(_array(t, [1] * 1_000, [1] * 1_000, [1] * 1_000))
    assert error is None and np.all(np.diff(events["t"]) >= 0) and len(events) == 1_000
    assert check.counts == {"reordered_events": 2}
    later, error = check(_array([9_985, 20_000], [1, 1], [1, 1], [1, 1]))  # the next packet
    assert error is None and check.counts == {"reordered_events": 3}  # 9,985 < 9,990 before it
    assert later["t"].tolist() == [9_985, 20_000]  # across packets the slicer places it


def test_the_check_refuses_a_reversed_file_and_an_absurd_time_stamp_naming_the_event():
    reverse = _array(np.arange(200)[::-1], [1] * 200, [1] * 200, [1] * 200)
    events, error = EventCheck()(reverse)
    assert len(events) == 0 and "out of order for 199 of the 200 events" in str(error)
    t = np.arange(300) * 1_000
    t[150] = 2**62
    check = EventCheck()
    events, error = check(_array(t, [1] * 300, [1] * 300, [1] * 300))
    assert str(error).startswith(f"event 150 (t = {2**62} µs) comes ")
    assert len(events) == 299 and events["t"].max() == 299_000  # the events before it in time are kept
    gap = _array([0, 10, 2_000_011], [1] * 3, [1] * 3, [1] * 3)
    assert EventCheck(max_gap_us=2_000_000)(gap)[1] is not None
    assert EventCheck(max_gap_us=2_000_000)(gap[:2])[1] is None
