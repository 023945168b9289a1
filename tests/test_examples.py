"""The examples run against a real pipeline."""

import subprocess
import sys

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline


def test_consumer_example_acts_on_final_predictions_until_the_summary(root):
    cfg = load_pipeline(
        root / "pipelines" / "digits_dvs.yaml",
        [
            "runtime.progress=false",
            "report.path=null",
            "source.limit=30",
            "sinks=[{type: zmq, address: 'tcp://127.0.0.1:*', wait_for_subscribers: 1}]",
        ],
    )
    pipe = build_pipeline(cfg)
    example = root / "examples" / "consumer.py"
    cmd = [sys.executable, str(example), pipe.sinks[0].endpoint, "--min-confidence", "0", "--seconds", "60"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        result = run_pipeline(pipe)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    decisions = [line for line in out.splitlines() if line.startswith("digits-dvs/test: class")]
    assert len(decisions) == result.report["samples"] == 30  # every final decision, confidence ≥ 0
    assert "publisher finished" in out and "'missed': 0" in out
    share = float(out.rsplit("decisions, ", 1)[1].split(" %")[0]) / 100
    assert abs(share - result.report["accuracy"]) < 6e-4  # the same decisions and labels (printed to 0.1 %)
