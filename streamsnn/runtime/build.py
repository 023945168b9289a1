"""Build the parts of a pipeline from its validated config, checking that they fit together.

Every part is made one way: its options (a section of the config) → its kind's registry → the
part; the checks read the parts' declared capabilities (what an encoder takes, whether an exit
policy needs labels, whether a sink needs events), never their names."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamsnn.config import ConfigError, ModelConfig, PipelineConfig
from streamsnn.encoding import ENCODERS, Encoder
from streamsnn.interop.nir_import import NirOptions, import_nir
from streamsnn.policies import EXIT_POLICIES, GATES, RESET_POLICIES, ExitPolicy, Gate, ResetPolicy
from streamsnn.sinks import SINKS, Sink
from streamsnn.slicing import Slicer
from streamsnn.snn.checkpoint import LoadedModel, load_checkpoint
from streamsnn.snn.operator import SNNOperator
from streamsnn.sources import SOURCES, Source


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
    gate: Gate
    sinks: list[Sink]

    def new_slicer(self) -> Slicer:
        return Slicer(self.config.slicing)


def load_model(cfg: ModelConfig) -> LoadedModel:
    """The model of ``model.weights``: a checkpoint (path or ``builtin:NAME``), or a NIR graph
    (``.nir``) imported with ``model.nir``'s discretisation."""
    if cfg.weights.endswith(".nir"):
        return import_nir(cfg.weights, cfg.nir)
    return load_checkpoint(cfg.weights)


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
    """The source of ``cfg``, paced as ``runtime.realtime`` says. A replay of whole samples that
    selects none is an error naming the selection (there would be nothing to decide)."""
    try:
        source = SOURCES.build(cfg.source)
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{origin}: source: {err}") from None
    if source.segmented and not source.live and len(source) == 0:
        source.close()
        given = {k: getattr(cfg.source, k) for k in ("split", "offset", "limit") if hasattr(cfg.source, k)}
        chosen = ", ".join(f"{k}: {'null' if v is None else v}" for k, v in given.items())
        hint = "; is source.offset past the split's end?" if given.get("offset") else ""
        raise ConfigError(
            f"{origin}: source: {cfg.source.type} selects 0 samples to replay ({chosen or 'nothing found'}): "
            f"nothing to decide{hint}"
        )
    source.realtime = cfg.runtime.realtime
    return source


def _build_around(cfg: PipelineConfig, source: Source, origin: str) -> Pipeline:
    """The parts that take ``source``'s data, checked against it."""
    if not cfg.model.weights.endswith(".nir") and cfg.model.nir != NirOptions():
        raise ConfigError(
            f"{origin}: model.nir: imports a NIR graph (a .nir model.weights); {cfg.model.weights} is a "
            "checkpoint, whose discretisation (if imported) is fixed in it"
        )
    try:
        model = load_model(cfg.model)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"{origin}: model.weights: {err}") from None
    shape = model.input_shape

    enc = cfg.encoder
    if ENCODERS.plugin(enc.type).takes != source.kind:
        fitting = [name for name in ENCODERS.names if ENCODERS.plugin(name).takes == source.kind]
        raise ConfigError(
            f"{origin}: encoder.type: '{enc.type}' does not fit source '{cfg.source.type}', which "
            f"gives {source.kind}; use one of {', '.join(fitting)}"
        )
    if source.kind == "frames" and cfg.slicing.n_time_bins is None:
        raise ConfigError(f"{origin}: slicing: frame sources take n_time_bins (steps per frame)")
    for key in ("n_time_bins", "n_event_bins"):
        if getattr(cfg.slicing, key) is not None and not source.segmented:
            raise ConfigError(
                f"{origin}: slicing.{key} needs sample boundaries; source '{cfg.source.type}' is one "
                "continuous stream (use time_window_us or event_count)"
            )
    sensor_shape = tuple(source.sensor.shape)
    encoder = ENCODERS.build(enc, sensor_shape, model.input)
    out_shape = tuple(encoder.out_shape)
    if out_shape != tuple(shape):
        resized = f" resized to {'×'.join(map(str, out_shape))}" if out_shape != sensor_shape else ""
        raise ConfigError(
            f"{origin}: model.weights: {model.path.name} expects input {'×'.join(map(str, shape))} but "
            f"source '{cfg.source.type}' gives {'×'.join(map(str, sensor_shape))}{resized}"
        )

    reset_policy = RESET_POLICIES.build(cfg.policy.reset)
    hypotheses = reset_policy.hypotheses if not source.segmented else 1
    slots = source.parallel_streams * hypotheses
    if cfg.executor == "local" and slots > cfg.runtime.batch_size:
        per_stream = f" × {hypotheses} hypotheses (policy.reset)" if hypotheses > 1 else ""
        raise ConfigError(
            f"{origin}: runtime.batch_size: {cfg.runtime.batch_size} operator slots for "
            f"{source.parallel_streams} streams{per_stream}: one slot per stream and hypothesis (or "
            "executor: ray, a group of streams per worker)"
        )
    if cfg.runtime.chunk > 1 and (not source.segmented or cfg.runtime.realtime):
        what = "a continuous stream, decided slice by slice" if not source.segmented else "paced"
        raise ConfigError(
            f"{origin}: runtime.chunk: {cfg.runtime.chunk} steps per call needs an offline replay of whole "
            f"samples with realtime: false (source '{cfg.source.type}' is {what})"
        )
    gate = GATES.build(cfg.policy.gate)
    if gate.needs_events and source.kind != "events":
        raise ConfigError(
            f"{origin}: policy.gate: '{cfg.policy.gate.type}' counts events; source '{cfg.source.type}' "
            f"gives {source.kind}"
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
            analog_input=not encoder.spikes,
            channels_last=cfg.runtime.channels_last,
        )
    except (RuntimeError, AssertionError) as err:
        raise ConfigError(f"{origin}: model.device: cannot use '{cfg.model.device}': {err}") from None
    if operator.net.readout == "current" and cfg.model.alpha == "t":
        raise ConfigError(
            f"{origin}: model.alpha: t divides a summed read-out by the steps; {model.path.name} reads out "
            "the current membrane of its last layer (a leaky integrator): give a number"
        )

    exit_cfg = cfg.policy.exit
    if EXIT_POLICIES.plugin(exit_cfg.type).needs_labels and (source.live or not source.labels):
        raise ConfigError(
            f"{origin}: policy.exit: '{exit_cfg.type}' needs labels; source '{cfg.source.type}' is live or "
            "unlabelled (use it on a labelled offline replay)"
        )
    try:
        exit_policy = EXIT_POLICIES.build(exit_cfg)
    except ValueError as err:
        raise ConfigError(f"{origin}: policy.exit: {err}") from None
    for i, s in enumerate(cfg.sinks):
        if SINKS.plugin(s.type).needs_events and source.kind != "events":
            raise ConfigError(
                f"{origin}: sinks[{i}] ({s.type}): writes events; source '{cfg.source.type}' gives "
                f"{source.kind}"
            )
    sinks: list[Sink] = []
    try:
        for i, s in enumerate(cfg.sinks):
            try:
                sinks.append(SINKS.build(s))
                sinks[-1].live = source.live
            except OSError as err:
                raise ConfigError(f"{origin}: sinks[{i}] ({s.type}): {err}") from None
    except BaseException:
        for sink in sinks:
            sink.close()
        raise
    return Pipeline(cfg, source, model, operator, encoder, exit_policy, reset_policy, gate, sinks)
