"""Run a built pipeline with its executor: in this process (``Runner``), or a dataset replay
sharded and live stream groups spread over Ray workers (``executor: ray``)."""

from __future__ import annotations

from streamsnn.runtime.build import Pipeline
from streamsnn.runtime.ray_executor import run_on_ray
from streamsnn.runtime.runner import Runner, RunResult


def run_pipeline(pipe: Pipeline) -> RunResult:
    """Run ``pipe`` to the end of its source (or Ctrl-C) and return the report."""
    if pipe.config.executor == "ray":
        return run_on_ray(pipe)
    return Runner(pipe).run()
