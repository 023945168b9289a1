"""Command line: ``streamsnn run | config | subscribe | dashboard | train | calibrate | evaluate | convert |
export | send | sensors``."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamsnn.options import ConfigError

if TYPE_CHECKING:
    from streamsnn.config import PipelineConfig


def _overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides, with ``--executor`` and ``--ray-address`` as theirs."""
    overrides = list(args.set or [])
    if args.executor:
        overrides.append(f"executor={args.executor}")
    if args.ray_address:
        overrides.append(f"ray.address={args.ray_address}")
    return overrides


def _run(args: argparse.Namespace) -> int:
    """``streamsnn run``. SIGINT and SIGTERM stop it as ``runtime/stopping.py`` says: during
    start-up nothing is written; once the run started, the sinks get every prediction made and
    the report is written. Exit status: 0; 1 when a sink, the per-sample file or the report
    could not be written (the others still are); 2 for a config error; else, when stopped by a
    signal, 128 + its number (130 Ctrl-C, 143 SIGTERM)."""
    try:
        from streamsnn.runtime import run_pipeline, stopping  # the package imports torch: most of start-up
        from streamsnn.runtime.report import samples_path
    except KeyboardInterrupt:
        print("streamsnn: interrupted while starting: nothing ran, no report written", file=sys.stderr)
        return 130
    # the command line's own process ignores late signals on its way out; a caller's keeps its handlers
    with stopping.stop_signals(restore=not args.program), stopping.deferred():
        try:
            with stopping.interruptible():
                pipe, report_path = _start_pipeline(args)
            # a stream run writes its outcomes as it goes (bounded memory): beside the report
            result = run_pipeline(pipe, samples_path(report_path) if report_path else None)
        except KeyboardInterrupt:
            print(
                f"streamsnn: {stopping.signal_name()} while starting: nothing ran, no report written",
                file=sys.stderr,
            )
            return stopping.exit_code()
        return _finish_run(result, report_path, stopping.exit_code())


def _start_pipeline(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The pipeline of ``streamsnn run``, loaded and built, and its report path."""
    from streamsnn.config import load_pipeline
    from streamsnn.runtime import build_pipeline

    overrides = _overrides(args)
    if args.no_progress:
        overrides.append("runtime.progress=false")
    cfg = load_pipeline(args.pipeline, overrides)
    if args.output:
        cfg = _with_output(cfg, args.output)
    if args.resume:
        cfg = _resuming(cfg)
    report_path = args.report or cfg.report.path
    pipe = build_pipeline(cfg, origin=str(args.pipeline))
    print(f"streamsnn: running {cfg.name} ({args.pipeline})", file=sys.stderr)
    for sink in pipe.sinks:
        if sink.endpoint:
            print(f"streamsnn: publishing predictions on {sink.endpoint}", file=sys.stderr)
    return pipe, report_path


def _resuming(cfg: PipelineConfig) -> PipelineConfig:
    """``--resume``: every jsonl sink continues its file (the replay skips the samples they hold)."""
    if cfg.executor != "local":
        raise ConfigError("--resume: a resumed replay runs on the local executor (not --executor ray)")
    for i, s in enumerate(cfg.sinks):
        if s.type == "record":
            raise ConfigError(
                f"--resume: sinks[{i}] (record) would write its file anew, without the held samples"
            )
    sinks = [s.model_copy(update={"resume": True}) if s.type == "jsonl" else s for s in cfg.sinks]
    if not any(s.type == "jsonl" for s in sinks):
        raise ConfigError("--resume: continues the file of a jsonl sink (or --output); the pipeline has none")
    return cfg.model_copy(update={"sinks": sinks})


def _finish_run(result: Any, report_path: str | None, stopped_code: int) -> int:
    """The table, the report files and the exit status of a run that returned."""
    from streamsnn.runtime.report import report_table, write_report

    report = result.report
    print(report_table(report))
    if report.get("interrupted"):
        print("interrupted: report covers the samples finished so far", file=sys.stderr)
    failed = [f"error: {error}" for error in report.get("sink_errors", [])]
    if report.get("samples_file_error"):  # a stream run's per-sample file, written as it went
        failed.append(f"error: per-sample file: {report['samples_file_error']}")
    if report_path:
        try:
            for path in write_report(report, result.outcomes, report_path):
                print(f"wrote {path}", file=sys.stderr)
        except OSError as err:
            failed.append(f"error: report: {err}")
    for line in failed:
        print(line, file=sys.stderr)
    if failed:
        return 1
    return stopped_code if report.get("interrupted") else 0


def _with_output(cfg: PipelineConfig, path: str) -> PipelineConfig:
    """``run --output PATH``: the pipeline's JSONL sink writes to PATH instead (its other options
    kept), or, without one, a JSONL sink of every prediction is added; never a second file."""
    from streamsnn.sinks import JsonlSinkConfig

    jsonl = [i for i, s in enumerate(cfg.sinks) if isinstance(s, JsonlSinkConfig)]
    if len(jsonl) > 1:
        raise ConfigError(
            f"--output: the pipeline has {len(jsonl)} jsonl sinks "
            f"({', '.join(f'sinks.{i}' for i in jsonl)}); give each its path with --set sinks.N.path=FILE"
        )
    sinks = list(cfg.sinks)
    if jsonl:
        sinks[jsonl[0]] = sinks[jsonl[0]].model_copy(update={"path": path})
    else:
        sinks.append(JsonlSinkConfig(path=path))
    return cfg.model_copy(update={"sinks": sinks})


def _train(args: argparse.Namespace) -> int:
    from streamsnn.config import load_train_config
    from streamsnn.lab.train import default_output, format_comparison, train

    overrides = list(args.set or [])
    if args.device:
        overrides.append(f"train.device={args.device}")
    if args.amp:
        overrides.append("train.amp=true")
    cfg = load_train_config(args.config, overrides)
    output = Path(args.output or cfg.output or default_output(args.config))
    try:
        result = train(cfg, output=output, progress=not args.no_progress)
    except ConfigError as err:
        raise ConfigError(f"{args.config}: {err}") from None
    print(json.dumps(result, indent=2))
    if "compared_with" in result:
        print(format_comparison(result["compared_with"]), file=sys.stderr)
    print(f"wrote {output}", file=sys.stderr)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from streamsnn.lab.table import conversion_table, format_table
    from streamsnn.snn.checkpoint import load_checkpoint

    if args.weights.endswith(".nir") or _nir_given(args):
        return _convert_nir(args)
    try:
        model = load_checkpoint(args.weights)
        steps = sorted({int(t) for t in args.steps.split(",")})
        methods = args.methods.split(",")
        phases = {k: int(v) for k, v in (p.split("=") for p in args.scale.split(","))} if args.scale else None
        table = conversion_table(
            model,
            methods,
            steps,
            args.split,
            args.v0,
            phases,
            args.scale_v0,
            args.scale_objective,
            progress=not args.no_progress,
        )
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(str(err)) from None
    print(f"{model.path.name} on the digits {args.split} split, direct input, V0 = {args.v0}·θ")
    print(format_table(table))
    return 0


def _nir_options(conv: argparse.ArgumentParser) -> None:
    """``convert``'s options for a NIR graph: one flag per field of ``model.nir`` (``NirOptions``),
    with its choices and description."""
    from typing import Literal, get_args, get_origin

    from streamsnn.interop.nir_import import NirOptions

    group = conv.add_argument_group("a NIR graph (WEIGHTS.nir): import it and write a checkpoint")
    for name, field in NirOptions.model_fields.items():
        flag, kind = "--" + name.replace("_", "-"), field.annotation
        if get_origin(kind) is Literal:
            group.add_argument(
                flag, choices=list(get_args(kind)), help=f"{field.description} (default {field.default})"
            )
        elif name == "input_shape":
            group.add_argument(flag, help=f"{field.description} (as C,H,W)")
        else:
            group.add_argument(flag, type=float, help=field.description)
    group.add_argument("-o", "--output", help="the checkpoint to write (.pt)")


def _nir_given(args: argparse.Namespace) -> dict[str, Any]:
    """The ``NirOptions`` fields given as flags (and ``output``)."""
    from streamsnn.interop.nir_import import NirOptions

    names = [*NirOptions.model_fields, "output"]
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _convert_nir(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from streamsnn.interop.nir_import import NirOptions, convert_nir
    from streamsnn.runtime.report import discretisation_line

    given = _nir_given(args)
    if not args.weights.endswith(".nir"):
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise ConfigError(f"{flags}: import a NIR graph (a .nir file), not {args.weights}")
    if not args.output:
        raise ConfigError(f"convert {args.weights}: give the checkpoint to write with -o OUT.pt")
    given.pop("output")
    try:
        if "input_shape" in given:
            given["input_shape"] = [int(n) for n in given["input_shape"].split(",")]
        options = NirOptions(**given)
    except (ValueError, ValidationError) as err:
        raise ConfigError(f"--dt/--input-shape: {err}") from None
    try:
        model = convert_nir(args.weights, args.output, options)
    except (OSError, ValueError) as err:
        raise ConfigError(str(err)) from None
    net, d = model.snn(), model.discretisation or {}
    shape = "×".join(map(str, net.input_shape))
    print(
        f"{args.weights} → {args.output}: {len(net.neurons)} neuron layers, input {shape}, {net.n_classes} "
        f"outputs (read-out: {net.readout}); {discretisation_line(d)}"
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from streamsnn.config import load_pipeline
    from streamsnn.lab.calibrate import calibrate, format_calibration, write_calibration

    cfg = load_pipeline(args.pipeline, _overrides(args))
    if args.live:
        return _calibrate_gate(args, cfg)
    try:
        cal, scan, _ = calibrate(
            cfg,
            args.split,
            args.resolution,
            args.tolerance,
            args.alpha,
            not args.no_temperature,
            progress=not args.no_progress,
            target_saving=args.target_saving,
        )
    except ValueError as err:
        raise ConfigError(f"{args.pipeline}: {err}") from None
    written = write_calibration(cal, scan, Path(args.output or cfg.run_dir / "calibration.json"))
    print(format_calibration(cal, scan))
    print(f"wrote {' and '.join(map(str, written))}", file=sys.stderr)
    return 0


def _calibrate_gate(args: argparse.Namespace, cfg: Any) -> int:
    from streamsnn.lab.gate_calibration import calibrate_gate, format_gate

    try:
        cal = calibrate_gate(cfg, args.split, progress=not args.no_progress)
    except ValueError as err:
        raise ConfigError(f"{args.pipeline}: {err}") from None
    out = Path(args.output or cfg.run_dir / "gate_calibration.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(cal.as_dict(), indent=2) + "\n")
    print(format_gate(cal))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from streamsnn.config import load_pipeline
    from streamsnn.lab.evaluate import evaluate, format_rows, write_evaluation

    cfg = load_pipeline(args.pipeline, _overrides(args))
    if args.live:
        return _evaluate_live(args, cfg)
    given = [f"--{k.replace('_', '-')}" for k in (*SCENARIO_OPTIONS, "unpaced") if getattr(args, k)]
    if given:
        raise ConfigError(f"{' and '.join(given)}: options of `evaluate --live`")
    cal_path = Path(args.calibration or cfg.run_dir / "calibration.json")
    try:
        ev = evaluate(cfg, args.split, cal_path, args.policy_net, args.target_saving, not args.no_progress)
    except ValueError as err:
        raise ConfigError(f"{args.pipeline}: {err}") from None
    if ev.calibrated:  # chosen on val: the evaluated split never chooses anything
        print(f"no calibration at {cal_path}: calibrated on val and wrote it there", file=sys.stderr)
    print(f"{cfg.name} on {args.split} ({len(ev.data.labels)} samples; thresholds from {cal_path})")
    print(format_rows(ev.rows, ev.summary))
    for path in write_evaluation(ev, Path(args.output_dir or cfg.run_dir / "evaluate")):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _evaluate_live(args: argparse.Namespace, cfg: PipelineConfig) -> int:
    from streamsnn.lab.live import format_live, measure_live, scenario_config, write_live

    offline = [
        f"--{k.replace('_', '-')}" for k in ("calibration", "target_saving", "policy_net") if getattr(args, k)
    ]
    if offline:
        raise ConfigError(
            f"{' and '.join(offline)}: not with --live (the live benchmark runs the pipeline's own policies)"
        )
    scenario = scenario_config(cfg, "evaluate --live", split=args.split, **_scenario_args(args))
    if args.split == "test":
        print("test split: figures for reporting; nothing is chosen here (tune on val)", file=sys.stderr)
    run = measure_live(cfg, scenario, not args.no_progress, args.unpaced, str(args.pipeline))
    print(format_live(run))
    for path in write_live(run, Path(args.output_dir or cfg.run_dir / "evaluate_live")):
        print(f"wrote {path}", file=sys.stderr)
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    import base64
    import logging
    import time

    from streamsnn.prediction import prediction_line
    from streamsnn.subscriber import LagError, Subscriber

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr, force=True)
    try:
        sub = Subscriber(
            args.address,
            topics=args.topic or ["pred."],
            final_only=args.final_only,
            max_lag_s=None if args.max_lag_ms is None else args.max_lag_ms / 1000,
        )
    except ValueError as err:
        raise ConfigError(f"subscribe: {err}") from None
    shown, last = 0, time.monotonic()
    try:
        while args.count is None or shown < args.count:
            msg = sub.receive(timeout_s=0.5)
            if msg is None:
                if args.timeout is not None and time.monotonic() - last >= args.timeout:
                    print(f"no prediction for {args.timeout} s: stopping", file=sys.stderr)
                    break
                continue
            last = time.monotonic()
            if args.json:  # a frame's images as base64
                data = {
                    k: base64.b64encode(v).decode() if type(v) is bytes else v for k, v in msg.data.items()
                }
                print(json.dumps({**data, "topic": msg.topic, "gap": msg.gap, "lag_ms": msg.lag_s * 1e3}))
            elif msg.kind == "frame":
                f = msg.data
                span_ms = (f["t_end_us"] - f["t_start_us"]) / 1e3
                print(
                    f"{f['stream']} frame: {f['events']} events in {span_ms:.1f} ms, "
                    f"{f['width']}×{f['height']} (blocks of {f['scale']}×{f['scale']} pixels)"
                )
            elif msg.kind == "summary":
                report = msg.data.get("report") or {}
                unit = "decisions" if report.get("stream_run") else "samples"
                print(
                    f"summary from {msg.data['publisher']}: {msg.data['published']} messages published, "
                    f"{report.get('samples', '-')} {unit}, accuracy {report.get('accuracy', '-')}"
                )
            else:
                print(prediction_line(msg.data, f"  lag {msg.lag_s * 1e3:6.2f} ms"))
            sys.stdout.flush()
            if msg.kind == "summary" and not args.keep_going:
                break
            shown += msg.kind == "prediction"
    except (KeyboardInterrupt, LagError) as err:
        if isinstance(err, LagError):
            print(f"error: {err}", file=sys.stderr)
    finally:
        sub.close()
    counts = ", ".join(f"{k} {v}" for k, v in sub.stats.items() if v)
    print(f"received: {counts or 'nothing'}", file=sys.stderr)
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    """Serve the live dashboard of the zmq feed at ``args.address`` until interrupted."""
    import logging

    try:
        from streamsnn.dashboard.server import serve
    except ImportError as err:  # the dashboard extra is not installed
        raise ConfigError(f"dashboard: {err.name} is missing: pip install 'streamsnn[dashboard]'") from None
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr, force=True)

    def ready(url: str) -> None:
        print(f"dashboard of {args.address} on {url} (Ctrl-C stops)", file=sys.stderr, flush=True)

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"dashboard: --port {args.port} is not in 0..65535")
    try:
        serve(args.address, args.host, args.port, on_ready=ready)
    except ValueError as err:
        raise ConfigError(f"dashboard: {err}") from None
    except OSError as err:
        raise ConfigError(f"dashboard: {err}") from None
    except KeyboardInterrupt:
        pass
    return 0


def _sensors(args: argparse.Namespace) -> int:
    from streamsnn.events import list_sensors

    sensors = list_sensors()
    width = max(len(n) for n in sensors) if sensors else 4
    print(f"{'name':<{width}}  {'W×H':>9}  P  format     description")
    for name, s in sorted(sensors.items()):
        size = f"{s.width}×{s.height}"
        print(f"{name:<{width}}  {size:>9}  {s.polarities}  {s.file_format:<9}  {s.description}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from streamsnn.config import describe

    print(describe(args.section or ""))
    return 0


PIPELINE_OPTIONS = "pipeline.yaml's sections and options: `streamsnn config [SECTION[.TYPE]]`"
# options of the digits_dvs source that choose a live scenario (`streamsnn config source.digits_dvs`)
SCENARIO_OPTIONS = ("scenario", "offset", "limit", "seed", "gap_max_ms", "empty_s")


def _scenario_options(cmd: argparse.ArgumentParser) -> None:
    """``--scenario``, ``--offset``... : the digits_dvs source options of a live scenario, taken
    as written and validated by the source's options (described by `streamsnn config`)."""
    for name in SCENARIO_OPTIONS:
        cmd.add_argument(
            f"--{name.replace('_', '-')}",
            metavar=name.upper(),
            help=f"live scenario: the digits_dvs option {name} (`streamsnn config source.digits_dvs`)",
        )


def _scenario_args(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in SCENARIO_OPTIONS}


def _config_command(sub: Any, name: str, help_text: str, positional: str) -> argparse.ArgumentParser:
    """A sub-command that takes a YAML file, ``--set KEY=VALUE`` overrides and ``--no-progress``;
    a pipeline's points to ``streamsnn config``."""
    pipeline = positional == "pipeline"
    cmd = sub.add_parser(name, help=help_text, epilog=PIPELINE_OPTIONS if pipeline else None)
    shipped = "a pipeline.yaml, or builtin:NAME for pipelines/NAME.yaml shipped with streamsnn"
    cmd.add_argument(positional, type=Path, help=shipped if pipeline else None)
    cmd.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field (repeatable)"
        + (", e.g. policy.exit.threshold=0.9" if pipeline else ""),
    )
    cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    return cmd


def _executor_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--executor",
        choices=["local", "ray"],
        help="ray: run on Ray workers (a dataset replay sharded by sample; live streams a group per worker)",
    )
    cmd.add_argument("--ray-address", help="a running Ray cluster (auto, ray://head:10001); else a local one")


def plain(doc: str) -> str:
    """A docstring as help text: a literal in double backticks is shown bare."""
    return re.sub(r"``(.+?)``", r"\1", doc, flags=re.DOTALL)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamsnn", description=plain(__doc__ or ""))
    sub = parser.add_subparsers(dest="command", required=True)

    run = _config_command(sub, "run", "run a pipeline.yaml: source → SNN → policies → sinks", "pipeline")
    run.add_argument(
        "--output",
        help="write the predictions to this JSONL file instead of the jsonl sink's path (without a jsonl "
        "sink: add one, every prediction)",
    )
    run.add_argument("--report", help="write report.json (plus per-sample outcomes and a PNG) here")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue a replay stopped early (kill -9): skip the samples whose final prediction its "
        "jsonl sinks hold, drop the lines of the others, append the rest",
    )
    _executor_options(run)
    run.set_defaults(func=_run)

    conf = sub.add_parser(
        "config",
        help="list pipeline.yaml's sections, or the options of one (type, default, description)",
        description="pipeline.yaml's sections; with SECTION (runtime, sinks, policy.exit...) every option of "
        "it, or of one type of part (sinks.zmq, source.udp, policy.exit.confidence).",
    )
    conf.add_argument(
        "section", nargs="?", metavar="SECTION[.TYPE]", help="e.g. runtime, sinks.zmq, policy.exit"
    )
    conf.set_defaults(func=_config)

    subs = sub.add_parser("subscribe", help="print live predictions from a pipeline's zmq sink")
    subs.add_argument("address", help="the publisher, e.g. tcp://127.0.0.1:5556")
    subs.add_argument(
        "--topic",
        action="append",
        help="topic prefix, e.g. pred.cam0 or frame.cam0 (repeatable; default every stream's predictions)",
    )
    subs.add_argument("--final-only", action="store_true", help="only exit decisions")
    subs.add_argument("--json", action="store_true", help="one JSON object per line")
    subs.add_argument("--count", type=int, help="stop after this many predictions")
    subs.add_argument("--timeout", type=float, help="stop after this many seconds without a message")
    subs.add_argument("--max-lag-ms", type=float, help="warn when further behind the publisher than this")
    subs.add_argument("--keep-going", action="store_true", help="do not stop at the publisher's summary")
    subs.set_defaults(func=_subscribe)

    dash = sub.add_parser("dashboard", help="a live browser dashboard of a pipeline's zmq sink")
    dash.add_argument("address", help="the publisher, e.g. tcp://127.0.0.1:5556")
    dash.add_argument(
        "--host", default="127.0.0.1", help="address to serve the page on (default: loopback only)"
    )
    dash.add_argument("--port", type=int, default=8080, help="port of the page (0: a free one; default 8080)")
    dash.set_defaults(func=_dashboard)

    train = _config_command(sub, "train", "train an ANN for conversion, or an SNN directly", "config")
    train.add_argument(
        "--output", help="checkpoint path (default: the config's output, else runs/train/<config name>.pt)"
    )
    train.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the config's train.device)")
    train.add_argument("--amp", action="store_true", help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    train.set_defaults(func=_train)

    cal = _config_command(
        sub, "calibrate", "choose Dynamic Confidence's threshold on a validation split", "pipeline"
    )
    _executor_options(cal)
    cal.add_argument("--split", default="val", choices=["train", "val"], help="never test")
    cal.add_argument("--resolution", type=float, default=1e-4, help="threshold grid step")
    cal.add_argument(
        "--tolerance", type=float, default=0.0, help="accuracy loss allowed against full T (fraction)"
    )
    cal.add_argument(
        "--target-saving",
        type=float,
        help="choose the most conservative no-loss threshold that still saves this fraction of steps "
        "(default: the paper's lowest mean steps)",
    )
    cal.add_argument("--alpha", type=float, help="α (default: T for QCFS, 2^b − 1 for QFFS)")
    cal.add_argument("--no-temperature", action="store_true", help="skip temperature scaling")
    cal.add_argument("--output", help="calibration file (default: runs/<pipeline name>/calibration.json)")
    cal.add_argument(
        "--live",
        action="store_true",
        help="instead: the live gate's event rate, between background noise and digits in view "
        "(runs/<name>/gate_calibration.json)",
    )
    cal.set_defaults(func=_calibrate)

    ev = _config_command(sub, "evaluate", "compare exit policies on a split: table and plots", "pipeline")
    _executor_options(ev)
    ev.add_argument("--split", default="test", choices=["train", "val", "test"])
    ev.add_argument(
        "--calibration", help="Dynamic Confidence calibration (default: runs/<name>/calibration.json)"
    )
    ev.add_argument(
        "--target-saving", type=float, help="when calibrating first: see `calibrate --target-saving`"
    )
    ev.add_argument(
        "--policy-net", help="SEENN-II policy network (`streamsnn train`, train.method: policy) for its row"
    )
    ev.add_argument(
        "--output-dir",
        help="where table, JSON and plots go (default: runs/<name>/evaluate, or evaluate_live)",
    )
    ev.add_argument(
        "--live",
        action="store_true",
        help="the live benchmark: a digits-dvs scenario of --split played through the pipeline, its "
        "decisions scored against its timeline (a udp source gets it over its socket in real time)",
    )
    ev.add_argument(
        "--unpaced",
        action="store_true",
        help="--live with a udp source: play it in place of the socket, unpaced",
    )
    _scenario_options(ev)
    ev.set_defaults(func=_evaluate)

    conv = sub.add_parser(
        "convert",
        help="convert a checkpoint to an SNN and print the conversion table, or import a NIR graph (.nir)",
    )
    conv.add_argument("weights", help="checkpoint path or builtin:NAME, or a NIR graph (.nir)")
    conv.add_argument("--methods", default="qcfs,qffs", help="comma-separated: qcfs, qffs, data_norm")
    conv.add_argument("--steps", default="1,2,4,8,16,32", help="comma-separated T values")
    conv.add_argument("--split", default="test", choices=["train", "val", "test"])
    conv.add_argument("--v0", type=float, default=0.5, help="initial membrane as a fraction of θ")
    conv.add_argument(
        "--scale",
        metavar="PHASE=EVALS,...",
        help="also optimise firing-rate scaling with Subplex, e.g. global=20,layer=50,channel=200",
    )
    conv.add_argument("--scale-v0", action="store_true", help="optimise V0 together with the scaling")
    conv.add_argument("--no-progress", action="store_true", help="no stage lines nor progress bar")
    conv.add_argument(
        "--scale-objective",
        default="paper",
        choices=["paper", "sarnn"],
        help="normalisation of the scaling objective: the paper's per step and per reference event "
        "(default), or SaRNN's code (÷ ANN accuracy, raw event counts)",
    )
    _nir_options(conv)
    conv.set_defaults(func=_convert)

    _export_command(sub)

    send = sub.add_parser(
        "send",
        help="stream a recording or a digits-dvs live scenario as SPIF over UDP in real time (a test sender)",
    )
    send.add_argument("recording", nargs="?", help="an event file (.aedat4, .aedat, .dat, .raw, .bin, .npy)")
    send.add_argument("--host", default="127.0.0.1")
    send.add_argument("--port", type=int, default=3333)
    send.add_argument("--speed", type=float, default=1.0, help="sensor seconds per wall second")
    send.add_argument("--no-realtime", action="store_true", help="send as fast as possible")
    send.add_argument(
        "--split", choices=["train", "val", "test"], help="with --scenario: the split (default test)"
    )
    send.add_argument(
        "--timeline",
        help="with --scenario: write its timeline (JSON, µs from the scenario's start) here first",
    )
    _scenario_options(send)
    send.set_defaults(func=_send)

    sensors = sub.add_parser("sensors", help="list the sensor profiles")
    sensors.set_defaults(func=_sensors)
    return parser


# -- export: a checkpoint's SNN as a NIR file, with the fidelity report -------------------------------
def _export_command(sub: Any) -> None:
    cmd = sub.add_parser(
        "export",
        help="write a checkpoint's SNN as a NIR graph: lossy items, fidelity against a reader, target check",
    )
    cmd.add_argument("model", help="checkpoint path or builtin:NAME")
    cmd.add_argument("--to", required=True, choices=["nir"], help="the format (nir)")
    cmd.add_argument("out", help="the NIR file to write (HDF5, .nir)")
    cmd.add_argument(
        "--lossy", action="store_true", help="write the export even if NIR cannot express it exactly"
    )
    cmd.add_argument("--target", choices=["speck"], help="also check a chip's published constraints")
    cmd.add_argument(
        "--samples", type=int, default=100, help="digits test samples for the fidelity report (0: none)"
    )
    cmd.add_argument("--steps", type=int, help="steps per sample (default 16 for frames, 15 for events)")
    cmd.add_argument(
        "--conversion", default="qcfs", choices=["qcfs", "qffs"], help="for converted checkpoints"
    )
    cmd.add_argument("--v0", type=float, default=0.5, help="initial membrane as a fraction of θ")
    cmd.add_argument(
        "--pooling", default="sum", choices=["sum", "avg"], help="sum: SumPool2d with 1/k² in the next layer"
    )
    cmd.add_argument(
        "--readout",
        default="per_step",
        choices=["per_step", "integrator"],
        help="per_step: the last layer per step (metadata readout: sum); integrator: a nir.I sums it",
    )
    cmd.add_argument(
        "--readers",
        default="streamsnn,streamsnn-nir,streamsnn-subtract,sinabs",
        help="comma-separated NIR readers for the fidelity report: streamsnn (the streamsnn_* metadata "
        "honoured: exact), streamsnn-nir (NIR's rules), streamsnn-subtract (NIR's with a subtractive reset), "
        "sinabs",
    )
    cmd.add_argument("--report", help="the fidelity report's JSON (default: OUT with suffix .fidelity.json)")
    cmd.add_argument("--no-progress", action="store_true", help="no stage lines")
    cmd.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from streamsnn.lab.export import export_model, format_fidelity

    if args.samples < 0 or (args.steps is not None and args.steps < 1) or not 0 <= args.v0 <= 1:
        raise ConfigError(
            f"--samples {args.samples}, --steps {args.steps}, --v0 {args.v0}: samples ≥ 0, steps ≥ 1, "
            "0 ≤ v0 ≤ 1"
        )
    try:
        result = export_model(
            args.model,
            Path(args.out),
            allow_lossy=args.lossy,
            target=args.target,
            samples=args.samples,
            steps=args.steps,
            readers=tuple(r.strip() for r in args.readers.split(",") if r.strip()),
            conversion=args.conversion,
            v0=args.v0,
            pooling=args.pooling,
            readout=args.readout,
            report=Path(args.report) if args.report else None,
            progress=not args.no_progress,
        )
    except (OSError, ValueError) as err:
        raise ConfigError(str(err)) from None
    print(f"{args.model} → {args.out} (NIR)")
    print(f"lossy items ({len(result.lossy)}):" if result.lossy else "lossy items: none")
    print("".join(f"  {line}\n" for line in result.lossy + [f"note: {n}" for n in result.notes]), end="")
    print(format_fidelity(result.fidelity))
    if result.target:
        print(f"target {result.target}: fits ({len(result.findings)} notes)")
        print("".join(f"  {line}\n" for line in result.findings), end="")
    return 0


def _send(args: argparse.Namespace) -> int:
    from streamsnn.sources.recordings import RecordingError, read_events
    from streamsnn.sources.udp import send_address, send_events

    scenario = {k: v for k, v in _scenario_args(args).items() if v is not None}
    if args.recording is not None and (scenario or args.split or args.timeline):
        raise ConfigError("send: a recording or a scenario (--scenario, --split, --timeline...), not both")
    if args.recording is None and not (scenario or args.split):
        raise ConfigError("send: give a recording, or a live scenario (--scenario ...)")
    try:  # before a recording is read or a scenario made
        send_address(args.host, args.port)
    except ValueError as err:
        raise ConfigError(f"send: {err}") from None
    if args.recording is None:
        return _send_scenario(args, scenario)
    try:
        events = read_events(args.recording)
    except (OSError, RecordingError) as err:
        raise ConfigError(str(err)) from None
    with _sending(args, f"send: {args.recording}"):
        sent = send_events(events, args.host, args.port, realtime=not args.no_realtime, speed=args.speed)
    print(f"sent {sent:,} events to {args.host}:{args.port}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _sending(args: argparse.Namespace, what: str) -> Iterator[None]:
    """A send's errors as ``error:`` lines: events it cannot carry (``what``: …), a socket error."""
    try:
        yield
    except ValueError as err:
        raise ConfigError(f"{what}: {err}") from None
    except OSError as err:
        raise ConfigError(f"send: cannot send to {args.host}:{args.port}: {err.strerror or err}") from None


def _send_scenario(args: argparse.Namespace, options: dict[str, Any]) -> int:
    from streamsnn.lab.live import scenario_config, send_scenario, write_timeline
    from streamsnn.sources import DigitsDVS

    played = DigitsDVS(scenario_config(None, "send", split=args.split or "test", **options))
    if args.timeline:
        print(f"wrote {write_timeline(played, Path(args.timeline))}", file=sys.stderr)
    with _sending(args, "send"):
        sent = send_scenario(played, args.host, args.port, realtime=not args.no_realtime, speed=args.speed)
    print(f"sent {sent:,} events of scenario {played.scenario} to {args.host}:{args.port}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line (``argv``: ``sys.argv[1:]``, the program's own, when None)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    args = make_parser().parse_args(argv)
    args.program = argv is None
    try:
        with logging_redirect_tqdm():  # warnings on lines of their own, above the progress bars
            return int(args.func(args))
    except (ConfigError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
