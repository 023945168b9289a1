import json
import os
import signal
import subprocess
import sys
import time

import pytest

CLI = [sys.executable, "-m", "streamsnn.cli"]


def cli(*args, cwd, timeout=300):
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def run_args(preds, report, *overrides):
    sets = [arg for o in (*overrides, "sinks=[]") for arg in ("--set", o)]
    outputs = ["--output", str(preds), "--report", str(report), "--no-progress"]
    return ["pipelines/digits_dvs.yaml", *sets, *outputs]


def test_sensors_lists_the_profiles(root):
    out = cli("sensors", cwd=root)
    assert out.returncode == 0
    for name in ("nmnist", "dvs128", "cifar10dvs", "davis240", "davis346", "prophesee_gen4"):
        assert name in out.stdout
    assert "1280×720" in out.stdout and "346×260" in out.stdout


def test_config_prints_sections_and_options(root):
    out = cli("config", cwd=root)
    assert out.returncode == 0
    for section in ("source:", "slicing:", "encoder:", "model:", "policy:", "runtime:", "sinks:", "ray:"):
        assert f"\n  {section}" in out.stdout
    assert "streamsnn config SECTION[.TYPE]" in out.stdout
    zmq = cli("config", "sinks.zmq", cwd=root).stdout
    assert zmq.startswith("sinks.zmq (type: zmq): Live predictions over ZeroMQ")
    assert "  address: str = tcp://127.0.0.1:5556\n      where to bind" in zmq
    assert "  hwm: int ≥ 0 = 10000\n" in zmq and "  top_k: int > 0 | null = null\n" in zmq
    exits = cli("config", "policy.exit", cwd=root).stdout
    assert exits.startswith("policy.exit: one of: confidence, deadline, dynamic_confidence, fixed, oracle")
    assert "policy.exit.fixed (type: fixed)" in exits and "  steps: int > 0 (required)" in exits
    assert "  threshold: float > 0, ≤ 1 = 0.9\n      final when the score is strictly above this" in exits
    runtime = cli("config", "runtime", cwd=root).stdout
    assert "  batch_size: int > 0 = 32\n" in runtime and "  channels_last: bool = true\n" in runtime
    members = cli("config", "source.streams", cwd=root).stdout
    assert "sources: list, each one of: camera, digits_dvs, recording, udp, webcam (at least 1)" in members


def test_config_names_what_exists_for_an_unknown_name(root):
    out = cli("config", "sinks.kafka", cwd=root)
    assert out.returncode == 2
    assert "error: sinks has no type 'kafka'; known: console, jsonl, record, zmq" in out.stderr
    out = cli("config", "runtim", cwd=root)
    assert out.returncode == 2 and "pipeline.yaml has no section 'runtim'; known: name, source" in out.stderr
    out = cli("config", "runtime.turbo", cwd=root)
    assert "runtime has no option 'turbo'; known: batch_size" in out.stderr
    run_help = cli("run", "--help", cwd=root).stdout
    assert "streamsnn config [SECTION[.TYPE]]" in run_help


def test_run_writes_predictions_report_and_plot(root, tmp_path):
    preds, report = tmp_path / "p.jsonl", tmp_path / "r" / "report.json"
    out = cli("run", *run_args(preds, report, "source.limit=10"), cwd=root)
    assert out.returncode == 0, out.stderr
    assert "accuracy at full T" in out.stdout and "mean steps" in out.stdout
    data = json.loads(report.read_text())
    for key in ("samples", "accuracy", "accuracy_full_T", "mean_steps", "max_steps"):
        assert key in data
    for key in ("input_latency_ms", "compute_latency_ms"):
        assert set(data[key]) >= {"p50", "p99"}
    assert data["samples"] == 10
    lines = [json.loads(x) for x in preds.read_text().splitlines()]
    assert sum(x["final"] for x in lines) == 10
    assert report.with_suffix(".png").stat().st_size > 1000
    assert len(report.with_name("report_samples.jsonl").read_text().splitlines()) == 10


def test_output_moves_the_jsonl_sinks_file_and_adds_no_second_one(root, tmp_path):
    """``--output`` replaces the configured JSONL path (its other options kept), so the predictions
    and the report describe one run; the configured runs/digits_dvs/predictions.jsonl is not written."""
    pipeline = root / "pipelines" / "digits_dvs.yaml"
    sets = ["--set", "source.limit=4", "--no-progress"]
    out = cli("run", pipeline, *sets, "--output", "preds.jsonl", "--report", "out/report.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "runs").exists()
    lines = [json.loads(x) for x in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert sum(p["final"] for p in lines) == 4 < len(lines)  # final_only: false, as configured
    assert json.loads((tmp_path / "out" / "report.json").read_text())["samples"] == 4


def test_output_with_two_jsonl_sinks_is_refused(root, capsys):
    from streamsnn.cli import main

    two = "sinks=[{type: jsonl, path: a.jsonl}, {type: console}, {type: jsonl, path: b.jsonl}]"
    assert (
        main(["run", str(root / "pipelines" / "digits_dvs.yaml"), "--set", two, "--output", "x.jsonl"]) == 2
    )
    assert "error: --output: the pipeline has 2 jsonl sinks (sinks.0, sinks.2)" in capsys.readouterr().err


def test_run_calibrate_and_evaluate_share_the_pipelines_run_folder(root, tmp_path):
    pipeline = root / "pipelines" / "digits_frames.yaml"
    sets = ["--set", "source.limit=20", "--no-progress"]
    for command in ("run", "calibrate", "evaluate"):
        out = cli(command, pipeline, *sets, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    assert "thresholds from runs/digits_frames/calibration.json" in out.stdout
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["digits_frames"]
    written = {p.name for p in (tmp_path / "runs" / "digits_frames").iterdir()}
    assert {"report.json", "calibration.json", "evaluate"} <= written


@pytest.mark.parametrize(
    "command",
    [
        [],
        *(
            [c]
            for c in (
                "run",
                "config",
                "subscribe",
                "train",
                "calibrate",
                "evaluate",
                "convert",
                "send",
                "sensors",
            )
        ),
    ],
)
def test_help_shows_docstring_literals_bare(command, capsys):
    from streamsnn.cli import main

    with pytest.raises(SystemExit):
        main([*command, "--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: streamsnn") and "``" not in text


def test_config_errors_exit_2_with_the_field(root, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (root / "pipelines" / "digits_dvs.yaml").read_text().replace("batch_size: 32", "batch_size: -1")
    )
    out = cli("run", str(bad), cwd=root)
    assert out.returncode == 2
    assert "bad.yaml: runtime.batch_size: Input should be greater than 0 (got -1)" in out.stderr
    out = cli("run", "pipelines/digits_dvs.yaml", "--set", "policy.exit.kind=x", cwd=root)
    assert out.returncode == 2 and "policy.exit.kind: unknown key" in out.stderr


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery")
def test_ctrl_c_flushes_sinks_and_writes_the_report(root, tmp_path):
    preds, report = tmp_path / "p.jsonl", tmp_path / "report.json"
    proc = subprocess.Popen(
        [*CLI, "run", *run_args(preds, report, "runtime.realtime=true", "runtime.batch_size=2")],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not preds.exists() or preds.stat().st_size == 0):
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    data = json.loads(report.read_text())
    assert data["interrupted"] is True and data["samples"] >= 1
    lines = preds.read_text().splitlines()
    finals = [json.loads(x) for x in lines if json.loads(x)["final"]]  # every line is complete JSON
    assert len(finals) == data["samples"]


def test_convert_prints_the_conversion_table(root):
    out = cli("convert", "builtin:digits_frames_2bit", "--steps", "1,3,8", "--split", "val", cwd=root)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("method"))
    assert "T=1" in header and "T=8" in header and "spikes/neuron@8" in header and "Pareto lat." in header
    assert any(line.strip().startswith("QCFS") for line in lines)
    assert any(line.strip().startswith("QFFS") for line in lines)
    out = cli("convert", "builtin:digits_dvs", cwd=root)
    assert out.returncode == 2 and "frame models" in out.stderr


def test_subscribe_prints_final_predictions_and_its_counters():
    from streamsnn.prediction import Prediction
    from streamsnn.sinks.zeromq import ZmqSink, ZmqSinkConfig

    sink = ZmqSink(ZmqSinkConfig(address="tcp://127.0.0.1:*"))
    cmd = [*CLI, "subscribe", sink.endpoint, "--final-only", "--count", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while sink.subscribers < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        for step in range(1, 7):  # final at steps 3 and 6
            final = step % 3 == 0
            sink.write(
                Prediction("cam0", 0, step, 0, step * 20_000, 4, 0.97, [0.0] * 10, 4, final, "confident")
            )
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        sink.close()
    lines = out.splitlines()
    assert proc.returncode == 0 and len(lines) == 2, (out, err)
    assert all("final/confident" in line and "class 4" in line and "ok" in line for line in lines)
    assert "step   3" in lines[0] and "step   6" in lines[1]
    assert "predictions 6" in err and "missed" not in err  # non-final ones counted, not printed


def test_subscribe_names_a_stream_runs_decisions_in_the_summary():
    from streamsnn.prediction import Prediction
    from streamsnn.sinks.zeromq import ZmqSink, ZmqSinkConfig

    sink = ZmqSink(ZmqSinkConfig(address="tcp://127.0.0.1:*"))
    proc = subprocess.Popen(
        [*CLI, "subscribe", sink.endpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while sink.subscribers < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        sink.write(Prediction("cam0", 0, 1, 0, 20_000, 4, 0.97, [0.0] * 10, None, True, "confident"))
        sink.finish({"samples": 1, "decisions": 1, "stream_run": True, "accuracy": None})
        sink.close()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.splitlines()[-1].endswith("1 decisions, accuracy None") and "samples" not in out


def test_send_streams_a_live_scenario_and_writes_its_timeline(tmp_path, capsys):
    import socket

    import numpy as np

    from streamsnn.cli import main
    from streamsnn.lab.live import scenario_config
    from streamsnn.sources import DigitsDVS
    from streamsnn.sources.scenarios import segments_from
    from streamsnn.sources.udp import spif_decode

    options = {"split": "val", "scenario": "gaps", "limit": 2, "gap_max_ms": 200}
    played = DigitsDVS(scenario_config(None, **options))
    events = played.events()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(0.5)
        args = ["--scenario", "gaps", "--split", "val", "--limit", "2", "--gap-max-ms", "200"]
        timeline = tmp_path / "timeline.json"
        port = str(rx.getsockname()[1])
        assert main(["send", *args, "--no-realtime", "--port", port, "--timeline", str(timeline)]) == 0
        got = []
        try:
            while True:
                got.append(spif_decode(rx.recv(65_536)))
        except TimeoutError:
            pass
    x = np.concatenate([g[0] for g in got])
    assert len(x) == len(events) and np.array_equal(x, events["x"])
    doc = json.loads(timeline.read_text())
    assert segments_from(doc["segments"]) == played.timeline()
    assert doc["first_event_us"] == int(events["t"][0]) and doc["scenario"]["scenario"] == "gaps"
    assert f"sent {len(events):,} events of scenario gaps" in capsys.readouterr().err
    assert main(["send"]) == 2
    assert "give a recording, or a live scenario" in capsys.readouterr().err
    assert main(["send", "x.npy", "--scenario", "gaps"]) == 2
    assert (
        "a recording or a scenario (--scenario, --split, --timeline...), not both" in capsys.readouterr().err
    )
