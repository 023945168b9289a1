"""``executor: ray``: a dataset replay sharded by sample, or live streams a group per worker.

**Replay.** The driver (this process) splits the selected samples of the split into ranges
(``_range_size``) and hands them to ``ray.workers`` actors, two batches' worth queued per actor.
Each actor builds the pipeline once (model, operator, policies) and replays a range with the
local runtime (``source.offset``/``source.limit``: samples keep their numbers in the split),
returning its predictions and per-sample outcomes only when the range is done. The driver writes
each finished range's predictions to the pipeline's sinks and builds the report from all
outcomes, as a local run of the same samples would: a sample's decision does not depend on which
samples share its batch. A worker process that dies is restarted by Ray and its unfinished
ranges run again (``max_restarts``/``max_task_retries``); a range that failed returned nothing,
so no sample is lost or counted twice.

**Live streams.** A ``streams`` source is split into groups of ``ray.streams_per_worker``
sources (its ``offset``/``limit``), one actor each, which opens its group's sources and runs them
with the local runtime; its predictions come back as they are made (a streaming generator) and
the driver merges them onto the sinks (``_streams``).

Ray is an optional extra (``pip install 'streamsnn[ray]'``), imported here only.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import ipaddress
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from streamsnn.config import ConfigError, PipelineConfig, RayConfig
from streamsnn.events import Packet
from streamsnn.prediction import Prediction
from streamsnn.runtime import stopping
from streamsnn.runtime.build import Pipeline, build_pipeline, open_source
from streamsnn.runtime.report import LiveOutcomes, SampleOutcome, Totals
from streamsnn.runtime.runner import (
    LIVE_COUNTS,
    Runner,
    RunResult,
    SinkSet,
    close_sinks,
    run_fields,
    sink_counters,
    start_sinks,
)
from streamsnn.sinks import SINKS, Sink
from streamsnn.sources import SourceBase, StreamsSourceConfig

RESTARTS = 3  # restarts of a dead worker process, and re-runs of each of its ranges
RANGES_PER_WORKER = 4  # default ranges of a replay per worker (ray.samples_per_task: null)
# samples handed to a worker ahead, in batches (at least two ranges): its batch stays full while
# the driver takes a finished range and hands it the next
QUEUED_BATCHES = 2
# what the workers' counters add up to (besides source_stats)
SUMMED_COUNTERS = (
    *("model_s", "step_s", "model_calls", "slot_steps", "predictions", "dropped_slices", "skipped_slices"),
    *("out_of_bounds_events", "late_events", "ann_reference_s", *LIVE_COUNTS),
)
START_TIMEOUT_S = 600.0  # longest wait for the workers to start (free resources, imports, build)
STOP_WAIT_S = 30.0  # after a stop: longest wait for the live workers' last predictions and reports
_END = object()
_RESTARTED = object()  # a live worker's process died and restarts


@dataclasses.dataclass
class Shard:
    """What a replay worker returns for one range: its predictions (per sample, in step order),
    its outcomes and the worker's ``counters`` since its previous shard (``Runner.counters``
    totals and ``ann_reference_s``)."""

    predictions: list[Prediction]
    outcomes: list[SampleOutcome]
    counters: dict[str, Any]


class _Handover(Sink):
    """A worker's only sink: every prediction to ``put`` (a list's append, a queue's put)."""

    def __init__(self, put: Callable[[Prediction], Any]) -> None:
        self.put = put

    def write(self, pred: Prediction) -> None:
        pred.input = None  # a tensor only the exit policy needed
        self.put(pred)


def _worker_config(config: dict[str, Any], cwd: str) -> PipelineConfig:
    """A worker's pipeline: the driver's, run locally without sinks or progress bar. ``cwd``: the
    driver's working directory, where the config's relative paths start (a worker on another
    machine needs the same paths there)."""
    if os.path.isdir(cwd):
        os.chdir(cwd)
    cfg = PipelineConfig.model_validate(config)
    # torch gets the worker's CPUs but one (its source and sink threads take that one)
    runtime = cfg.runtime.model_copy(update={"progress": False, "threads": max(1, cfg.ray.cpus - 1)})
    return cfg.model_copy(update={"runtime": runtime, "sinks": [], "executor": "local"})


class _RangeFeed(SourceBase):
    """A replay worker's source: the ranges of the split handed to it (``add``), replayed one
    after the other as one replay that never ends, so the runner's batch stays full across
    ranges. ``exhausted(range, samples)`` is called once a range's last packet went on."""

    segmented = True
    live = False

    def __init__(self, cfg: PipelineConfig, exhausted: Callable[[tuple[int, int], set[int]], None]) -> None:
        with open_source(cfg, "ray worker") as probe:
            self.kind, self.labels, self.sensor = probe.kind, probe.labels, probe.sensor
        self.cfg, self.exhausted = cfg, exhausted
        self.ranges: queue.Queue[tuple[int, int]] = queue.Queue()

    def add(self, offset: int, limit: int) -> None:
        self.ranges.put((offset, limit))

    def __len__(self) -> int:
        return 0  # not known ahead

    def __iter__(self) -> Iterator[Packet]:
        while True:
            offset, limit = self.ranges.get()
            source_cfg = self.cfg.source.model_copy(update={"offset": offset, "limit": limit})
            samples: set[int] = set()
            with open_source(self.cfg.model_copy(update={"source": source_cfg}), "ray worker") as source:
                for packet in source:
                    samples.add(packet.sample)
                    yield packet
                for key, n in source.stats.items():
                    self.count(key, n)
            self.exhausted((offset, limit), samples)


class ReplayWorker:
    """A Ray actor running one replay for its lifetime (``_RangeFeed``): each ``replay`` call
    hands it a range of the split and returns once every sample of the range has its outcome
    and final prediction (calls wait side by side: a threaded actor)."""

    def __init__(self, config: dict[str, Any], cwd: str) -> None:
        cfg = _worker_config(config, cwd)
        pipe = build_pipeline(cfg, origin="ray worker")
        pipe.source.close()
        self.changed = threading.Condition()
        self.outcome_of: dict[int, int] = {}  # sample → its outcome's index
        self.decided: set[int] = set()  # samples whose final prediction was written
        self.predictions: dict[int, list[Prediction]] = collections.defaultdict(list)
        self.fed: dict[tuple[int, int], set[int]] = {}  # exhausted range → its samples
        self.error: BaseException | None = None
        self.feed = _RangeFeed(cfg, self._exhausted)
        sinks = [_Handover(self._written)]
        self.runner = Runner(dataclasses.replace(pipe, source=self.feed, sinks=sinks), self._recorded)
        self.last = self.runner.counters()
        threading.Thread(target=self._run, name="streamsnn-ray-replay", daemon=True).start()

    def _run(self) -> None:
        try:
            self.runner.run()
        except BaseException as err:
            with self.changed:
                self.error = err
                self.changed.notify_all()

    def _recorded(self, index: int, outcome: SampleOutcome) -> None:
        with self.changed:
            self.outcome_of[outcome.sample] = index
            self.changed.notify_all()

    def _written(self, pred: Prediction) -> None:
        with self.changed:
            self.predictions[pred.sample].append(pred)
            if pred.final:
                self.decided.add(pred.sample)
                self.changed.notify_all()

    def _exhausted(self, key: tuple[int, int], samples: set[int]) -> None:
        with self.changed:
            self.fed[key] = samples
            self.changed.notify_all()

    def _complete(self, key: tuple[int, int]) -> bool:
        samples = self.fed.get(key)
        return samples is not None and all(s in self.outcome_of and s in self.decided for s in samples)

    def pid(self) -> int:
        return os.getpid()

    def replay(self, offset: int, limit: int) -> Shard:
        key = (offset, limit)
        self.feed.add(offset, limit)
        with self.changed:
            self.changed.wait_for(lambda: self.error is not None or self._complete(key))
            if self.error is not None:
                raise self.error
            samples = sorted(self.fed.pop(key))
            indices = [self.outcome_of.pop(s) for s in samples]
            predictions = [p for s in samples for p in sorted(self.predictions.pop(s), key=lambda p: p.step)]
            self.decided.difference_update(samples)
        t_ann = time.perf_counter()
        self.runner.fill_ann_reference(indices)
        counters = self._counters_since_last()
        counters["ann_reference_s"] = time.perf_counter() - t_ann
        return Shard(predictions, [self.runner.outcomes[i] for i in indices], counters)

    def _counters_since_last(self) -> dict[str, Any]:
        """The runner's totals since the previous shard."""
        with self.changed:
            before, now = self.last, self.runner.counters()
            self.last = now
        counters = {k: v - before[k] for k, v in now.items() if k != "source_stats"}
        stats = now["source_stats"]
        counters["source_stats"] = {k: n - before["source_stats"].get(k, 0) for k, n in stats.items()}
        return counters


class StreamWorker:
    """A Ray actor (threaded: ``stop`` comes while ``stream`` runs) running one group of live
    streams: its sources are opened when the actor starts (a port in use fails it at once)."""

    def __init__(self, config: dict[str, Any], cwd: str) -> None:
        self.pipe = build_pipeline(_worker_config(config, cwd), origin="ray worker")

    def pid(self) -> int:
        return os.getpid()

    def stream(self) -> Iterator[list[Prediction] | dict[str, Any]]:
        """Run the group to the end of its sources (or ``stop``): its predictions as they come,
        in lists of those ready together, then its counters (``Runner.counters``; the driver
        takes the outcomes from the final predictions, so those of a worker that died count)."""
        ready: queue.Queue[Prediction | object] = queue.Queue()
        errors: list[BaseException] = []
        runner = Runner(dataclasses.replace(self.pipe, sinks=[_Handover(ready.put)]))

        def run() -> None:
            try:
                runner.run()
            except BaseException as err:
                errors.append(err)
            finally:
                ready.put(_END)

        thread = threading.Thread(target=run, name="streamsnn-ray-stream", daemon=True)
        thread.start()
        ended = False
        while not ended:
            batch = [ready.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(ready.get_nowait())
            ended = batch[-1] is _END
            predictions = [p for p in batch if p is not _END]
            if predictions:
                yield predictions
        thread.join()
        if errors:
            raise errors[0]
        yield {**runner.counters(), "ann_reference_s": 0.0}

    def stop(self) -> None:
        """End the group's streams as at the end of their sources: open decisions close."""
        self.pipe.source.close()


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
    if pipe.source.segmented and "offset" not in type(cfg.source).model_fields:
        raise ConfigError(
            f"executor: ray shards a dataset replay by sample; source '{cfg.source.type}' has no "
            "source.offset to select a range (use executor: local)"
        )
    if cfg.model.device.startswith("cuda") and cfg.ray.gpus == 0:
        raise ConfigError(
            f"ray.gpus: model.device is '{cfg.model.device}' but each worker gets no GPU (ray.gpus: 0); "
            "give it one (ray.gpus: 1, or a fraction to share a GPU)"
        )
    if pipe.source.segmented and cfg.runtime.realtime:
        raise ConfigError("executor: ray replays as fast as the workers go; set runtime.realtime: false")
    for i, sink in enumerate(cfg.sinks):
        if SINKS.plugin(sink.type).needs_events:
            raise ConfigError(f"sinks[{i}]: {sink.type} writes the events, which stay on the Ray workers")


def _ranges(first: int, n: int, size: int) -> list[tuple[int, int]]:
    """(offset, limit) of consecutive ranges of ``size`` covering positions ``first … first + n − 1``."""
    return [(first + start, min(size, n - start)) for start in range(0, n, size)]


def _range_size(cfg: PipelineConfig, n: int) -> int:
    """Samples per replayed range: ``ray.samples_per_task``, else ``RANGES_PER_WORKER`` ranges per
    worker of at least ``runtime.batch_size`` samples."""
    per_worker = RANGES_PER_WORKER * cfg.ray.workers
    return cfg.ray.samples_per_task or max(cfg.runtime.batch_size, math.ceil(n / per_worker))


def _stream_groups(pipe: Pipeline) -> list[PipelineConfig]:
    """The pipeline of each live worker: a ``streams`` source split into groups of
    ``ray.streams_per_worker`` sources (default: spread over ``ray.workers``); any other
    unsegmented source is one group."""
    cfg, rc = pipe.config, pipe.config.ray
    if not isinstance(cfg.source, StreamsSourceConfig):
        return [cfg]
    n = len(pipe.source)
    size = rc.streams_per_worker or math.ceil(n / rc.workers)
    slots = size * pipe.reset_policy.hypotheses
    if slots > cfg.runtime.batch_size:
        raise ConfigError(
            f"ray.streams_per_worker: {size} streams per worker need runtime.batch_size ≥ {slots} "
            f"(it is {cfg.runtime.batch_size}): one operator slot per stream and hypothesis"
        )
    return [
        cfg.model_copy(update={"source": cfg.source.model_copy(update={"offset": offset, "limit": limit})})
        for offset, limit in _ranges(cfg.source.offset, n, size)
    ]


def run_on_ray(pipe: Pipeline, samples_path: str | Path | None = None) -> RunResult:
    """Run ``pipe`` on Ray workers (``pipe.config.ray``), predictions to ``pipe``'s sinks: a
    dataset replay sharded by sample, live streams one worker per group of streams (their
    outcomes written to ``samples_path`` as they come, as a local stream run does). Returns the
    report of all samples (or decisions)."""
    rc = pipe.config.ray
    try:
        _check(pipe)
        ray = _ray()
        groups = None if pipe.source.segmented else _stream_groups(pipe)
    except ConfigError:
        _close(pipe)
        raise
    n = len(pipe.source)
    workers = len(groups) if groups else min(rc.workers, math.ceil(n / _range_size(pipe.config, n)))
    started_ray = not ray.is_initialized()
    try:
        try:
            with stopping.interruptible():  # a stop while Ray starts: nothing ran
                if started_ray and rc.address is None:
                    init_local(ray, max(1, workers) * rc.cpus)
                elif started_ray:
                    ray.init(address=rc.address, include_dashboard=False, log_to_driver=False)
            stopping.reclaim()  # Ray's init sets a SIGTERM handler of its own (exit at once)
            _check_resources(ray, rc, workers)
        except (ConfigError, KeyboardInterrupt):
            _close(pipe)
            raise
        return _replay(ray, pipe) if groups is None else _streams(ray, pipe, groups, samples_path)
    finally:
        if started_ray:
            ray.shutdown()


def init_local(ray: Any, num_cpus: int) -> None:
    """Start a local Ray instance with ``num_cpus`` CPUs that listens on 127.0.0.1 only (its
    GCS, raylet, object manager, runtime-env agent and workers; no dashboard). Ray makes a local
    instance's node address the machine's network address, and binds its servers to every
    interface unless that address is loopback; asking for 127.0.0.1 (``_node_ip_address``) is
    turned back into the network address. What Ray does on Windows and macOS, where clusters are
    off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``, read once at its import), is what a local
    instance needs: loopback. That switch is turned off while the instance starts and checked
    after: a Ray that started elsewhere is stopped, and the run refused, rather than exposed."""
    try:
        constants: Any = importlib.import_module("ray._private.ray_constants")
    except ImportError:  # another Ray: the check below tells
        constants = None
    before = getattr(constants, "ENABLE_RAY_CLUSTER", True)
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    finally:
        if constants is not None:
            constants.ENABLE_RAY_CLUSTER = before
    node = ray.util.get_node_ip_address()
    if not ipaddress.ip_address(node).is_loopback:
        ray.shutdown()
        raise ConfigError(
            f"executor: ray: Ray {ray.__version__} started its local instance on {node}, not on "
            "127.0.0.1 (it would listen on every interface); start a cluster and give its address "
            "(ray.address) to run on one"
        )


def _close(pipe: Pipeline) -> None:
    """Close what building ``pipe`` opened (a refused run)."""
    pipe.source.close()
    close_sinks(pipe.sinks, None)


def _check_resources(ray: Any, rc: RayConfig, workers: int) -> None:
    """The cluster has the CPUs and GPUs of all ``workers`` (else Ray would wait for them forever)."""
    have = ray.cluster_resources()
    for key, resource, each in (("cpus", "CPU", rc.cpus), ("gpus", "GPU", rc.gpus)):
        total = have.get(resource, 0.0)
        if workers * each > total:
            raise ConfigError(
                f"ray.{key}: {workers} workers × {each:g} {resource}s need {workers * each:g}, but the Ray "
                f"cluster has {total:g} (fewer ray.workers, or more ray.streams_per_worker for live streams)"
            )


def _start(
    ray: Any, cls: type, configs: list[PipelineConfig], rc: RayConfig, **options: Any
) -> tuple[list[Any], float]:
    """One ``cls`` actor per config (``rc.cpus``/``rc.gpus`` each, restarted when its process
    dies), and the seconds until all are built."""
    actor = ray.remote(num_cpus=rc.cpus, num_gpus=rc.gpus, max_restarts=RESTARTS, **options)(cls)
    workers = [actor.remote(c.model_dump(), os.getcwd()) for c in configs]
    t_start = time.perf_counter()
    try:
        ray.get([worker.pid.remote() for worker in workers], timeout=START_TIMEOUT_S)
    except ray.exceptions.RayActorError as err:
        _kill(ray, workers)
        raise ConfigError(f"a Ray worker could not build the pipeline: {err}") from None
    except ray.exceptions.GetTimeoutError:
        _kill(ray, workers)
        raise ConfigError(
            f"the Ray workers did not start within {START_TIMEOUT_S:g} s: the cluster has no free "
            f"{rc.cpus} CPUs / {rc.gpus:g} GPUs for each of them (ray.cpus, ray.gpus)"
        ) from None
    return workers, time.perf_counter() - t_start


def _kill(ray: Any, workers: list[Any]) -> None:
    for worker in workers:
        with contextlib.suppress(Exception):
            ray.kill(worker)


def _replay(ray: Any, pipe: Pipeline) -> RunResult:
    """Ranges of the split to the workers, their predictions to the sinks as ranges finish."""
    cfg, rc = pipe.config, pipe.config.ray
    n = len(pipe.source)
    pipe.source.close()  # the workers read the data; the driver only needed its length
    size = _range_size(cfg, n)
    ranges = collections.deque(_ranges(cfg.source.offset, n, size))
    queued = max(2, math.ceil(QUEUED_BATCHES * cfg.runtime.batch_size / size))  # ranges per worker
    report = None
    workers: list[Any] = []
    sinks = SinkSet(pipe)
    bar = tqdm(total=n, desc=f"{cfg.name} (ray)", unit="sample", disable=not cfg.runtime.progress)
    try:
        # like a local run's wall time, the replay's starts once the pipelines are built
        configs = [cfg] * min(rc.workers, len(ranges))
        options = {"max_task_retries": RESTARTS, "max_concurrency": queued + 1}
        with stopping.interruptible():  # a stop while the workers start: nothing ran
            workers, workers_start_s = _start(ray, ReplayWorker, configs, rc, **options)
            started = time.perf_counter()
            start_sinks(pipe.sinks)
        pending: dict[Any, Any] = {}  # result ref → its worker
        shards: list[Shard] = []

        def submit(worker: Any) -> None:
            offset, limit = ranges.popleft()
            pending[worker.replay.remote(offset, limit)] = worker

        for worker in workers:
            for _ in range(queued):
                if ranges:
                    submit(worker)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C without stopping.stop_signals()
            while pending and not stopping.requested():
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
                for ref in ready:
                    worker = pending.pop(ref)
                    shard = ray.get(ref)
                    _write(sinks, shard.predictions)
                    shards.append(shard)
                    bar.update(len(shard.outcomes))
                    if ranges:
                        submit(worker)
        interrupted = bool(pending)  # a stop came first
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        wall = time.perf_counter() - started
        outcomes = sorted((o for s in shards for o in s.outcomes), key=lambda o: o.sample)
        counters = [s.counters for s in shards]
        report = _report(pipe, Totals.of(outcomes), counters, wall, interrupted, len(workers), sinks)
        report["workers_start_s"] = round(workers_start_s, 3)
        return RunResult(report, outcomes)
    finally:
        bar.close()
        sinks.close(report)
        _kill(ray, workers)


def _write(sinks: SinkSet, predictions: list[Prediction]) -> None:
    """``predictions`` to the sinks, handed on to the system (flushed) after them."""
    for pred in predictions:
        sinks.write(pred)
    sinks.flush()


class _LiveMerge:
    """What the live workers sent, merged: predictions renumbered across restarts and written to
    the sinks, outcomes from the final ones (``kept``: in bounded memory, as a local stream
    run keeps them), the workers' run reports."""

    def __init__(self, pipe: Pipeline, sinks: SinkSet, samples_path: str | Path | None) -> None:
        self.pipe, self.sinks = pipe, sinks
        self.kept = LiveOutcomes(samples_path)
        self.reports: list[dict[str, Any]] = []
        self.restarts = 0
        self.decided: collections.Counter[str] = collections.Counter()  # decisions per stream
        self.first: dict[str, int] = {}  # a stream's number for its current attempt's first decision
        self.streams_of: dict[int, set[str]] = collections.defaultdict(set)  # per worker

    def restarted(self, k: int) -> None:
        """Worker ``k`` starts its group again: its streams' decisions are numbered on."""
        self.restarts += 1
        self.first.update({stream: self.decided[stream] for stream in self.streams_of[k]})

    def predictions(self, k: int, preds: list[Prediction]) -> int:
        """Write worker ``k``'s ``preds`` to the sinks; the number of decisions among them."""
        counted = self.pipe.config.runtime.count_operations
        for pred in preds:
            self.streams_of[k].add(pred.stream)
            pred.sample += self.first.get(pred.stream, 0)
            if pred.final:
                self.decided[pred.stream] += 1
                self.kept.add(SampleOutcome.of(pred, counted))
        _write(self.sinks, preds)
        return sum(p.final for p in preds)


def _streams(
    ray: Any, pipe: Pipeline, groups: list[PipelineConfig], samples_path: str | Path | None
) -> RunResult:
    """One worker per group of streams; their predictions merged onto the sinks as they come
    (one thread per worker follows its stream of results) and the report built from the final
    ones. A worker whose process dies is restarted with its group (its sources open again: what
    they sent meanwhile is gone) and counted in ``worker_restarts``; decisions made before stay
    in the report, and the group's decisions are numbered on from them. A stop (Ctrl-C, SIGTERM)
    ends every group's streams (open decisions close) and waits up to ``STOP_WAIT_S`` for their
    last predictions."""
    cfg = pipe.config
    pipe.source.close()  # the workers open the sources, each its group
    received: queue.Queue[tuple[int, Any]] = queue.Queue()  # (worker, what it sent)
    ending = threading.Event()
    report = None
    workers: list[Any] = []
    sinks = SinkSet(pipe)
    merge: _LiveMerge | None = None
    bar = tqdm(desc=f"{cfg.name} (ray)", unit="decision", disable=not cfg.runtime.progress)

    def follow(k: int) -> None:
        for attempt in range(RESTARTS + 1):
            try:
                for ref in workers[k].stream.remote():
                    received.put((k, ray.get(ref)))
                break
            except ray.exceptions.RayActorError as err:
                if ending.is_set() or attempt == RESTARTS or not _restarted(ray, workers[k]):
                    received.put((k, err))
                    break
                received.put((k, _RESTARTED))
            except BaseException as err:
                received.put((k, err))
                break
        received.put((k, _END))

    def stop() -> None:
        ending.set()
        for worker in workers:
            with contextlib.suppress(Exception):
                worker.stop.remote()

    try:
        options = {"max_task_retries": 0, "max_concurrency": 2}  # the driver restarts the stream
        with stopping.interruptible():  # a stop while the workers start: nothing ran
            workers, workers_start_s = _start(ray, StreamWorker, groups, cfg.ray, **options)
            started = time.perf_counter()
            start_sinks(pipe.sinks)
        for k in range(len(workers)):
            threading.Thread(target=follow, args=(k,), daemon=True).start()
        merge = _LiveMerge(pipe, sinks, samples_path)
        errors: list[BaseException] = []
        running, interrupted, deadline = len(workers), False, math.inf
        while running and time.monotonic() < deadline:
            if stopping.requested() and not interrupted:  # the first stop signal (later ones: nothing)
                interrupted, deadline = True, time.monotonic() + STOP_WAIT_S
                stop()
            try:
                try:
                    k, item = received.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    running -= 1
                elif item is _RESTARTED:
                    merge.restarted(k)
                elif isinstance(item, dict):
                    merge.reports.append(item)
                elif isinstance(item, BaseException):
                    errors.append(item)
                    stop()
                else:
                    bar.update(merge.predictions(k, item))
            except KeyboardInterrupt:  # Ctrl-C without stopping.stop_signals(); a second one ends the wait
                if interrupted:
                    raise
                interrupted, deadline = True, time.monotonic() + STOP_WAIT_S
                stop()
        if errors:
            raise _cause(errors[0])
        wall = time.perf_counter() - started
        report = _report(pipe, merge.kept, merge.reports, wall, interrupted, len(workers), sinks)
        report["workers_start_s"] = round(workers_start_s, 3)
        report["worker_restarts"] = merge.restarts
        return RunResult(report, merge.kept.outcomes)
    finally:
        if merge is not None:
            merge.kept.close()
        stop()
        bar.close()
        sinks.close(report)
        _kill(ray, workers)


def _restarted(ray: Any, worker: Any, timeout_s: float = 300.0) -> bool:
    """Wait until ``worker``'s process is back (Ray restarts it and builds its pipeline again);
    False when it is dead for good."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get(worker.pid.remote(), timeout=timeout_s)
            return True
        except ray.exceptions.ActorUnavailableError:  # still restarting
            time.sleep(0.2)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return False
    return False


def _cause(err: BaseException) -> BaseException:
    """A worker's exception as raised there (Ray wraps it in a ``RayTaskError``)."""
    as_cause = getattr(err, "as_instanceof_cause", None)
    return as_cause() if as_cause is not None else err


def _report(
    pipe: Pipeline,
    outcomes: Totals | LiveOutcomes,
    counters: list[dict[str, Any]],
    wall: float,
    interrupted: bool,
    workers: int,
    sinks: SinkSet,
) -> dict[str, Any]:
    """The report of a local run of the same samples, from all outcomes (a replay's, or a live
    run's kept), with the workers' ``counters`` summed (model and step shares: of the workers'
    time)."""
    total: dict[str, Any] = {key: sum(c[key] for c in counters) for key in SUMMED_COUNTERS}
    stats: collections.Counter[str] = collections.Counter()
    for c in counters:
        stats.update(c["source_stats"])
    total["source_stats"] = dict(stats)
    extra = {
        **run_fields(
            pipe.config, outcomes.decisions, total, wall, interrupted, workers, pipe.model.discretisation
        ),
        "torch_threads": pipe.config.ray.cpus,
        **sink_counters([], sinks.errors),  # event-taking sinks are refused on Ray (_check)
        "executor": "ray",
        "workers": workers,
    }
    report = outcomes.report(extra)
    report["ann_reference_s"] = round(total["ann_reference_s"], 3)
    return report
