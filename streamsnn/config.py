"""Configuration files: ``pipeline.yaml`` (``streamsnn run``) and training configs
(``streamsnn train``), validated with pydantic.

Files load with YAML's safe loader; unknown keys and bad values are errors that name the file and
the dotted field; ``--set key=value`` overrides use the same dotted names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
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
    ``live``: play the split as one continuous real-time camera stream in ``packet_us`` packets."""

    type: Literal["digits_dvs"]
    split: Split = "test"
    limit: PositiveInt | None = None
    seed: int = 0
    live: bool = False
    packet_us: PositiveInt = 1_000


class DigitsFramesSourceConfig(Strict):
    """The embedded handwritten digits as intensity frames (size×size)."""

    type: Literal["digits_frames"]
    split: Split = "test"
    limit: PositiveInt | None = None
    size: PositiveInt = 16


SourceConfig = Annotated[DigitsDVSSourceConfig | DigitsFramesSourceConfig, Field(discriminator="type")]


class SlicingConfig(Strict):
    """How a stream is cut into slices (one SNN step each); exactly one option. For frame
    sources ``n_time_bins`` is the number of steps each frame is shown for."""

    time_window_us: PositiveInt | None = None
    event_count: PositiveInt | None = None
    n_time_bins: PositiveInt | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SlicingConfig:
        given = [k for k, v in self.model_dump().items() if v is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of time_window_us, event_count, n_time_bins (got {given or 'none'})"
            )
        return self


class EncoderConfig(Strict):
    """Slice → tensor. ``rate_unit_us`` defaults to the value the model was trained with."""

    type: Literal["event_rate", "event_count", "direct", "poisson"]
    rate_unit_us: PositiveFloat | None = None
    seed: int = 0


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


SinkConfig = Annotated[JsonlSinkConfig | ConsoleSinkConfig, Field(discriminator="type")]


class RuntimeConfig(Strict):
    """``batch_size``: streams stepped together (offline replay: samples in flight).
    ``queue_size``: bound of every queue between stages. ``realtime``: release slices at their
    sensor time. ``full_t``: keep stepping exited samples (without emitting) to report the
    accuracy the same samples reach at full length; their exit decisions are unchanged.
    ``count_operations``: count synaptic events and energy per prediction (a little slower)."""

    batch_size: PositiveInt = 32
    queue_size: PositiveInt = 64
    realtime: bool = False
    progress: bool = True
    full_t: bool = True
    count_operations: bool = False
    threads: PositiveInt | None = None


class ReportConfig(Strict):
    path: str | None = None


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
