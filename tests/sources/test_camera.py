"""USB event cameras (aestream) and webcams / video files (OpenCV) as live sources."""

import collections
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.sources import SOURCES
from streamsnn.sources.camera import (
    CameraSource,
    CameraSourceConfig,
    WebcamSource,
    WebcamSourceConfig,
    drivers_help,
    frame_to_events,
)
from streamsnn.sources.digits import digits_split, render_saccades

cv2 = pytest.importorskip("cv2", reason="the webcam source needs opencv-python-headless")


def write_video(path, frames: np.ndarray, fps: float, fourcc: str = "MJPG", size: int = 64) -> None:
    """Grayscale frames (N×H×W in [0, 1]) as a colour video of size×size pixels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (size, size), isColor=True)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    for frame in frames:
        big = cv2.resize((frame * 255).astype(np.uint8), (size, size), interpolation=cv2.INTER_LINEAR)
        writer.write(cv2.cvtColor(big, cv2.COLOR_GRAY2BGR))
    writer.release()


def config(root, base, *overrides):
    return load_pipeline(
        root / "pipelines" / base, ["runtime.progress=false", "sinks=[]", "report.path=null", *overrides]
    )


# -- USB event cameras through aestream --------------------------------------------------------
@pytest.mark.parametrize("camera", ["inivation", "prophesee"])
def test_camera_without_drivers_says_how_to_get_them(camera):
    aestream = pytest.importorskip("aestream")
    driver = {"inivation": "caer", "prophesee": "metavision"}[camera]
    if driver in aestream.drivers:
        pytest.skip(f"this aestream has the {driver} driver")
    with pytest.raises(ConfigError) as err:
        SOURCES.build(CameraSourceConfig(camera=camera))
    text = str(err.value)
    assert f"source.camera: '{camera}' needs aestream compiled with the '{driver}' driver" in text
    assert "--no-binary aestream" in text and "aestream.github.io/aestream/install.html" in text
    assert ("libcaer" if camera == "inivation" else "openeb") in text


def test_camera_without_aestream_names_pip(monkeypatch):
    monkeypatch.setitem(sys.modules, "aestream", None)  # as if not installed
    with pytest.raises(ConfigError, match="aestream is not installed"):
        CameraSource(CameraSourceConfig(camera="inivation"))
    assert "pip install" in drivers_help("inivation", None)


def test_camera_config(root):
    cfg = config(root, "udp_live.yaml", "source={type: camera, camera: prophesee, serial: '00001464'}")
    assert cfg.source.type == "camera" and cfg.source.serial == "00001464" and cfg.source.polarity == 1
    with pytest.raises(ConfigError, match=r"source\.camera: Input should be 'inivation' or 'prophesee'"):
        config(root, "udp_live.yaml", "source={type: camera, camera: sony}")


def test_count_frames_become_events():
    counts = np.zeros((5, 4), np.float32)  # aestream's W×H layout, indexed [x, y]
    counts[1, 2], counts[4, 0] = 2.0, 1.0
    events = frame_to_events(counts, 1500, polarity=0)
    assert sorted(events[["x", "y"]].tolist()) == [(1, 2), (1, 2), (4, 0)]
    assert set(events["t"].tolist()) == {1500} and set(events["p"].tolist()) == {0}


# -- webcams and video files through OpenCV ----------------------------------------------------
def test_webcam_frames_from_a_video_file_feed_the_frame_model(root, tmp_path):
    images, labels, _ = digits_split("test")
    images, labels = images[:20], labels[:20]
    video = tmp_path / "digits.avi"
    write_video(video, images, fps=50.0)  # 8×8 digits shown at 64×64, JPEG-compressed
    cfg = config(
        root,
        "digits_frames.yaml",
        f"source={{type: webcam, device: '{video}', width: 16, height: 16}}",
    )
    pipe = build_pipeline(cfg)
    assert (pipe.source.kind, pipe.source.live, len(pipe.source)) == ("frames", False, 20)
    result = run_pipeline(pipe)
    decisions = sorted(result.outcomes, key=lambda o: o.sample)
    assert [o.sample for o in decisions] == list(range(20))
    right = sum(o.cls == int(label) for o, label in zip(decisions, labels, strict=True))
    assert right >= 17, right  # the frames reached the model as the digits they show


def test_webcam_emulated_dvs_feeds_the_event_model(root, tmp_path):
    images, labels, _ = digits_split("test")
    fives = images[labels == 5][:3]
    frames, times = render_saccades(fives)  # K×N×34×34, 1 ms apart
    video = tmp_path / "saccades.avi"
    write_video(video, frames.transpose(1, 0, 2, 3).reshape(-1, 34, 34), fps=1000.0, fourcc="FFV1", size=68)
    source = WebcamSource(WebcamSourceConfig(device=str(video), sensor="digits_dvs", emulate_dvs=True))
    assert (source.kind, source.live, source.sensor.shape) == ("events", True, (2, 34, 34))
    packets = list(source)
    source.close()
    events = np.concatenate([p.data for p in packets])
    assert len(packets) == 3 * len(times) and all(p.sample is None for p in packets)
    assert np.all(np.diff(events["t"]) >= 0) and events["t"][-1] < 3 * len(times) * 1000
    assert events["x"].max() < 34 and events["y"].max() < 34
    assert 0.3 < events["p"].mean() < 0.7  # a moving digit makes ON and OFF events
    cfg = config(
        root,
        "udp_live.yaml",
        f"source={{type: webcam, device: '{video}', sensor: digits_dvs, emulate_dvs: true}}",
    )
    result = run_pipeline(build_pipeline(cfg))
    votes = collections.Counter(o.cls for o in result.outcomes)
    assert votes.most_common(1)[0][0] == 5, votes


def test_webcam_errors_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"source\.device: no such video file: .*missing\.avi"):
        WebcamSource(WebcamSourceConfig(device=str(tmp_path / "missing.avi"), width=16, height=16))
    (tmp_path / "junk.avi").write_bytes(b"not a video")
    with pytest.raises(ConfigError, match=r"source\.device: OpenCV cannot open video"):
        WebcamSource(WebcamSourceConfig(device=str(tmp_path / "junk.avi"), width=16, height=16))
    with pytest.raises(ValidationError, match=r"give sensor \(e\.g\. digits_dvs\) or width and height"):
        WebcamSourceConfig(device=str(tmp_path / "junk.avi"))
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    with pytest.raises(ConfigError, match="pip install opencv-python-headless"):
        WebcamSource(WebcamSourceConfig(device=0, width=16, height=16))


def test_webcam_max_frames_and_pacing(tmp_path):
    video = tmp_path / "ramp.avi"
    write_video(video, np.linspace(0, 1, 10)[:, None, None] * np.ones((10, 8, 8)), fps=20.0)
    source = WebcamSource(WebcamSourceConfig(device=str(video), width=4, height=4, max_frames=6))
    assert len(source) == 6
    packets = list(source)
    assert len(packets) == 6 and packets[5].t0_us == 250_000  # frame 5 at 20 fps
    assert all(p.data.shape == (4, 4) and p.data.dtype == np.float32 for p in packets)
    means = [float(p.data.mean()) for p in packets]
    assert means == sorted(means) and 0 <= means[0] < 0.1 and means[-1] > 0.4
