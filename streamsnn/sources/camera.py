"""Cameras: USB event cameras through aestream, and ordinary webcams (or video files) through OpenCV.

**Event cameras** (``CameraSource``): aestream's ``USBInput`` reads iniVation cameras (libcaer)
and Prophesee cameras (Metavision SDK / OpenEB) when aestream was *compiled* with those drivers;
``aestream.drivers`` lists the ones it has. The wheels on PyPI have none (``aestream.drivers ==
[]`` in 0.6.4, and ``aestream.USBInput`` does not exist there); the error then says how to get
them. Like aestream's ``UDPInput``, ``USBInput.read()`` returns the W×H counts of the events since
the last read, without polarity or times: every ``packet_us`` the source reads the counts and turns
them into events stamped with the read time (µs since start, monotonic clock) and the fixed
``polarity`` option (ON by default), so models that use both polarities see only one channel.

**Webcams and video files** (``WebcamSource``, needs ``opencv-python-headless``): every frame is
converted to grayscale in [0, 1] and resized (area interpolation) to the configured sensor.

- ``emulate_dvs: false`` — kind ``frames`` for the ``direct`` and ``poisson`` encoders. The
  runner shows every frame as one sample for ``slicing.n_time_bins`` steps from a fresh state, so
  the source behaves like a replay: frames are taken in order and none is dropped.
- ``emulate_dvs: true`` — kind ``events``, one live stream for the event encoders: the frames
  feed an emulated DVS pixel array (``DVSEmulator``: log-intensity change against a contrast
  ``threshold``, ON/OFF polarity, crossing times interpolated between frames).

Frame times: from a file, frame index / fps (the file's fps unless ``fps`` is given), released
at that pace when ``realtime``; from a camera, the read time on the monotonic clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, PositiveFloat, PositiveInt

from streamsnn.events import EVENT_DTYPE, Packet, Sensor, make_events
from streamsnn.options import ConfigError
from streamsnn.sources.base import SOURCES, SensorOptions, SourceBase
from streamsnn.sources.dvs_emulator import DVSEmulator, DVSParams

log = logging.getLogger(__name__)

CAMERA_DRIVERS = {"inivation": "caer", "prophesee": "metavision"}
DEFAULT_SENSORS = {"inivation": "davis346", "prophesee": "prophesee_gen4"}
AESTREAM_INSTALL_URL = "https://aestream.github.io/aestream/install.html"


def drivers_help(camera: str, drivers: list[str] | None) -> str:
    """How to get aestream with the driver for ``camera`` (``drivers``: what aestream has now,
    None when aestream is not installed)."""
    if camera == "inivation":
        sdk = "libcaer, iniVation's driver library (https://gitlab.com/inivation/dv/libcaer/)"
    else:
        sdk = "OpenEB / the Metavision SDK, Prophesee's driver (https://github.com/prophesee-ai/openeb/)"
    have = f"this aestream has drivers: {drivers or 'none'}"
    if drivers is None:
        have = "aestream is not installed"
    return (
        f"source.camera: '{camera}' needs aestream compiled with the '{CAMERA_DRIVERS[camera]}' driver, but "
        f"{have} (the wheels on PyPI ship without camera drivers). To get it: "
        f"1) install {sdk}; "
        f"2) rebuild aestream from source so that its build finds the driver: "
        f"`pip install --force-reinstall --no-cache-dir --no-binary aestream -v aestream` "
        f"(the build log then says e.g. 'Inivation dependencies (libcaer) found'); "
        f'3) check with `python -c "import aestream; print(aestream.drivers)"`. See {AESTREAM_INSTALL_URL}.'
    )


def frame_to_events(counts: np.ndarray, t_us: int, polarity: int = 1) -> np.ndarray:
    """Events of an aestream count frame (W×H, indexed [x, y]): each pixel's count, rounded, as
    that many events at ``t_us`` with ``polarity``."""
    n = np.rint(np.asarray(counts)).astype(np.int64).clip(min=0)
    x, y = np.nonzero(n)
    reps = n[x, y]
    return make_events(
        np.full(int(reps.sum()), t_us, dtype=np.int64), np.repeat(x, reps), np.repeat(y, reps), polarity
    )


class CameraSourceConfig(SensorOptions):
    """A USB event camera through aestream (needs aestream built with the camera's driver): one
    live stream of events."""

    type: Literal["camera"] = "camera"
    camera: Literal["inivation", "prophesee"] = Field(
        "inivation", description="the camera's maker (its driver)"
    )
    device_id: int | None = Field(
        None, ge=0, description="an iniVation camera's USB bus (null: the first found)"
    )
    device_address: int | None = Field(None, ge=0, description="an iniVation camera's address on its bus")
    serial: str | None = Field(None, description="a Prophesee camera's serial number (null: the first found)")
    packet_us: PositiveInt = Field(1_000, description="read the camera every packet_us of wall time (µs)")
    polarity: Literal[0, 1] = Field(
        1, description="the polarity given to every event (aestream reads counts without polarity)"
    )


@SOURCES.register(CameraSourceConfig)
class CameraSource(SourceBase):
    """A USB event camera (iniVation or Prophesee) read through aestream's ``USBInput``.

    ``device_id``/``device_address`` pick an iniVation camera on the USB bus, ``serial`` a
    Prophesee camera; by default the first camera found. The sensor defaults to the maker's
    (``DEFAULT_SENSORS``). Counts are read every ``packet_us`` (µs of wall time) and released as
    packets of one live stream.
    """

    kind = "events"
    live = True
    labels = False
    continuous = True

    def __init__(self, config: CameraSourceConfig) -> None:
        camera = config.camera
        self.sensor = config.pixel_array(polarities=2, default=DEFAULT_SENSORS[camera])
        self.camera, self.packet_us, self.polarity = camera, config.packet_us, config.polarity
        self.stream = f"camera/{camera}"
        self._closed = threading.Event()
        self._started = False
        self._input = self._open(config.device_id, config.device_address, config.serial)

    def _open(self, device_id: int | None, device_address: int | None, serial: str | None) -> Any:
        try:
            import aestream
        except ImportError:
            raise ConfigError(drivers_help(self.camera, None)) from None
        drivers = list(getattr(aestream, "drivers", []))
        if CAMERA_DRIVERS[self.camera] not in drivers or not hasattr(aestream, "USBInput"):
            raise ConfigError(drivers_help(self.camera, drivers))
        shape = (self.sensor.width, self.sensor.height)
        try:
            if self.camera == "inivation" and device_id is not None:
                return aestream.USBInput(shape, "cpu", device_id, device_address or 0)
            if self.camera == "prophesee" and serial is not None:
                return aestream.USBInput(shape, "cpu", serial)
            kind = aestream.Camera.Inivation if self.camera == "inivation" else aestream.Camera.Prophesee
            return aestream.USBInput(shape, "cpu", kind)
        except Exception as err:  # aestream raises plain runtime errors from C++
            where = serial or "the first found"
            if device_id is not None:
                where = f"device {device_id}:{device_address or 0}"
            raise ConfigError(f"source: cannot open the {self.camera} camera ({where}): {err}") from None

    def __len__(self) -> int:
        """0: a live stream has no known length."""
        return 0

    def __iter__(self) -> Iterator[Packet]:
        if self._closed.is_set():
            return
        self._input.__enter__()  # starts aestream's reading thread
        self._started = True
        t0 = time.monotonic_ns()
        prev_us, next_ns = 0, t0 + self.packet_us * 1_000
        while not self._closed.is_set():
            delay = (next_ns - time.monotonic_ns()) / 1e9
            if delay > 0:
                time.sleep(delay)
            next_ns += self.packet_us * 1_000
            t_us = (time.monotonic_ns() - t0) // 1_000
            counts = np.asarray(self._input.read())
            events = frame_to_events(counts, t_us, self.polarity)
            yield Packet(self.stream, None, events, None, prev_us, t_us + 1, end_of_sample=False)
            prev_us = t_us + 1

    def close(self) -> None:
        """Stop aestream's reader; gives up waiting after 2 s (logged) so closing never hangs."""
        if self._closed.is_set():
            return
        self._closed.set()
        if not self._started:  # aestream's stop waits for a reader that was never started
            return
        stopper = threading.Thread(target=self._input.__exit__, args=(None, None, None), daemon=True)
        stopper.start()
        stopper.join(2.0)
        if stopper.is_alive():
            log.warning("%s: aestream did not stop its camera reader within 2 s; left to finish", self.stream)


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise ConfigError(
            "source: the webcam source needs OpenCV: `pip install opencv-python-headless`"
        ) from None
    return cv2


class WebcamSourceConfig(SensorOptions):
    """An OpenCV camera or a video file, grayscale in [0, 1] resized to the sensor: frames for the
    direct and poisson encoders, or events of an emulated DVS for the event encoders."""

    type: Literal["webcam"] = "webcam"
    device: int | str = Field(0, description="a camera index or URL, or a video file's path")
    emulate_dvs: bool = Field(
        False, description="turn the frames into the events of an emulated DVS (one live stream)"
    )
    threshold: PositiveFloat = Field(
        0.2, description="emulate_dvs: the DVS contrast threshold (log intensity)"
    )
    fps: PositiveFloat | None = Field(
        None, description="a file's frame rate (null: the file's); runtime.realtime plays it at that rate"
    )
    max_frames: PositiveInt | None = Field(None, description="end the stream after this many frames")
    _no_sensor: ClassVar[str | None] = (
        "give sensor (e.g. digits_dvs) or width and height of the frames for the model"
    )


@SOURCES.register(WebcamSourceConfig)
class WebcamSource(SourceBase):
    """Frames from an OpenCV camera (``device``: index, or a URL) or a video file (a path).

    ``max_frames`` ends the stream after that many frames. See the module docstring for the two
    modes (``emulate_dvs``) and for frame times.
    """

    labels = False
    continuous = True

    def __init__(self, config: WebcamSourceConfig) -> None:
        cv2 = _import_cv2()
        device, emulate_dvs = config.device, config.emulate_dvs
        self.emulate_dvs = emulate_dvs
        self.kind = "events" if emulate_dvs else "frames"
        self.live = emulate_dvs
        base = config.pixel_array(polarities=2)
        self.sensor = Sensor(base.name, base.width, base.height, 2 if emulate_dvs else 1, base.description)
        self.threshold, self.max_frames = config.threshold, config.max_frames
        self.is_file = isinstance(device, str) and "://" not in device
        if self.is_file and not Path(str(device)).is_file():
            raise ConfigError(f"source.device: no such video file: {device}")
        self._cap = cv2.VideoCapture(device)
        if not self._cap.isOpened():
            self._cap.release()
            what = f"video '{device}'" if isinstance(device, str) else f"camera {device}"
            raise ConfigError(f"source.device: OpenCV cannot open {what} (no device, no access or no codec)")
        file_fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = config.fps or (file_fps if file_fps > 0 else 30.0)
        self._frames = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if self.is_file else 0
        self.device = device
        name = Path(device).name if self.is_file else device
        self.stream = f"webcam/{name}" + ("/dvs" if emulate_dvs else "")
        self._cv2 = cv2
        self._closed = threading.Event()
        self.stats["read_failures"] = 0

    def __len__(self) -> int:
        """Frames in a file (capped by ``max_frames``); for a camera ``max_frames`` or 0 (unknown)."""
        n = self._frames if self.is_file else 0
        if self.max_frames is not None:
            n = min(n, self.max_frames) if n else self.max_frames
        return n

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        """(time in µs, H×W float32 frame in [0, 1]) of every frame, paced as configured."""
        cv2 = self._cv2
        wall0 = time.monotonic()
        failures, i = 0, 0
        while not self._closed.is_set() and (self.max_frames is None or i < self.max_frames):
            ok, image = self._cap.read()
            if not ok:
                if self.is_file:
                    return  # end of the file
                self.count("read_failures")
                failures += 1
                if failures >= 20:
                    raise RuntimeError(f"{self.stream}: camera {self.device} gave no frame in 20 tries")
                time.sleep(0.05)
                continue
            failures = 0
            if self.is_file:
                t_us = i * 1e6 / self.fps
                self.pace(int(t_us))
            else:
                t_us = (time.monotonic() - wall0) * 1e6
            yield t_us, self._to_sensor(image, cv2)
            i += 1

    def _to_sensor(self, image: np.ndarray, cv2: Any) -> np.ndarray:
        if image.ndim == 3 and image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        elif image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        scale = 65535.0 if image.dtype == np.uint16 else 255.0 if image.dtype == np.uint8 else 1.0
        size = (self.sensor.width, self.sensor.height)
        if image.shape[1] != size[0] or image.shape[0] != size[1]:
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        return (image.astype(np.float32) / scale).clip(0.0, 1.0)

    def __iter__(self) -> Iterator[Packet]:
        if not self.emulate_dvs:
            frame_us = 1e6 / self.fps
            for i, (t_us, frame) in enumerate(self.frames()):
                yield Packet(self.stream, i, frame, None, int(t_us), int(t_us + frame_us))
            return
        dvs = DVSEmulator(
            np.full((self.sensor.height, self.sensor.width), self.threshold),
            DVSParams(threshold=self.threshold, mismatch=0.0, noise_hz=0.0),
        )
        prev_us = 0
        for t_us, frame in self.frames():
            t, (y, x), p = dvs(frame, t_us)
            events = make_events(np.floor(t), x, y, p) if len(t) else np.empty(0, dtype=EVENT_DTYPE)
            if len(events) > 1:
                events = events[np.argsort(events["t"], kind="stable")]
            end_us = int(t_us) + 1
            yield Packet(self.stream, None, events, None, prev_us, end_us, end_of_sample=False)
            prev_us = end_us

    def close(self) -> None:
        self._closed.set()
        self._cap.release()
