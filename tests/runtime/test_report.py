"""Report files: strict JSON, and written whole or not at all (a full disk, a real tmpfs)."""

import json
import os

import pytest

from streamsnn.options import ConfigError
from streamsnn.runtime.report import OutcomeLog, SampleOutcome, build_report, write_report
from tests.small_disk import copied, fill, needs_small_disk, run_on_small_disk


def strict_json(text):
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_the_report_of_no_sample_is_strict_json(tmp_path):
    written = write_report(
        build_report([], {"wall_s": float("nan"), "x": [float("inf")]}), [], tmp_path / "r.json"
    )
    assert [p.name for p in written] == ["r.json", "r_samples.jsonl"]
    report = strict_json((tmp_path / "r.json").read_text())
    assert report["samples"] == 0 and report["wall_s"] is None and report["x"] == [None]
    assert report["input_latency_ms"]["p50"] is None and report["accuracy"] is None
    assert (tmp_path / "r_samples.jsonl").read_text() == ""


@needs_small_disk
def test_report_files_on_a_full_disk_are_left_as_they_were(root, tmp_path):
    """The report's folder is a full tmpfs holding an earlier run's report: the run's JSONL (on
    another disk) is complete, the earlier report files are unchanged and no partial or
    temporary file is left; exit status 1 with an error naming the file."""
    disk, out = tmp_path / "disk", tmp_path / "p.jsonl"
    earlier = {"report.json": '{"samples": 1}\n', "report_samples.jsonl": '{"sample": 0}\n'}
    prepare = " && ".join(f"printf '%s' '{text}' > {name}" for name, text in earlier.items())
    args = ["run", "pipelines/digits_dvs.yaml", "--set", "sinks=[]", "--set", "source.limit=20"]
    args += ["--output", str(out), "--report", str(disk / "report.json"), "--no-progress"]
    done = run_on_small_disk(disk, 64, args, root, prepare=f"{prepare} && {fill(reserve_kb=4)}")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"error: report: cannot write {disk}/report" in done.stderr, done.stderr
    assert "No space left on device; the report's files are left as they were" in done.stderr
    left = {p.name: p.read_text() for p in copied(disk).iterdir() if p.name not in ("filler", "reserve")}
    assert left == earlier
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert sum(p["final"] for p in preds) == 20


def test_a_per_sample_file_written_by_one_run_is_refused_to_another(tmp_path):
    """A stream run's per-sample file is locked while written: a second log on it (as a second
    run would open it) is refused naming the file and the process, and truncates nothing."""
    path = tmp_path / "report_samples.jsonl"
    first = OutcomeLog(path)
    outcome = SampleOutcome("s", 0, None, 1, 2, "confident", 20.0, 1.0, 1.0, 0)
    first.append(outcome)
    with pytest.raises(
        ConfigError, match=f"per-sample file: {path} is being written by process {os.getpid()}"
    ):
        OutcomeLog(path)
    first.close()
    assert [o.sample for o in first] == [0]
