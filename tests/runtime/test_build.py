"""Building a pipeline: a replay that selects no sample is an error naming why."""

import subprocess
import sys

import pytest

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.runtime import build_pipeline


@pytest.mark.parametrize(
    "pipeline,overrides,named",
    [
        (
            "digits_dvs",
            ["source.offset=400"],
            r"digits_dvs selects 0 samples to replay \(split: test, offset: 400",
        ),
        (
            "digits_frames",
            ["source.split=val", "source.offset=360"],
            r"\(split: val, offset: 360, limit: null\)",
        ),
    ],
)
def test_a_replay_of_no_sample_is_refused(root, pipeline, overrides, named):
    cfg = load_pipeline(root / "pipelines" / f"{pipeline}.yaml", overrides)
    with pytest.raises(
        ConfigError, match=named + r".*nothing to decide; is source\.offset past the split's end"
    ):
        build_pipeline(cfg)


def test_the_cli_says_so_and_exits_2(root, tmp_path):
    pipeline = str(root / "pipelines" / "digits_dvs.yaml")
    sets = ["--set", "source.offset=5000", "--set", "sinks=[]", "--report", str(tmp_path / "r.json")]
    done = subprocess.run(
        [sys.executable, "-m", "streamsnn.cli", "run", pipeline, *sets],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "selects 0 samples" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r.json").exists()
