"""Wires source → slicing → encoding → SNN operator → policies → sinks and runs them."""

from streamsnn.runtime.build import Pipeline, build_pipeline
from streamsnn.runtime.run import run_pipeline
from streamsnn.runtime.runner import RunResult

__all__ = ["Pipeline", "RunResult", "build_pipeline", "run_pipeline"]
