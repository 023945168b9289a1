"""Run a built pipeline with its executor: in this process (``Runner``), or a dataset replay
sharded and live stream groups spread over Ray workers (``executor: ray``)."""

from __future__ import annotations

from pathlib import Path

from streamsnn.runtime.build import Pipeline
from streamsnn.runtime.ray_executor import run_on_ray
from streamsnn.runtime.runner import Runner, RunResult


def run_pipeline(pipe: Pipeline, samples_path: str | Path | None = None) -> RunResult:
    """Run ``pipe`` to the end of its source (or a stop: Ctrl-C, SIGTERM) and return the report. A
    stream run (continuous streams) writes each outcome to ``samples_path`` (the per-sample file) as
    it is made."""
    if pipe.config.executor == "ray":
        return run_on_ray(pipe, samples_path)
    return Runner(pipe, samples_path=samples_path).run()
