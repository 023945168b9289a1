"""The jsonl sink in ``streamsnn run`` processes: a full disk (a real tmpfs), a second run given the
same file, and a replay killed with SIGKILL then resumed."""

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict

from tests.small_disk import copied, needs_small_disk, run_on_small_disk

CLI = [sys.executable, "-m", "streamsnn.cli"]


def run_args(*overrides, output=None, report=None):
    sets = [arg for o in ("sinks=[]", *overrides) for arg in ("--set", o)]
    out = ["--output", str(output)] if output else []
    out += ["--report", str(report)] if report else []
    return ["run", "pipelines/digits_dvs.yaml", *sets, *out, "--no-progress"]


def whole_lines(path):
    text = path.read_text()
    assert text == "" or text.endswith("\n"), "a torn last line"
    return [json.loads(line) for line in text.splitlines()]


def by_sample(preds):
    samples = defaultdict(list)
    for p in preds:
        samples[p["sample"]].append(p)
    return samples


@needs_small_disk
def test_a_jsonl_sink_on_a_full_disk_is_named_and_the_other_sinks_and_the_report_finish(root, tmp_path):
    """The first jsonl sink writes to a 64 KiB tmpfs and fills it: it ends at its last whole line
    and is left out; the second gets every prediction, the report is written and lists the
    error, the exit status is 1."""
    disk, other, report = tmp_path / "disk", tmp_path / "all.jsonl", tmp_path / "report.json"
    sinks = f"sinks=[{{type: jsonl, path: {disk}/p.jsonl}}, {{type: jsonl, path: {other}}}]"
    done = run_on_small_disk(disk, 64, run_args("source.limit=40", sinks, report=report), root)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith(f"error: sinks[0] (jsonl: {disk}/p.jsonl): No space left on device: ")
    kept = whole_lines(copied(disk) / "p.jsonl")
    assert error.endswith(f"{disk}/p.jsonl ends at its last whole line ({len(kept):,} predictions)")
    everything = whole_lines(other)
    data = json.loads(report.read_text())
    assert data["sink_errors"] == [error.removeprefix("error: ")]
    assert data["samples"] == 40 == sum(p["final"] for p in everything) and not data["interrupted"]
    assert 0 < len(kept) < len(everything) and everything[: len(kept)] == kept


def test_two_runs_on_one_output_file_the_second_is_refused(root, tmp_path):
    """While a paced replay writes its --output, a second run given the same file is refused with
    an error naming the file and the process writing it, and leaves the file alone."""
    out = tmp_path / "p.jsonl"
    args = run_args("runtime.realtime=true", "runtime.batch_size=2", output=out)
    first = subprocess.Popen(
        [*CLI, *args], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline and b'"final":true' not in _bytes(out):
            time.sleep(0.05)
        assert first.poll() is None, first.communicate()[1]
        second = subprocess.run(
            [*CLI, *run_args(output=out)], cwd=root, capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 2, second.stderr
        assert f"{out} is being written by process {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        first.send_signal(signal.SIGINT)
        assert first.wait(60) == 130
    finally:
        first.kill()
    preds = whole_lines(out)
    for sample, ps in by_sample(preds).items():  # one run's lines only: each sample once, in order
        assert [p["step"] for p in ps] == list(range(1, len(ps) + 1)), sample


def _bytes(path):
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def test_a_replay_killed_with_sigkill_resumes_with_the_samples_it_lacks(root, tmp_path):
    """kill -9 mid-replay leaves the JSONL with whole samples, a sample cut short, perhaps a torn
    line, and no report; ``--resume`` keeps the complete samples (their lines unchanged), drops
    the rest and runs only the samples missing: then every sample is in the file once."""
    out, report = tmp_path / "p.jsonl", tmp_path / "report.json"
    paced = run_args("source.limit=24", "runtime.realtime=true", "runtime.batch_size=2", output=out)
    proc = subprocess.Popen([*CLI, *paced], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and _bytes(out).count(b'"final":true') < 4:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    before = _bytes(out)
    lines = before.split(b"\n")[:-1]  # whole lines (the last may be torn)
    finals = {json.loads(line)["sample"] for line in lines if b'"final":true' in line}
    assert 4 <= len(finals) < 24 and not report.exists()
    resumed = subprocess.run(
        [*CLI, *run_args("source.limit=24", "runtime.batch_size=8", output=out, report=report), "--resume"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    data = json.loads(report.read_text())
    assert data["resumed_samples"] == len(finals) and data["samples"] == 24 - len(finals)
    preds = whole_lines(out)
    samples = by_sample(preds)
    assert sorted(samples) == list(range(24))
    for sample, ps in samples.items():
        assert [p["step"] for p in ps] == list(range(1, len(ps) + 1)), sample
        assert [p["final"] for p in ps] == [False] * (len(ps) - 1) + [True], sample
    kept = [line for line in lines if json.loads(line)["sample"] in finals]
    assert out.read_bytes().startswith(b"".join(line + b"\n" for line in kept))
