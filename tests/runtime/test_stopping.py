"""SIGINT and SIGTERM sent to ``streamsnn run`` processes: at start-up, while the source loads,
in the stepping loop, in the ANN reference pass and while the report is written (twice)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from streamsnn.subscriber import Subscriber

CLI = [sys.executable, "-m", "streamsnn.cli"]
# ``streamsnn run`` in a process that sends itself real signals at chosen points of the run, given by
# STREAMSNN_TEST_SIGNALS ("where:SIGNAL,..."): while the source is opened at start-up (open_source),
# while the digits source loads its recordings in the run (recordings), at the start of the ANN
# reference pass (ann) and while the report's PNG is drawn (plot)
SIGNALLING = """
import os, signal, sys
import streamsnn.runtime.build as build, streamsnn.runtime.report as report
from streamsnn.runtime.runner import Runner
from streamsnn.sources.digits import DigitsDVS
from streamsnn.cli import main

plan = {}
for item in os.environ["STREAMSNN_TEST_SIGNALS"].split(","):
    where, name = item.split(":")
    plan.setdefault(where, []).append(getattr(signal, name))

def send(where):
    for signum in plan.pop(where, []):
        os.kill(os.getpid(), signum)

def wrap(where, f):
    def wrapped(*args, **kwargs):
        send(where)
        return f(*args, **kwargs)
    return wrapped

def recordings(f):
    def wrapped(*args, **kwargs):
        send("recordings")
        yield from f(*args, **kwargs)
    return wrapped

build.open_source = wrap("open_source", build.open_source)
DigitsDVS.recordings = recordings(DigitsDVS.recordings)
Runner.fill_ann_reference = wrap("ann", Runner.fill_ann_reference)
report.plot_report = wrap("plot", report.plot_report)
sys.exit(main())
"""


def strict_json(text):
    """JSON as strict parsers read it: NaN and infinities refused."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def run_args(tmp_path, *overrides):
    sets = [arg for o in ("sinks=[]", *overrides) for arg in ("--set", o)]
    out = ["--output", str(tmp_path / "p.jsonl"), "--report", str(tmp_path / "report.json"), "--no-progress"]
    return ["run", "pipelines/digits_dvs.yaml", *sets, *out]


def signalled_run(root, tmp_path, signals, *overrides, fresh_cache=False):
    env = {**os.environ, "STREAMSNN_TEST_SIGNALS": signals}
    if fresh_cache:  # the digits source then generates its recordings in the run
        env["STREAMSNN_CACHE"] = str(tmp_path / "cache")
    return subprocess.run(
        [sys.executable, "-c", SIGNALLING, *run_args(tmp_path, *overrides)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def predictions(path):
    """Every line of a JSONL file, each checked to be whole JSON."""
    text = path.read_text()
    assert text == "" or text.endswith("\n")
    return [strict_json(line) for line in text.splitlines()]


def check_consistent(tmp_path):
    """The report (strict JSON) counts every final prediction of the JSONL, which has only whole
    lines; the report and the predictions."""
    report = strict_json((tmp_path / "report.json").read_text())
    preds = predictions(tmp_path / "p.jsonl")
    assert report["samples"] == sum(p["final"] for p in preds)
    return report, preds


@pytest.mark.parametrize("name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_stop_at_start_up_writes_nothing_and_no_traceback(root, tmp_path, name, code):
    done = signalled_run(root, tmp_path, f"open_source:{name}")
    assert done.returncode == code, done.stderr
    assert f"streamsnn: {name} while starting: nothing ran, no report written" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "p.jsonl").exists()


def test_a_stop_while_the_source_loads_writes_the_report_of_what_ran(root, tmp_path):
    """Ctrl-C while the digits source generates its recordings (in the run's source thread)."""
    done = signalled_run(root, tmp_path, "recordings:SIGINT", "source.limit=40", fresh_cache=True)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    report, _ = check_consistent(tmp_path)
    assert report["interrupted"] is True and report["samples"] < 40


def test_a_stop_in_the_ann_pass_keeps_every_decision_and_leaves_the_ann_out(root, tmp_path):
    done = signalled_run(root, tmp_path, "ann:SIGTERM", "source.limit=30")
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr
    report, _ = check_consistent(tmp_path)
    assert report["samples"] == 30 and report["interrupted"] is True
    assert report["accuracy_ann"] is None and report["accuracy"] is not None
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")


def test_signals_while_the_report_is_written_change_nothing(root, tmp_path):
    """A first Ctrl-C in the ANN pass, then SIGINT and SIGTERM while the PNG is drawn: the
    report, the per-sample file and the PNG are all written, the exit status is the first's."""
    done = signalled_run(root, tmp_path, "ann:SIGINT,plot:SIGINT,plot:SIGTERM", "source.limit=20")
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    assert "SIGINT again: already stopping" in done.stderr and "SIGTERM again" in done.stderr
    report, _ = check_consistent(tmp_path)
    assert report["samples"] == 20
    assert len((tmp_path / "report_samples.jsonl").read_text().splitlines()) == 20
    assert (tmp_path / "report.png").read_bytes().startswith(b"\x89PNG")


def test_sigterm_stops_a_run_as_ctrl_c_does(root, tmp_path):
    """SIGTERM from outside to a paced replay publishing over ZeroMQ: exit 143, the report, every
    prediction made in the JSONL as whole lines, the ZeroMQ summary sent after every prediction."""
    zmq = "{type: zmq, address: 'tcp://127.0.0.1:*', wait_for_subscribers: 1, hwm: 0}"
    args = run_args(tmp_path, f"sinks=[{zmq}]", "runtime.realtime=true", "runtime.batch_size=2")
    proc = subprocess.Popen(
        [*CLI, *args], cwd=root, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        address = None
        deadline = time.monotonic() + 120
        while address is None and time.monotonic() < deadline and proc.poll() is None:
            found = [x.split(" on ")[-1].strip() for x in list(lines) if "publishing predictions on" in x]
            address = found[0] if found else None
            time.sleep(0.05)
        assert address is not None, "".join(lines)
        sub = Subscriber(address)
        got, summary = [], None
        deadline = time.monotonic() + 120
        while summary is None and time.monotonic() < deadline:
            msg = sub.receive(timeout_s=0.2)
            if msg is None:
                continue
            if msg.kind == "summary":
                summary = msg
            elif msg.kind == "prediction":
                got.append(msg)
                if sum(m.data["final"] for m in got) == 3 and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        sub.close()
        assert proc.wait(60) == 143, "".join(lines)
    finally:
        proc.kill()
    reader.join(10)
    assert "Traceback" not in "".join(lines)
    report, preds = check_consistent(tmp_path)
    assert report["interrupted"] is True and 3 <= report["samples"] < 360
    assert summary is not None and summary.data["report"]["samples"] == report["samples"]
    assert summary.data["last_seq"]["pred.digits-dvs/test"] == len(preds) == len(got)


def test_a_run_with_no_decision_reports_null_not_nan(root, tmp_path):
    """A live UDP source that receives nothing and ends after waiting 1 s for its first datagram:
    no decision; its report is strict JSON, with null where there is no figure."""
    args = [
        "run",
        "pipelines/udp_live.yaml",
        *("--set", "sinks=[]", "--set", "source.port=0", "--set", "source.first_datagram_timeout_s=1"),
        *("--report", str(tmp_path / "report.json"), "--no-progress"),
    ]
    done = subprocess.run([*CLI, *args], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = strict_json((tmp_path / "report.json").read_text())
    assert report["samples"] == 0 and report["accuracy"] is None
    assert report["e2e_latency_ms"] == {"p50": None, "p90": None, "p99": None, "mean": None, "max": None}
