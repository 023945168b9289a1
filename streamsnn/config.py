"""Configuration files: ``pipeline.yaml`` (``streamsnn run``) and training configs
(``streamsnn train``), validated with pydantic.

Files load with YAML's safe loader; unknown keys and bad values are errors that name the file and
the dotted field; ``--set key=value`` overrides use the same dotted names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names file, field and value."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Split = Literal["train", "val", "test"]


# -- sources --------------------------------------------------------------------------------
class DigitsDVSSourceConfig(Strict):
    """digits-dvs: the embedded handwritten digits as emulated DVS recordings (34×34, 300 ms).
    ``live``: play the split as one continuous real-time camera stream in ``packet_us`` packets.
    ``offset`` skips the split's first samples and ``limit`` keeps the next N (a range of the
    split, e.g. one shard of a replay); samples keep their numbers in the split."""

    type: Literal["digits_dvs"]
    split: Split = "test"
    offset: NonNegativeInt = 0
    limit: PositiveInt | None = None
    seed: int = 0
    live: bool = False
    packet_us: PositiveInt = 1_000


class DigitsFramesSourceConfig(Strict):
    """The embedded handwritten digits as intensity frames (size×size); ``offset`` and ``limit``
    as for digits_dvs."""

    type: Literal["digits_frames"]
    split: Split = "test"
    offset: NonNegativeInt = 0
    limit: PositiveInt | None = None
    size: PositiveInt = 16


class EventDatasetSourceConfig(Strict):
    """Replay of a recorded data set through tonic (``root``: tonic's ``save_to``; ``download``:
    fetch it when missing). Splits are stored and fixed (CIFAR10-DVS per class: 0–799 train,
    800–899 val, 900–999 test); ``limit`` takes a class-balanced prefix, after skipping
    ``offset`` samples (samples keep their numbers in the split)."""

    type: Literal["cifar10dvs", "nmnist", "dvs_gesture"]
    root: str = "data"
    download: bool = False
    split: Split = "test"
    offset: NonNegativeInt = 0
    limit: PositiveInt | None = None


class RecordingSourceConfig(Strict):
    """Recorded event files: ``path`` is a file, a folder or a glob (.aedat4, .aedat, .dat, .raw, .bin,
    .npy). ``mode: stream`` plays each file as a continuous stream in ``packet_us`` packets;
    ``mode: sample`` makes each file one sample. ``sensor``: a profile (needed for .npy; checked
    against the geometry a file states). ``format`` overrides the file extension."""

    type: Literal["recording"]
    path: str
    format: Literal["aedat", "aedat4", "prophesee_dat", "prophesee_raw", "nmnist", "numpy"] | None = None
    sensor: str | None = None
    mode: Literal["stream", "sample"] = "stream"
    packet_us: PositiveInt = 10_000


class _SensorOptions(Strict):
    """A live source's pixel array: ``sensor`` (a profile, see ``streamsnn sensors``) or
    ``width`` and ``height``; sources without a default say so in ``_no_sensor``."""

    _no_sensor: ClassVar[str | None] = None  # the error when neither is given (None: a default exists)
    sensor: str | None = None
    width: PositiveInt | None = None
    height: PositiveInt | None = None

    @model_validator(mode="after")
    def _sensor_or_size(self) -> _SensorOptions:
        sized = (self.width is not None, self.height is not None)
        if self.sensor is not None and any(sized):
            raise ValueError("give either sensor or width and height, not both")
        if self.sensor is None and any(sized) and not all(sized):
            raise ValueError("give both width and height")
        if self._no_sensor and self.sensor is None and not any(sized):
            raise ValueError(self._no_sensor)
        return self


class UDPSourceConfig(_SensorOptions):
    """Live SPIF events over UDP on ``host:port`` (``port: 0`` takes a free port), stamped on
    arrival. Packets every ``packet_us`` µs of wall time; silence is reported after ``silence_s``;
    ``stop_after_silence_s`` ends the stream after that much silence (None: run until stopped)."""

    type: Literal["udp"]
    host: str = "127.0.0.1"
    port: int = Field(3333, ge=0, le=65535)
    packet_us: PositiveInt = 1_000
    silence_s: PositiveFloat = 1.0
    stop_after_silence_s: PositiveFloat | None = None
    _no_sensor: ClassVar[str | None] = (
        "give sensor (e.g. dvs128, see `streamsnn sensors`) or width and height"
    )


class CameraSourceConfig(_SensorOptions):
    """A USB event camera through aestream (needs aestream built with the camera's driver).
    ``device_id``/``device_address``: an iniVation camera on the USB bus; ``serial``: a Prophesee
    camera; default: the first found. ``sensor`` defaults to davis346 / prophesee_gen4.
    ``polarity``: given to every event (aestream reads counts without polarity)."""

    type: Literal["camera"]
    camera: Literal["inivation", "prophesee"] = "inivation"
    device_id: int | None = Field(None, ge=0)
    device_address: int | None = Field(None, ge=0)
    serial: str | None = None
    packet_us: PositiveInt = 1_000
    polarity: Literal[0, 1] = 1


class WebcamSourceConfig(_SensorOptions):
    """An OpenCV camera (``device``: index or URL) or a video file (path), grayscale in [0, 1]
    resized to the sensor. ``emulate_dvs``: frames → events of an emulated DVS (contrast
    ``threshold``) for the event encoders; else frames for ``direct``/``poisson``. ``fps``: frame
    rate of a file (default: the file's); ``runtime.realtime`` plays a file at that rate."""

    type: Literal["webcam"]
    device: int | str = 0
    emulate_dvs: bool = False
    threshold: PositiveFloat = 0.2
    fps: PositiveFloat | None = None
    max_frames: PositiveInt | None = None
    _no_sensor: ClassVar[str | None] = (
        "give sensor (e.g. digits_dvs) or width and height of the frames for the model"
    )


# the sources that can give continuous streams (``streams`` checks each one's options)
StreamSourceConfig = Annotated[
    DigitsDVSSourceConfig | RecordingSourceConfig | UDPSourceConfig | CameraSourceConfig | WebcamSourceConfig,
    Field(discriminator="type"),
]


class StreamsSourceConfig(Strict):
    """Several continuous sources stepped together by one operator, one slot per stream
    (``runtime.batch_size`` at least the number of sources): udp, camera, webcam, digits_dvs with
    ``live: true``, recording with ``mode: stream``; all live or all replayed, one sensor geometry.
    A stream is named ``<its source's stream>#<i>``, ``i`` the source's position in ``sources``.
    ``offset``/``limit`` select sources of the list (``executor: ray`` runs one group of
    ``ray.streams_per_worker`` sources per worker)."""

    type: Literal["streams"]
    sources: list[StreamSourceConfig] = Field(min_length=1)
    offset: NonNegativeInt = 0
    limit: PositiveInt | None = None


SourceConfig = Annotated[
    DigitsDVSSourceConfig
    | DigitsFramesSourceConfig
    | EventDatasetSourceConfig
    | RecordingSourceConfig
    | UDPSourceConfig
    | CameraSourceConfig
    | WebcamSourceConfig
    | StreamsSourceConfig,
    Field(discriminator="type"),
]


class SlicingConfig(Strict):
    """How a stream is cut into slices (one SNN step each); exactly one option. For frame
    sources ``n_time_bins`` is the number of steps each frame is shown for. ``n_time_bins`` and
    ``n_event_bins`` (equal event counts, tonic's rule) split whole samples: not for live streams."""

    time_window_us: PositiveInt | None = None
    event_count: PositiveInt | None = None
    n_time_bins: PositiveInt | None = None
    n_event_bins: PositiveInt | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SlicingConfig:
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of time_window_us, event_count, n_time_bins, n_event_bins "
                f"(got {given or 'none'})"
            )
        return self


class EncoderConfig(Strict):
    """Slice → tensor. ``rate_unit_us`` defaults to the value the model was trained with.
    ``size`` (event encoders): binned P×H×W resized (bilinear) to P×size×size, as SEENN's
    CIFAR10-DVS frames (128×128 → 48×48)."""

    type: Literal["event_rate", "event_count", "direct", "poisson"]
    rate_unit_us: PositiveFloat | None = None
    seed: int = 0
    size: PositiveInt | None = None


# -- model and policies ---------------------------------------------------------------------
class ModelConfig(Strict):
    """The converted SNN. ``weights``: a checkpoint path or ``builtin:NAME`` (shipped weights).
    ``alpha``: the accumulated output is divided by alpha before the softmax (1: running sum as
    in SEENN-I; ``t``: running mean). ``conversion``: ``qcfs`` (IF, soft reset) or ``qffs``
    (negative spikes, spike budget Z_max = L)."""

    weights: str = "builtin:digits_dvs"
    conversion: Literal["qcfs", "qffs"] = "qcfs"
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    alpha: PositiveFloat | Literal["t"] = 1.0
    v0: float = Field(0.5, ge=0.0, le=1.0)


class FixedExitConfig(Strict):
    """Final after ``steps`` slices (or at the end of the sample)."""

    type: Literal["fixed"]
    steps: PositiveInt


class ConfidenceExitConfig(Strict):
    """SEENN-I: final as soon as the confidence exceeds ``threshold`` (strictly), else at
    ``max_steps``. ``score``: max softmax probability, or 1 − normalised entropy."""

    type: Literal["confidence"]
    threshold: float = Field(0.9, gt=0.0, le=1.0)
    max_steps: PositiveInt | None = None
    score: Literal["max_softmax", "entropy"] = "max_softmax"


class DynamicConfidenceExitConfig(Strict):
    """Dynamic Confidence: final when ``max softmax(O_t / (α·τ)) > threshold``, else at
    ``max_steps``. Values come from ``calibration`` (a file of ``streamsnn calibrate``); values
    given here override the file's."""

    type: Literal["dynamic_confidence"]
    calibration: str | None = None
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    alpha: PositiveFloat | None = None
    temperature: PositiveFloat | None = None
    max_steps: PositiveInt | None = None


class DeadlineExitConfig(Strict):
    """Anytime: final at a budget of sensor time waited (``input_ms``) or wall time computed
    (``compute_ms``) or steps, whichever comes first, with the best-so-far prediction."""

    type: Literal["deadline"]
    input_ms: PositiveFloat | None = None
    compute_ms: PositiveFloat | None = None
    max_steps: PositiveInt | None = None


class OracleExitConfig(Strict):
    """Upper bound: final at the first correct prediction (needs labels; offline only)."""

    type: Literal["oracle"]
    max_steps: PositiveInt | None = None


class PolicyNetExitConfig(Strict):
    """SEENN-II: a policy network (``weights``, trained by ``streamsnn train`` with
    ``train.method: policy``) picks each sample's number of steps from its first slice."""

    type: Literal["policy_net"]
    weights: str


ExitConfig = Annotated[
    FixedExitConfig
    | ConfidenceExitConfig
    | DynamicConfidenceExitConfig
    | DeadlineExitConfig
    | OracleExitConfig
    | PolicyNetExitConfig,
    Field(discriminator="type"),
]


class PeriodicResetConfig(Strict):
    """Live streams: also close and reset a decision still open after ``every_steps`` slices."""

    type: Literal["periodic"]
    every_steps: PositiveInt


class DecayResetConfig(Strict):
    """Live streams: no hard reset; the state decays towards fresh by ``factor`` per slice."""

    type: Literal["decay"]
    factor: float = Field(0.9, gt=0, lt=1)


class PolicyConfig(Strict):
    exit: ExitConfig
    reset: Literal["on_exit"] | PeriodicResetConfig | DecayResetConfig = "on_exit"


# -- sinks, runtime, report -------------------------------------------------------------------
class JsonlSinkConfig(Strict):
    """One JSON line per prediction (``final_only``: only exit decisions)."""

    type: Literal["jsonl"]
    path: str
    final_only: bool = False


class ConsoleSinkConfig(Strict):
    """Human-readable lines on stderr; ``every``: print every n-th prediction."""

    type: Literal["console"]
    final_only: bool = True
    every: PositiveInt = 1


class RecordSinkConfig(Strict):
    """The source's events to AEDAT4 (dv-processing), to replay the session later with
    ``type: recording``; ``{stream}`` in ``path`` gives one file per stream."""

    type: Literal["record"]
    path: str


class ZmqSinkConfig(Strict):
    """Live predictions over ZeroMQ (PUB, msgpack; schema in ``streamsnn.wire``). ``address``:
    where to bind (loopback unless changed; ``tcp://127.0.0.1:*`` takes a free port). ``hwm``:
    messages queued per subscriber before it loses some (0: no limit). ``top_k``: send only the
    k most probable classes. ``wait_for_subscribers``: start the run only once that many have
    subscribed (within ``wait_timeout_s``), so that an offline replay reaches them from its first
    message. ``linger_s``: how long shutdown waits for the summary to go out."""

    type: Literal["zmq"]
    address: str = "tcp://127.0.0.1:5556"
    hwm: NonNegativeInt = 10_000
    top_k: PositiveInt | None = None
    heartbeat_s: PositiveFloat = 1.0
    wait_for_subscribers: NonNegativeInt = 0
    wait_timeout_s: PositiveFloat = 10.0
    linger_s: NonNegativeFloat = 1.0
    publisher_id: str | None = None


SinkConfig = Annotated[
    JsonlSinkConfig | ConsoleSinkConfig | RecordSinkConfig | ZmqSinkConfig, Field(discriminator="type")
]


class RuntimeConfig(Strict):
    """``batch_size``: streams stepped together (offline replay: samples in flight).
    ``queue_size``: bound of every queue between stages. ``realtime``: release slices at their
    sensor time. ``full_t``: keep stepping exited samples (without emitting) to report the
    accuracy the same samples reach at full length; their exit decisions are unchanged.
    ``count_operations``: count synaptic events and energy per prediction (a little slower).
    ``chunk``: offline replay steps k slices per layer call (T folded into the batch: faster on
    CPU at small batches); every slice still gets its prediction and exits are decided per step,
    but an exit inside a chunk has computed the chunk's later steps too (counted in its compute
    latency). ``channels_last``: the operator keeps convolution weights, state and input in
    channels-last memory layout (faster on CPU, same results). ``threads``: torch's intra-op
    threads during the run; by default every usable core but one, which the source and sink
    threads take."""

    batch_size: PositiveInt = 32
    queue_size: PositiveInt = 64
    realtime: bool = False
    progress: bool = True
    full_t: bool = True
    count_operations: bool = False
    threads: PositiveInt | None = None
    chunk: PositiveInt = 1
    channels_last: bool = True


class ReportConfig(Strict):
    path: str | None = None


class RayConfig(Strict):
    """``executor: ray``: ``address`` of a running cluster (``auto``, ``ray://head:10001``; null
    starts a local Ray instance with ``workers × cpus`` CPUs). A dataset replay: ``workers``
    operator workers, each replaying ranges of ``samples_per_task`` samples of the split (default:
    four ranges per worker, at least ``runtime.batch_size`` samples each: every range ends with a
    partly filled batch and costs a hand-over, but smaller ranges balance the load and lose less
    work when a worker dies). Live streams (a ``streams`` source): one worker per group of
    ``streams_per_worker`` sources (default: the sources spread over ``workers``). Each worker has
    ``cpus`` CPUs (its torch threads) and ``gpus`` GPUs (set ``model.device: cuda`` to use them)."""

    address: str | None = None
    workers: PositiveInt = 2
    samples_per_task: PositiveInt | None = None
    streams_per_worker: PositiveInt | None = None
    cpus: PositiveInt = 1
    gpus: NonNegativeFloat = 0.0


class PipelineConfig(Strict):
    name: str = "pipeline"
    source: SourceConfig
    slicing: SlicingConfig
    encoder: EncoderConfig
    model: ModelConfig = ModelConfig()
    policy: PolicyConfig
    runtime: RuntimeConfig = RuntimeConfig()
    sinks: list[SinkConfig] = []
    report: ReportConfig = ReportConfig()
    # local: this process; ray: a dataset replay sharded by sample across Ray workers
    executor: Literal["local", "ray"] = "local"
    ray: RayConfig = RayConfig()

    def on_split(self, split: str) -> PipelineConfig:
        """The same pipeline reading ``split`` of its source."""
        return self.model_copy(update={"source": self.source.model_copy(update={"split": split})})


# -- training ---------------------------------------------------------------------------------
class TrainDataConfig(Strict):
    """Training data: the embedded digits, CIFAR-10 (official python layout under ``root``) or
    CIFAR10-DVS (tonic's layout under ``root``; ``frames`` equal-event frames at size×size)."""

    name: Literal["digits_dvs", "digits_frames", "cifar10", "cifar10dvs"]
    seed: int = 0
    size: PositiveInt = 16
    root: str = "data"
    download: bool = False
    limit: PositiveInt | None = None  # use only the first N samples of each split
    frames: PositiveInt = 10
    augment: bool = True
    dvs_augment: Literal["one_of", "both"] = "one_of"  # CIFAR10-DVS: roll or rotate (SEENN's code), or both
    antialias: bool = True  # CIFAR10-DVS: antialiased resize to size×size (kept in the checkpoint)


class InputSpecConfig(Strict):
    """What the model expects as input, stored in the checkpoint for the encoder."""

    encoder: Literal["event_rate", "event_count", "direct", "poisson", "event_frames"]
    rate_unit_us: PositiveFloat = 100_000.0
    steps: PositiveInt | None = None  # slices per sample a directly trained SNN was trained on


class ArchConfig(Strict):
    """The network (``streamsnn.snn.models``); fields a model does not take are left unset."""

    name: Literal["digits_cnn", "vgg16", "resnet8", "resnet18", "resnet19", "resnet20", "vggsnn"] = (
        "digits_cnn"
    )
    in_channels: PositiveInt
    size: PositiveInt
    classes: PositiveInt = 10
    widths: list[PositiveInt] | None = None
    levels: PositiveInt | None = None
    theta: PositiveFloat | None = None
    activation: Literal["qcfs", "relu"] | None = None
    dropout: float | None = Field(None, ge=0, lt=1)
    threshold: PositiveFloat | None = None
    decay: float | None = Field(None, gt=0, le=1)


class TrainOptions(Strict):
    """``method``: ``ann`` (QAT / full precision, for conversion) or ``direct`` (SNN, TET loss).
    ``init_from``: fine-tune from this (full-precision) checkpoint. ``max_steps``: stop after
    this many optimiser steps (smoke tests)."""

    method: Literal["ann", "direct", "policy"] = "ann"
    epochs: PositiveInt = 60
    batch_size: PositiveInt = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 3e-3
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    seed: int = 0
    full_stream_fraction: float = Field(0.4, ge=0, le=1)
    min_window_us: PositiveInt = 20_000
    shift_px: int = Field(2, ge=0)
    init_from: str | None = None
    tet_lambda: float = Field(1e-3, ge=0, le=1)
    beta: float = Field(0.5, ge=0)  # SEENN-II: penalty of a wrong prediction
    reward: Literal["paper", "code"] = "paper"  # SEENN-II: 2^−t (eq. 7) or the code's 2^−(t−1), reweighted
    sparsity_activation: float = Field(0.0, ge=0)
    sparsity_weight: float = Field(0.0, ge=0)
    prune_epsilon: float | None = Field(None, gt=0)
    device: str = "cpu"
    amp: bool = False
    max_steps: PositiveInt | None = None
    eval_every: PositiveInt = 5


class TrainConfig(Strict):
    """``pipeline``: for ``train.method: policy`` (SEENN-II), the pipeline whose SNN the policy
    network serves; its source gives the data, so ``data`` and ``input`` are not needed."""

    data: TrainDataConfig | None = None
    model: ArchConfig
    input: InputSpecConfig | None = None
    train: TrainOptions = TrainOptions()
    output: str
    pipeline: str | None = None

    @model_validator(mode="after")
    def _data_for_method(self) -> TrainConfig:
        if self.train.method == "policy":
            if not self.pipeline:
                raise ValueError("train.method policy needs `pipeline:` (the SNN pipeline the policy serves)")
        elif self.data is None or self.input is None:
            raise ValueError(f"train.method {self.train.method} needs `data:` and `input:` sections")
        return self


# -- loading ----------------------------------------------------------------------------------
M = TypeVar("M", bound=BaseModel)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` → (["a", "b", "c"], value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set '{text}': expected key=value, e.g. policy.exit.threshold=0.9")
    key, value = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"--set '{text}': empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"--set '{text}': value is not valid YAML: {err}") from None
    return key.strip().split("."), parsed


def apply_override(data: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    node: Any = data
    for i, part in enumerate(path[:-1]):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{origin}: '{'.'.join(path[: i + 1])}' is not a mapping")
        node = node.setdefault(part, {})
    last = path[-1]
    if isinstance(node, list) and last.isdigit() and int(last) < len(node):
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"{origin}: cannot set '{'.'.join(path)}'")


def format_validation_error(err: ValidationError, origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        value = e.get("input")
        shown = "" if isinstance(value, dict | list) or e["type"] == "missing" else f" (got {value!r})"
        lines.append(f"{origin}: {loc}: {msg}{shown}")
    return "\n".join(lines)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with errors that name the file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def load_config(model: type[M], path: str | Path, overrides: list[str] | None = None) -> M:
    """Validate the YAML file at ``path`` (plus ``key=value`` overrides) against ``model``."""
    data = load_yaml(path)
    for text in overrides or []:
        keys, value = parse_override(text)
        apply_override(data, keys, value, f"--set {text}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    return load_config(PipelineConfig, path, overrides)


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    return load_config(TrainConfig, path, overrides)
