"""Configuration files: ``pipeline.yaml`` (``streamsnn run``) and training configs
(``streamsnn train``), validated with pydantic.

``PipelineConfig`` takes its sources, slicing, encoders, exit and reset policies and sinks from
the plug-ins' registries (each plug-in declares its options beside it); the pipeline-level
sections (model, runtime, report, ray) are declared here. Files load with YAML's safe loader;
unknown keys and bad values are errors that name the file and the dotted field as ``--set
key=value`` takes it. ``describe`` prints the sections and options (``streamsnn config``).
"""

from __future__ import annotations

import textwrap
import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import annotated_types
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo

from streamsnn.encoding import ENCODERS
from streamsnn.interop.nir_import import NirOptions
from streamsnn.options import ConfigError, Options, type_names
from streamsnn.policies import EXIT_POLICIES, GATES, RESET_POLICIES
from streamsnn.sinks import SINKS
from streamsnn.slicing import SlicingConfig
from streamsnn.sources import SOURCES
from streamsnn.sources.event_datasets import SPLIT_BY, SplitBy

# -- pipeline.yaml ---------------------------------------------------------------------------
# the options of any registered plug-in of a kind, told apart by their ``type``
SourceConfig = SOURCES.union()
EncoderConfig = ENCODERS.union()
ExitConfig = EXIT_POLICIES.union()
ResetConfig = RESET_POLICIES.union()
GateConfig = GATES.union()
SinkConfig = SINKS.union()
# where a pipeline's files (``runs/<name>/``) and training's checkpoints (``runs/train/``) go unless a
# path is given; relative to the working directory, as every relative path of a config
RUNS = Path("runs")


class ModelConfig(Options):
    """The converted SNN."""

    weights: str = Field(
        "builtin:digits_dvs",
        description="a checkpoint path, builtin:NAME for weights shipped with streamsnn, or a NIR graph "
        "(a .nir file, imported as model.nir says)",
    )
    conversion: Literal["qcfs", "qffs"] = Field(
        "qcfs", description="qcfs: IF neurons with soft reset; qffs: negative spikes, spike budget Z_max = L"
    )
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1 ...")
    dtype: Literal["float32", "float64"] = Field("float32", description="the operator's floating-point type")
    alpha: PositiveFloat | Literal["t"] = Field(
        1.0,
        description="the accumulated output is divided by alpha before the softmax (1: running sum as in "
        "SEENN-I; t: running mean)",
    )
    v0: float = Field(0.5, ge=0.0, le=1.0, description="initial membrane potential, as a fraction of θ")
    nir: NirOptions = Field(
        default_factory=NirOptions,
        description="how a .nir model.weights steps in discrete time (dt, integration, reset)",
    )


def _named(value: Any) -> Any:
    """A plug-in given by its name alone (``reset: on_exit``) is that plug-in with its defaults."""
    return {"type": value} if isinstance(value, str) else value


class PolicyConfig(Options):
    """When a prediction is final, when a stream's state is cleared, and whether the input
    supports a decision."""

    exit: ExitConfig = Field(description="the exit policy: is this prediction final?")
    reset: Annotated[ResetConfig, BeforeValidator(_named)] = Field(
        RESET_POLICIES.options("on_exit")(),
        description="the reset policy of live streams (a name alone: its defaults)",
    )
    gate: Annotated[GateConfig, BeforeValidator(_named)] = Field(
        GATES.options("none")(),
        description="live streams: no final decision on input that does not support one (empty, noise)",
    )


class RuntimeConfig(Options):
    """How the pipeline runs: batching, queues, pacing and what it measures."""

    batch_size: PositiveInt = Field(
        32, description="streams stepped together (offline replay: samples in flight)"
    )
    queue_size: PositiveInt = Field(64, description="bound of every queue between stages")
    realtime: bool = Field(False, description="release slices at their sensor time")
    progress: bool = Field(True, description="show a progress bar")
    full_t: bool = Field(
        True,
        description="keep stepping exited samples (without emitting) to report the accuracy the same "
        "samples reach at full length; their exit decisions are unchanged",
    )
    count_operations: bool = Field(
        False, description="count synaptic events and energy per prediction (a little slower)"
    )
    threads: PositiveInt | None = Field(
        None,
        description="torch's intra-op threads during the run (null: every usable core but one, which "
        "the source and sink threads take)",
    )
    chunk: PositiveInt = Field(
        1,
        description="offline replay: steps per layer call (T folded into the batch: faster on CPU at small "
        "batches); every slice still gets its prediction and exits are decided per step, but an exit "
        "inside a chunk has computed the chunk's later steps too",
    )
    channels_last: bool = Field(
        True,
        description="keep weights, state and input in channels-last memory layout (faster on CPU, same "
        "results)",
    )


class ReportConfig(Options):
    """The run's report."""

    path: str | None = Field(
        None, description="report.json (with per-sample outcomes and a PNG beside it; null: none)"
    )


class RayConfig(Options):
    """executor: ray. A dataset replay runs ranges of the split on operator workers; live streams
    (a streams source) run a group of sources per worker."""

    address: str | None = Field(
        None,
        description="a running cluster (auto, ray://head:10001); null starts a local Ray with workers × cpus "
        "CPUs",
    )
    workers: PositiveInt = Field(2, description="operator workers")
    samples_per_task: PositiveInt | None = Field(
        None,
        description="replay: samples per range (null: four ranges per worker, at least runtime.batch_size "
        "samples each; smaller ranges balance the load and lose less work when a worker dies)",
    )
    streams_per_worker: PositiveInt | None = Field(
        None, description="streams source: sources per worker (null: the sources spread over the workers)"
    )
    cpus: PositiveInt = Field(1, description="CPUs per worker (its torch threads)")
    gpus: NonNegativeFloat = Field(
        0.0, description="GPUs per worker (a fraction shares one; set model.device: cuda)"
    )


class PipelineConfig(Options):
    """A pipeline: source → slicing → encoder → SNN → policies → sinks."""

    name: str = Field(
        "pipeline",
        pattern=r"^[\w-][\w.-]*$",  # a folder name: runs/<name>/
        description="the pipeline's name (in the report); its files go to runs/<name>/ unless told",
    )
    source: SourceConfig = Field(description="where the events or frames come from")
    slicing: SlicingConfig = Field(description="how streams are cut into slices (one SNN step each)")
    encoder: EncoderConfig = Field(description="slice → input tensor")
    model: ModelConfig = Field(ModelConfig(), description="the converted SNN")
    policy: PolicyConfig = Field(description="exit and reset policies, and the gate of live streams")
    runtime: RuntimeConfig = Field(RuntimeConfig(), description="batching, queues, pacing, measurements")
    sinks: list[SinkConfig] = Field([], description="where predictions go")
    report: ReportConfig = Field(ReportConfig(), description="the run's report")
    executor: Literal["local", "ray"] = Field(
        "local",
        description="local: this process; ray: on Ray workers (a replay sharded by sample, live streams "
        "grouped)",
    )
    ray: RayConfig = Field(RayConfig(), description="Ray workers (executor: ray)")

    @property
    def run_dir(self) -> Path:
        """``runs/<name>``: the folder of this pipeline's files (calibration, evaluation) by default."""
        return RUNS / self.name

    def on_split(self, split: str) -> PipelineConfig:
        """The same pipeline reading ``split`` of its source."""
        return self.model_copy(update={"source": self.source.model_copy(update={"split": split})})


# -- training ---------------------------------------------------------------------------------
class TrainDataConfig(Options):
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
    split_by: SplitBy = Field("number", description=SPLIT_BY)


class InputSpecConfig(Options):
    """What the model expects as input, stored in the checkpoint for the encoder."""

    encoder: Literal["event_rate", "event_count", "direct", "poisson", "event_frames"]
    rate_unit_us: PositiveFloat = 100_000.0
    steps: PositiveInt | None = None  # slices per sample a directly trained SNN was trained on


class ArchConfig(Options):
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


class TrainOptions(Options):
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


class TrainConfig(Options):
    """``pipeline``: for ``train.method: policy`` (SEENN-II), the pipeline whose SNN the policy
    network serves; its source gives the data, so ``data`` and ``input`` are not needed.
    ``output``: the checkpoint (default ``runs/train/<config file name>.pt``). ``reproduces``: a
    checkpoint this config reproduces (``builtin:digits_dvs``): the result is compared with it,
    never written over it."""

    data: TrainDataConfig | None = None
    model: ArchConfig
    input: InputSpecConfig | None = None
    train: TrainOptions = TrainOptions()
    output: str | None = None
    reproduces: str | None = None
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


def _resolve(annotation: Any) -> tuple[list[Any], str | None]:
    """What a value of ``annotation`` can be: the members of a union (``None`` left out; a single
    one if no union), unwrapped from ``Annotated``, and the discriminator that tells them apart."""
    discriminator = None
    while True:
        while get_origin(annotation) is Annotated:
            annotation, *extras = get_args(annotation)
            for extra in extras:
                if isinstance(extra, FieldInfo) and extra.discriminator:
                    discriminator = str(extra.discriminator)
        members = [annotation]
        if get_origin(annotation) in (Union, types.UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) != 1 or members[0] is annotation:
            return members, discriminator
        annotation = members[0]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def settable_path(model: type[BaseModel], loc: tuple[str | int, ...]) -> str:
    """A pydantic error location as the dotted key ``--set`` takes: the location walked along the
    schema of ``model``, keeping field names and list indices and dropping the tags pydantic adds
    for the member of a union it tried (a discriminator value such as ``confidence``, or a
    type such as ``float``)."""
    parts: list[str] = []
    annotation: Any = model
    discriminator: str | None = None
    for part in loc:
        if annotation is None:  # past a member tag we cannot follow: keep the rest as given
            parts.append(str(part))
            continue
        members, tagged = _resolve(annotation)
        if discriminator or tagged:  # ``part`` names the member (the value of its ``type``)
            annotation = next((m for m in members if part in type_names(m)), None)
            discriminator = None
        elif len(members) > 1:  # a plain union: ``part`` names the member type pydantic tried
            annotation = None
        elif _is_model(members[0]):
            parts.append(str(part))
            field = members[0].model_fields.get(str(part))
            annotation = field.annotation if field else None
            discriminator = field.discriminator if field else None
        elif get_origin(members[0]) is list and isinstance(part, int):
            parts.append(str(part))
            annotation = get_args(members[0])[0]
        else:
            parts.append(str(part))
            annotation = None
    return ".".join(parts)


def format_validation_error(err: ValidationError, origin: str, model: type[BaseModel]) -> str:
    """One line per error of validating against ``model``: origin, the field as ``--set`` takes
    it, the message and the value given."""
    lines = []
    for e in err.errors():
        loc = settable_path(model, e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        value = e.get("input")
        shown = "" if isinstance(value, dict | list) or e["type"] == "missing" else f" (got {value!r})"
        lines.append(f"{origin}: {loc}: {msg}{shown}")
    return "\n".join(dict.fromkeys(lines))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with errors that name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError as err:
        line, byte = err.object.count(b"\n", 0, err.start) + 1, err.object[err.start]
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{byte:02x} at offset {err.start}); save it as UTF-8"
        ) from None
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
        raise ConfigError(format_validation_error(err, str(path), model)) from None


PIPELINES = Path(__file__).resolve().parent / "pipelines"
"""The pipelines shipped with streamsnn (package data; the checkout's ``pipelines/``)."""


def pipeline_file(path: str | Path) -> Path:
    """``builtin:NAME`` → the shipped pipeline ``NAME.yaml``; any other ``path`` as given."""
    text = str(path)
    if not text.startswith("builtin:"):
        return Path(path)
    name = text.removeprefix("builtin:")
    shipped = sorted(p.stem for p in PIPELINES.glob("*.yaml"))
    if name not in shipped:
        raise ConfigError(f"unknown pipeline '{text}'; shipped: {', '.join(f'builtin:{s}' for s in shipped)}")
    return PIPELINES / f"{name}.yaml"


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """The pipeline at ``path`` (or ``builtin:NAME``, see ``pipeline_file``)."""
    return load_config(PipelineConfig, pipeline_file(path), overrides)


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    return load_config(TrainConfig, path, overrides)


# -- describing the options (``streamsnn config``) ----------------------------------------------
_BOUNDS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", "≥"))
_BOUNDS += ((annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "≤"))


def _constraints(metadata: Any) -> str:
    """`` > 0, ≤ 1``: the bounds among a field's or type's ``metadata``."""
    found = []
    for item in metadata:
        for kind, attr, sign in _BOUNDS:
            if isinstance(item, kind):
                found.append(f"{sign} {getattr(item, attr):g}")
        if isinstance(item, annotated_types.MinLen):
            found.append(f"(at least {item.min_length})")
    return f" {', '.join(found)}" if found else ""


def _plugin_names(model: type[BaseModel]) -> str:
    return ", ".join(type_names(model))


def _type_text(annotation: Any) -> str:
    """A field's type as a reader of ``pipeline.yaml`` writes it: ``int > 0 | null``, ``one of
    fixed, confidence``, ``list of console, jsonl``..."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extras = get_args(annotation)
        return _type_text(inner) + _constraints(extras)
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        shown = [a for a in args if a is not type(None)]
        if all(_is_model(a) for a in shown):
            text = "one of: " + ", ".join(sorted(n for a in shown for n in type_names(a)))
        else:
            text = " | ".join(_type_text(a) for a in shown)
        return text + (" | null" if len(shown) < len(args) else "")
    if origin is Literal:
        return " | ".join(str(v) for v in get_args(annotation))
    if origin is list:
        item = _type_text(get_args(annotation)[0])
        return f"list, each {item}" if item.startswith("one of") else f"list of {item}"
    if _is_model(annotation):
        return f"one of: {_plugin_names(annotation)}" if "type" in annotation.model_fields else "section"
    return getattr(annotation, "__name__", str(annotation))


def _value_text(value: Any) -> str:
    if isinstance(value, BaseModel):
        return _plugin_names(type(value))  # a plug-in with its defaults
    return yaml.safe_dump(value, default_flow_style=True, width=1_000).strip().removesuffix("\n...").strip()


def _summary(cls: type) -> str:
    """The first paragraph of a class's own docstring, on one line."""
    doc = cls.__dict__.get("__doc__") or ""
    return " ".join(textwrap.dedent(doc).strip().split("\n\n")[0].split()).replace("``", "`")


def _field_lines(name: str, field: FieldInfo) -> list[str]:
    kind = _type_text(field.annotation)
    if field.metadata:
        bounds = _constraints(field.metadata)
        kind = kind[: -len(" | null")] + bounds + " | null" if kind.endswith(" | null") else kind + bounds
    if field.is_required():
        head = f"  {name}: {kind} (required)"
    elif kind == "section":
        head = f"  {name}: section"
    else:
        head = f"  {name}: {kind} = {_value_text(field.get_default(call_default_factory=True))}"
    about = textwrap.fill(field.description or "", 100, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return [head, about] if about.strip() else [head]


def _model_text(path: str, model: type[BaseModel]) -> list[str]:
    plugin = "type" in model.model_fields
    title = f"{path}" + (f" (type: {' | '.join(type_names(model))})" if plugin else "")
    lines = [textwrap.fill(f"{title}: {_summary(model)}", 100)]
    for name, field in model.model_fields.items():
        if not (plugin and name == "type"):
            lines += _field_lines(name, field)
    return lines


def _section(path: list[str]) -> tuple[str, Any]:
    """The dotted ``path`` of a section, a plug-in kind or a plug-in of ``pipeline.yaml`` and what
    it holds (a model, or the union of a kind); ``ConfigError`` naming what exists otherwise."""
    annotation: Any = PipelineConfig
    walked: list[str] = []
    picked = False  # the previous part picked a plug-in: this one names its option
    for part in path:
        members, _ = _resolve(annotation)
        if get_origin(members[0]) is list:
            members, _ = _resolve(get_args(members[0])[0])
        where = ".".join(walked) or "pipeline.yaml"
        if not picked and all(_is_model(m) and "type" in m.model_fields for m in members):
            names = {n: m for m in members for n in type_names(m)}
            if part not in names:
                raise ConfigError(f"{where} has no type '{part}'; known: {', '.join(sorted(names))}")
            annotation, picked = names[part], True
        elif len(members) == 1 and _is_model(members[0]):
            fields = {k: f for k, f in members[0].model_fields.items() if not (picked and k == "type")}
            if part not in fields:
                what = "option" if walked else "section"
                raise ConfigError(f"{where} has no {what} '{part}'; known: {', '.join(fields)}")
            annotation, picked = fields[part].annotation, False
        else:
            raise ConfigError(f"{where} is a single value: it has no '{part}'")
        walked.append(part)
    return ".".join(walked), annotation


def describe(name: str = "") -> str:
    """The options of ``pipeline.yaml``: its sections (``name`` empty), one section (``runtime``),
    every plug-in of a kind (``policy.exit``) or one plug-in (``sinks.zmq``), each option with
    its type, default and description."""
    path, annotation = _section([p for p in name.split(".") if p])
    if not path:
        lines = _model_text("pipeline.yaml", PipelineConfig)
        lines.append(
            "\nstreamsnn config SECTION[.TYPE] shows a section's options, e.g. `streamsnn config sinks.zmq`"
        )
        return "\n".join(lines)
    members, _ = _resolve(annotation)
    if get_origin(members[0]) is list:
        members, _ = _resolve(get_args(members[0])[0])
    if len(members) == 1 and _is_model(members[0]):
        return "\n".join(_model_text(path, members[0]))
    if all(_is_model(m) for m in members):
        blocks = [f"{path}: {_type_text(annotation)}"]
        for model in sorted(members, key=lambda m: type_names(m)[0]):
            blocks.append("\n".join(_model_text(f"{path}.{type_names(model)[0]}", model)))
        return "\n\n".join(blocks)
    parent, _, key = path.rpartition(".")
    _, holder = _section(parent.split(".") if parent else [])
    return "\n".join(_field_lines(key, _resolve(holder)[0][0].model_fields[key]))
