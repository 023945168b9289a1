"""``executor: ray``: a dataset replay sharded by sample across Ray workers.

The driver (this process) splits the selected samples of the split into ranges of
``ray.samples_per_task`` and hands them to ``ray.workers`` actors, at most two ranges queued per
actor. Each actor builds the pipeline once (model, operator, policies) and replays a range with
the local runtime (``source.offset``/``source.limit``: samples keep their numbers in the split),
returning its predictions and per-sample outcomes only when the range is done. The driver writes
each finished range's predictions to the pipeline's sinks and builds the report from all outcomes,
as a local run of the same samples would: a sample's decision does not depend on which samples
share its batch.

A worker process that dies is restarted by Ray and its unfinished ranges run again
(``max_restarts``/``max_task_retries``); a range that failed returned nothing, so no sample is lost
or counted twice. Ray is an optional extra (``pip install 'streamsnn[ray]'``), imported here only.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import time
from typing import Any

from tqdm import tqdm

from streamsnn.config import ConfigError, PipelineConfig
from streamsnn.metrics import SampleOutcome, build_report
from streamsnn.prediction import Prediction
from streamsnn.runtime.build import Pipeline, build_pipeline, open_source
from streamsnn.runtime.runner import RunResult, close_sinks, run_pipeline, start_sinks

RESTARTS = 3  # restarts of a dead worker process, and re-runs of each of its ranges
QUEUED_PER_WORKER = 2  # ranges handed to a worker ahead, so it never waits for the driver
SUMMED = ("dropped_slices", "skipped_slices", "out_of_bounds_events", "late_events")


@dataclasses.dataclass
class Shard:
    """What a worker returns for one range: its predictions in emission order, its outcomes and
    its run report (counters, model time)."""

    predictions: list[Prediction]
    outcomes: list[SampleOutcome]
    report: dict[str, Any]


class _Collect:
    """A sink that keeps the predictions (the worker's only sink)."""

    def __init__(self) -> None:
        self.predictions: list[Prediction] = []

    def write(self, pred: Prediction) -> None:
        pred.input = None  # a tensor only the exit policy needed
        self.predictions.append(pred)

    def close(self) -> None:
        pass


class ReplayWorker:
    """A Ray actor: the pipeline built once, replaying one range of the split per call.
    ``cwd``: the driver's working directory, where the config's relative paths start (a worker
    on another machine needs the same paths there)."""

    def __init__(self, config: dict[str, Any], cwd: str) -> None:
        if os.path.isdir(cwd):
            os.chdir(cwd)
        cfg = PipelineConfig.model_validate(config)
        # torch gets the worker's CPUs but one (its source and sink threads take that one)
        runtime = cfg.runtime.model_copy(update={"progress": False, "threads": max(1, cfg.ray.cpus - 1)})
        self.cfg = cfg.model_copy(update={"runtime": runtime, "sinks": [], "executor": "local"})
        self.pipe = build_pipeline(self.cfg, origin="ray worker")
        self.pipe.source.close()

    def pid(self) -> int:
        return os.getpid()

    def replay(self, offset: int, limit: int) -> Shard:
        source_cfg = self.cfg.source.model_copy(update={"offset": offset, "limit": limit})
        cfg = self.cfg.model_copy(update={"source": source_cfg})
        sink = _Collect()
        pipe = dataclasses.replace(self.pipe, config=cfg, source=open_source(cfg, "ray worker"), sinks=[sink])
        result = run_pipeline(pipe)
        return Shard(sink.predictions, result.outcomes, result.report)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor: ray needs Ray, an optional extra: pip install 'streamsnn[ray]'"
        ) from None
    return ray


def _check(pipe: Pipeline) -> None:
    cfg = pipe.config
    if pipe.source.live or not pipe.source.segmented or not hasattr(cfg.source, "offset"):
        raise ConfigError(
            f"executor: ray shards a dataset replay by sample; source '{cfg.source.type}' is "
            "not one (use executor: local)"
        )
    if cfg.runtime.realtime:
        raise ConfigError("executor: ray replays as fast as the workers go; set runtime.realtime: false")
    for i, sink in enumerate(cfg.sinks):
        if sink.type == "record":
            raise ConfigError(f"sinks[{i}]: record writes the events, which stay on the Ray workers")


def run_on_ray(pipe: Pipeline) -> RunResult:
    """Replay ``pipe``'s source on Ray workers (``pipe.config.ray``), predictions to ``pipe``'s
    sinks, and return the report of all samples."""
    try:
        _check(pipe)
        ray = _ray()
    except ConfigError:
        pipe.source.close()
        close_sinks(pipe.sinks, None)
        raise
    cfg, rc = pipe.config, pipe.config.ray
    started_ray = not ray.is_initialized()
    if started_ray:
        local = rc.address is None
        ray.init(
            address=rc.address,
            num_cpus=rc.workers * rc.cpus if local else None,
            include_dashboard=False,
            log_to_driver=False,
        )
    first, n = cfg.source.offset, len(pipe.source)
    pipe.source.close()  # the workers read the data; the driver only needed its length
    ranges = collections.deque(
        (first + start, min(rc.samples_per_task, n - start)) for start in range(0, n, rc.samples_per_task)
    )
    actor = ray.remote(num_cpus=rc.cpus, num_gpus=rc.gpus, max_restarts=RESTARTS, max_task_retries=RESTARTS)
    workers = [
        actor(ReplayWorker).remote(cfg.model_dump(), os.getcwd()) for _ in range(min(rc.workers, len(ranges)))
    ]
    shards: list[Shard] = []
    report = None
    bar = tqdm(total=n, desc=f"{cfg.name} (ray)", unit="sample", disable=not cfg.runtime.progress)
    interrupted = False
    try:
        # like a local run's wall time, the replay's starts once the pipelines are built
        t_start = time.perf_counter()
        ray.get([worker.pid.remote() for worker in workers])
        workers_start_s = time.perf_counter() - t_start
        started = time.perf_counter()
        start_sinks(pipe.sinks)
        pending: dict[Any, Any] = {}  # result ref → its worker

        def submit(worker: Any) -> None:
            offset, limit = ranges.popleft()
            pending[worker.replay.remote(offset, limit)] = worker

        for worker in workers:
            for _ in range(QUEUED_PER_WORKER):
                if ranges:
                    submit(worker)
        try:
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                worker = pending.pop(ref)
                shard = ray.get(ref)
                for pred in shard.predictions:
                    for sink in pipe.sinks:
                        sink.write(pred)
                shards.append(shard)
                bar.update(len(shard.outcomes))
                if ranges:
                    submit(worker)
        except KeyboardInterrupt:
            interrupted = True
            for ref in pending:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        wall = time.perf_counter() - started
        outcomes = sorted((o for s in shards for o in s.outcomes), key=lambda o: o.sample)
        report = _report(pipe, outcomes, [s.report for s in shards], wall, interrupted, len(workers))
        report["workers_start_s"] = round(workers_start_s, 3)
        return RunResult(report, outcomes)
    finally:
        bar.close()
        close_sinks(pipe.sinks, report)
        for worker in workers:
            with contextlib.suppress(Exception):
                ray.kill(worker)
        if started_ray:
            ray.shutdown()


def _report(
    pipe: Pipeline,
    outcomes: list[SampleOutcome],
    reports: list[dict[str, Any]],
    wall: float,
    interrupted: bool,
    workers: int,
) -> dict[str, Any]:
    """The report of a local run of the same samples, from all outcomes, with the shards'
    counters (``reports``) summed (model share: of the workers' time)."""
    cfg = pipe.config
    model_s = sum(r["model_share_of_wall"] * r["wall_s"] for r in reports)
    step_s = sum(r["step_share_of_wall"] * r["wall_s"] for r in reports)
    calls = sum(r["lane_steps"] / r["mean_batch"] for r in reports if r["mean_batch"])
    stats: collections.Counter[str] = collections.Counter()
    for r in reports:
        stats.update(r["source_stats"])
    extra = {
        "pipeline": cfg.name,
        "source": cfg.source.type,
        "weights": cfg.model.weights,
        "policy": cfg.policy.exit.model_dump(),
        "batch_size": cfg.runtime.batch_size,
        "realtime": False,
        "interrupted": interrupted,
        "wall_s": round(wall, 3),
        "samples_per_s": round(len(outcomes) / wall, 2) if wall > 0 else None,
        "step_share_of_wall": round(step_s / (wall * workers), 4) if wall > 0 else None,
        "model_share_of_wall": round(model_s / (wall * workers), 4) if wall > 0 else None,
        "mean_batch": round(sum(r["lane_steps"] for r in reports) / calls, 2) if calls else None,
        "lane_steps": sum(r["lane_steps"] for r in reports),
        **{key: sum(r[key] for r in reports) for key in SUMMED},
        "torch_threads": cfg.ray.cpus,
        "source_stats": dict(stats),
        "recorded_events": 0,
        "late_events_not_recorded": 0,
        "executor": "ray",
        "workers": workers,
    }
    report = build_report(outcomes, extra)
    report["ann_reference_s"] = round(sum(r.get("ann_reference_s", 0.0) for r in reports), 3)
    return report
