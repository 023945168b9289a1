"""The shipped default pipelines on their whole test splits, against the targets of the product."""

import pytest

from streamsnn.config import load_pipeline
from streamsnn.runtime import build_pipeline, run_pipeline


def run_default(root, name):
    cfg = load_pipeline(root / "pipelines" / name, ["runtime.progress=false", "sinks=[]", "report.path=null"])
    return run_pipeline(build_pipeline(cfg)).report


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits_dvs.yaml", "digits_frames.yaml"])
def test_default_pipeline_meets_the_targets(root, name):
    r = run_default(root, name)
    assert r["samples"] == 360
    assert r["accuracy_ann"] >= 0.95  # the quantised ANN
    assert abs(r["accuracy_full_T"] - r["accuracy_ann"]) <= 0.01  # converted SNN at full T
    assert r["mean_steps"] <= 0.7 * r["mean_steps_full_T"]  # confidence exit saves >= 30 % of steps
    assert r["accuracy"] >= r["accuracy_full_T"] - 0.005  # ... losing at most 0.5 pp
    print(
        name, {k: r[k] for k in ("accuracy_ann", "accuracy_full_T", "accuracy", "mean_steps", "step_saving")}
    )
