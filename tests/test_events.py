import numpy as np
import pytest

from streamsnn.events import EVENT_DTYPE, list_sensors, load_sensor, make_events

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
