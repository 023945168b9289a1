"""The record sink on a full disk (a real tmpfs): dv-processing's writer fails there by aborting its
process (SIGABRT), which must not be the run's."""

import json

from tests.small_disk import needs_small_disk, run_on_small_disk


@needs_small_disk
def test_a_record_sink_on_a_full_disk_is_named_and_the_run_finishes(root, tmp_path):
    disk, out, report = tmp_path / "disk", tmp_path / "p.jsonl", tmp_path / "report.json"
    source = "source={type: digits_dvs, live: true, pace: false, limit: 20, packet_us: 5000}"
    sets = [source, f"sinks=[{{type: record, path: {disk}/events.aedat4}}]"]
    args = ["run", "pipelines/digits_dvs.yaml", *(a for s in sets for a in ("--set", s))]
    done = run_on_small_disk(
        disk, 96, [*args, "--output", str(out), "--report", str(report), "--no-progress"], root
    )
    assert done.returncode == 1, done.stderr  # not killed by SIGABRT (134)
    assert "Traceback" not in done.stderr
    error = next(line for line in done.stderr.splitlines() if line.startswith("error: "))
    assert error.startswith(f"error: sinks[0] (record: {disk}/events.aedat4): {disk}/events.aedat4: ")
    assert "No space left on device" in error, error
    data = json.loads(report.read_text())
    assert data["sink_errors"] == [error.removeprefix("error: ")]
    preds = [json.loads(line) for line in out.read_text().splitlines()]
    assert data["samples"] == sum(p["final"] for p in preds) >= 10 and not data["interrupted"]
    assert data["dropped_slices"] == 0
