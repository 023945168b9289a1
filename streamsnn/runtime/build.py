"""Build the parts of a pipeline from its validated config, checking that they fit together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from streamsnn.config import ConfigError, PipelineConfig
from streamsnn.encoding import Encoder, make_encoder
from streamsnn.policies import ExitPolicy, ResetPolicy, make_exit_policy, make_reset_policy
from streamsnn.sinks import Sink, make_sink
from streamsnn.slicing import Slicer
from streamsnn.snn.checkpoint import LoadedModel, load_checkpoint
from streamsnn.snn.operator import SNNOperator
from streamsnn.sources import Source, make_source

EVENT_ENCODERS = ("event_rate", "event_count")
FRAME_ENCODERS = ("direct", "poisson")


@dataclass
class Pipeline:
    """Everything ``run_pipeline`` needs, built and checked."""

    config: PipelineConfig
    source: Source
    model: LoadedModel
    operator: SNNOperator
    encoder: Encoder
    exit_policy: ExitPolicy
    reset_policy: ResetPolicy
    sinks: list[Sink]

    def new_slicer(self) -> Slicer:
        return Slicer(**self.config.slicing.model_dump())


def _options(cfg: Any) -> dict[str, Any]:
    return cfg.model_dump(exclude={"type"})


def build_pipeline(cfg: PipelineConfig, origin: str = "pipeline") -> Pipeline:
    """Instantiate source, model, operator, encoder, policies and sinks of ``cfg``.

    Mismatches between parts (an event encoder on a frame source, a sensor the model was not
    trained for...) raise ``ConfigError`` naming the fields involved; what was already opened (a
    bound socket, a sink's file) is closed again.
    """
    source = open_source(cfg, origin)
    try:
        return _build_around(cfg, source, origin)
    except BaseException:
        source.close()
        raise


def open_source(cfg: PipelineConfig, origin: str = "pipeline") -> Source:
    """The source of ``cfg``, paced as ``runtime.realtime`` says."""
    try:
        source = make_source(cfg.source.type, **_options(cfg.source))
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{origin}: source: {err}") from None
    source.realtime = cfg.runtime.realtime
    return source


def _build_around(cfg: PipelineConfig, source: Source, origin: str) -> Pipeline:
    """The parts that take ``source``'s data, checked against it."""
    try:
        model = load_checkpoint(cfg.model.weights)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"{origin}: model.weights: {err}") from None
    shape = model.input_shape

    enc = cfg.encoder
    allowed = EVENT_ENCODERS if source.kind == "events" else FRAME_ENCODERS
    if enc.type not in allowed:
        raise ConfigError(
            f"{origin}: encoder.type: '{enc.type}' does not fit source '{cfg.source.type}', which "
            f"gives {source.kind}; use one of {', '.join(allowed)}"
        )
    if source.kind == "frames" and cfg.slicing.n_time_bins is None:
        raise ConfigError(f"{origin}: slicing: frame sources take n_time_bins (steps per frame)")
    for key in ("n_time_bins", "n_event_bins"):
        if getattr(cfg.slicing, key) is not None and not source.segmented:
            raise ConfigError(
                f"{origin}: slicing.{key} needs sample boundaries; source '{cfg.source.type}' is one "
                "continuous stream (use time_window_us or event_count)"
            )
    if enc.size is not None and enc.type not in EVENT_ENCODERS:
        raise ConfigError(
            f"{origin}: encoder.size resizes binned events; '{enc.type}' takes frames as they are"
        )
    options: dict[str, Any] = {}
    if enc.type == "event_rate":
        options["rate_unit_us"] = enc.rate_unit_us or float(model.input.get("rate_unit_us", 10_000.0))
    if enc.type == "poisson":
        options["seed"] = enc.seed
    if enc.type in EVENT_ENCODERS:
        options["size"] = enc.size
        options["antialias"] = bool(model.input.get("antialias", False))  # as the model was trained
    sensor_shape = tuple(source.sensor.shape)
    encoder = make_encoder(enc.type, sensor_shape, **options)
    out_shape = tuple(getattr(encoder, "out_shape", sensor_shape))
    if out_shape != tuple(shape):
        resized = f" resized to {'×'.join(map(str, out_shape))}" if out_shape != sensor_shape else ""
        raise ConfigError(
            f"{origin}: model.weights: {model.path.name} expects input {'×'.join(map(str, shape))} but "
            f"source '{cfg.source.type}' gives {'×'.join(map(str, sensor_shape))}{resized}"
        )

    if cfg.source.type == "streams" and cfg.executor == "local" and len(source) > cfg.runtime.batch_size:
        raise ConfigError(
            f"{origin}: runtime.batch_size: {cfg.runtime.batch_size} operator slots for {len(source)} "
            "streams: one slot per stream (or executor: ray, a group of streams per worker)"
        )
    if cfg.runtime.chunk > 1 and (source.live or cfg.runtime.realtime):
        raise ConfigError(
            f"{origin}: runtime.chunk: {cfg.runtime.chunk} steps per call needs an offline replay with "
            f"realtime: false (source '{cfg.source.type}' is {'live' if source.live else 'paced'})"
        )
    dtype = torch.float64 if cfg.model.dtype == "float64" else torch.float32
    # with executor: ray this process only checks the pipeline (a cluster's head may have no
    # GPU); the workers build it on model.device
    device = cfg.model.device if cfg.executor == "local" else "cpu"
    try:
        operator = SNNOperator(
            model.snn(cfg.model.conversion, cfg.model.v0, dtype),
            cfg.runtime.batch_size,
            device,
            dtype,
            count_operations=cfg.runtime.count_operations,
            analog_input=cfg.encoder.type != "poisson",
            channels_last=cfg.runtime.channels_last,
        )
    except (RuntimeError, AssertionError) as err:
        raise ConfigError(f"{origin}: model.device: cannot use '{cfg.model.device}': {err}") from None

    if getattr(cfg.policy.exit, "type", "") == "oracle" and (source.live or not source.labels):
        raise ConfigError(
            f"{origin}: policy.exit: the oracle exits at the first correct prediction, so it needs labels; "
            f"source '{cfg.source.type}' is live or unlabelled (use it on a labelled offline replay)"
        )
    try:
        exit_policy = make_exit_policy(cfg.policy.exit.type, **_options(cfg.policy.exit))
    except ValueError as err:
        raise ConfigError(f"{origin}: policy.exit: {err}") from None
    reset = cfg.policy.reset
    reset_policy = (
        make_reset_policy(reset)
        if isinstance(reset, str)
        else make_reset_policy(reset.type, **_options(reset))
    )
    if source.kind != "events" and any(s.type == "record" for s in cfg.sinks):
        raise ConfigError(f"{origin}: sinks: 'record' writes events; source '{cfg.source.type}' gives frames")
    sinks: list[Sink] = []
    try:
        for i, s in enumerate(cfg.sinks):
            try:
                sinks.append(make_sink(s.type, **_options(s)))
            except OSError as err:
                raise ConfigError(f"{origin}: sinks[{i}] ({s.type}): {err}") from None
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return Pipeline(cfg, source, model, operator, encoder, exit_policy, reset_policy, sinks)
