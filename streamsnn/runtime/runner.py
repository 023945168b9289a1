"""Run a pipeline: source thread → bounded queue → stepping loop → bounded queue → sink thread.

Stages and their backpressure rules:

- **source thread**: reads packets, cuts them into slices (``Slicer``) and encodes them (off the
  stepping loop). Segmented sources
  (dataset replay) put one item per sample into the input queue and *block* when it is full:
  nothing is lost. Live sources put single slices and *drop the oldest* slice when the stepping
  loop falls behind, counting every drop (``dropped_slices``).
- **stepping loop** (caller's thread): keeps up to ``batch_size`` samples or streams in flight,
  one operator slot each; every iteration steps the next slice (``runtime.chunk``: up to k
  slices) of every ready slot in one batch and asks the exit policy about every prediction. A
  sample that exits frees its slot for the next sample at once (continuous batching). With
  ``realtime: true`` a replayed slice is only stepped once its sensor time has passed on the
  wall clock.
- **sink thread**: writes predictions to the sinks, handed over once per operator call (a
  replay that is not realtime: in groups of up to 256 or every 50 ms), and flushes them after
  every group; its queue blocks (predictions are never dropped here; network sinks apply their
  own drop rule). A sink that fails (a full disk) is named, closed and left out from then on
  (``SinkSet``): the others and the report still finish, and the report lists it
  (``sink_errors``).

Ctrl-C or SIGTERM (``stopping``) ends the stepping loop at its next turn, as the end of the input
would: the source stops, the sinks get every prediction made and the report is still returned
(``interrupted``). A resumed replay (``resumes`` sinks) skips the samples they already hold.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from streamsnn.config import PipelineConfig
from streamsnn.events import Packet, Slice
from streamsnn.options import ConfigError
from streamsnn.prediction import Prediction, read_out
from streamsnn.runtime import stopping
from streamsnn.runtime.build import Pipeline
from streamsnn.runtime.live import LiveStream
from streamsnn.runtime.queues import BoundedQueue, Closed
from streamsnn.runtime.report import LiveOutcomes, SampleOutcome, build_report
from streamsnn.runtime.samples import SampleSlices, encode_slices, encoded_sample, to_slice
from streamsnn.runtime.turn import Turn
from streamsnn.sinks import SINKS, Sink
from streamsnn.slicing import EventSlice, Slicer
from streamsnn.snn.counting import energy_uj
from streamsnn.snn.models import is_spiking

log = logging.getLogger(__name__)

_END = object()


@dataclass
class StreamEnd:
    """An unsegmented stream has no more slices."""

    stream: str


@dataclass
class Slot:
    """What holds operator slots: a sample being replayed (one slot, key ``(stream, sample)``), or a
    live stream (one decision after another; key: the stream) whose hypotheses hold a slot each
    (keys ``(stream, h)``, ``stream_decisions``)."""

    key: Any
    stream: str
    sample: int
    label: int | None
    live: bool
    slices: collections.deque[Slice] = field(default_factory=collections.deque)
    started_ns: int = 0
    compute_s: float = 0.0
    mean_input: torch.Tensor | None = None  # a replayed sample's mean input (ANN reference)
    decision: Prediction | None = None  # the exit decision once made
    last: Prediction | None = None
    ended: bool = False  # no more slices will come
    n_slices: int | None = None  # a replayed sample's length (steps at full T)
    stream_decisions: LiveStream | None = None  # a live stream's hypotheses and decision rule

    @property
    def keys(self) -> list[Any]:
        """The operator keys stepped for this slot: a live stream's hypotheses, else its own."""
        return self.stream_decisions.keys if self.stream_decisions is not None else [self.key]

    def ready(self, now_ns: int) -> bool:
        """A slice is queued and, in a realtime run, has happened."""
        return bool(self.slices) and (self.live or self.release_ns(self.slices[0]) <= now_ns)

    def release_ns(self, item: Slice) -> int:
        """Wall time at which a replayed slice has happened (realtime pacing)."""
        return self.started_ns + (item.t_end_us - item.sample_t0_us) * 1_000


def run_threads(requested: int | None) -> int:
    """torch's intra-op threads for a run: ``requested``, else every usable core but one, which
    the source and sink threads take (at least one). On a small machine this matters: work on
    another thread stalls every parallel kernel of a model that uses all cores (measured on
    2 cores: a replay with exit ~10 % faster on 1 thread, batch-1 streaming up to 2× faster)."""
    if requested:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


@dataclass
class RunResult:
    """The report and the outcomes: a replay's all; a stream run's from its per-sample file
    (``OutcomeLog``), else the last ones it kept (``LiveOutcomes``)."""

    report: dict[str, Any]
    outcomes: Sequence[SampleOutcome]


class Runner:
    """``on_outcome(index, outcome)``: called from the stepping loop as each outcome is recorded
    (the ``index``-th; a replay's ANN reference is filled in later, ``fill_ann_reference``).
    A replay of samples keeps its outcomes (``outcomes``); a run of continuous streams, which a
    live source may never end, keeps running totals (``kept``) and writes each outcome to
    ``samples_path`` (the per-sample file) as it is made, if given."""

    def __init__(
        self,
        pipe: Pipeline,
        on_outcome: Callable[[int, SampleOutcome], None] | None = None,
        samples_path: str | Path | None = None,
    ) -> None:
        self.pipe = pipe
        self.on_outcome = on_outcome
        self.cfg = pipe.config
        rt = self.cfg.runtime
        self.live = pipe.source.live
        # a live source's slices may be dropped, never the end of a stream or of the source
        droppable = lambda item: isinstance(item, Slice)  # noqa: E731
        self.in_q = BoundedQueue(rt.queue_size, "drop_oldest" if self.live else "block", droppable)
        self.out_q = BoundedQueue(rt.queue_size, "block")
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.sinks = SinkSet(pipe)
        self.held: set[tuple[str, int]] = set()  # samples a resumed replay skips
        self.resumed_samples = 0  # of those, met in the source
        self.slicers: dict[str, Slicer] = {}
        self.slots: dict[Any, Slot] = {}
        self.outcomes: list[SampleOutcome] = []  # a replay's
        # a stream (continuous, endless if live) keeps running totals instead
        self.kept = None if pipe.source.segmented else LiveOutcomes(samples_path)
        self.decisions = 0  # outcomes recorded
        self.predictions = 0  # predictions handed to the sinks
        self.skipped_slices = 0
        self.late_in_samples = 0  # late events of slicers no longer kept (ended samples, streams)
        self.live_counts: collections.Counter[str] = collections.Counter()  # of closed live streams
        self.dropped_in_slots = 0
        self.source_done = False
        self._held: Any = None  # an item waiting for a free slot (replay only)
        self._outbox: list[Prediction] = []  # predictions not yet handed to the sink thread
        self._handed_s = 0.0
        self.needs_input = pipe.exit_policy.needs_input
        self.ann_reference = not self.live and not is_spiking(pipe.model.ann)
        self._ann_inputs: dict[int, torch.Tensor] = {}  # outcome index → its sample's mean input
        self.step_s = self.model_s = 0.0
        self.model_calls, self.slot_steps = 0, 0
        self.alpha = self.cfg.model.alpha
        self._turn = Turn()  # open while the stepping loop is in the model or waiting

    # -- source stage ----------------------------------------------------------------------
    def _source_main(self) -> None:
        try:
            with self.pipe.source as source:
                for packet in self._packets(source):
                    if self.stop.is_set():
                        break
                    if self.held and packet.end_of_sample and (packet.stream, packet.sample) in self.held:
                        self.resumed_samples += 1
                        continue
                    self.sinks.write_packet(packet, source.sensor)
                    for item in self._cut(packet):
                        self.in_q.put(item)
            for stream, slicer in self.slicers.items():  # end of an unsegmented stream: the tail
                for item in self._live_slices(stream, slicer.flush(), last=True):
                    self.in_q.put(item)
                self.in_q.put(StreamEnd(stream))
            self.in_q.put(_END)
        except Closed:
            pass
        except BaseException as err:  # reported by the stepping loop
            self.errors.append(err)
            self.in_q.close()

    def _packets(self, source: Any) -> Any:
        """The source's packets; a replay reads the next one while the stepping loop is in the
        model or waiting (``_turn``, at most 5 ms late), so the two rarely want the GIL at once:
        a thread holding it delays the loop's Python between model calls."""
        packets = iter(source)
        while True:
            self._replay_waits_for_turn()
            packet = next(packets, None)
            if packet is None:
                return
            self._replay_waits_for_turn()  # and again before cutting and encoding it
            yield packet

    def _replay_waits_for_turn(self) -> None:
        if not self.live:  # a live source is never held back
            self._turn.wait(0.005)

    def _cut(self, packet: Packet) -> list[Any]:
        if self.pipe.source.kind == "frames" or packet.end_of_sample:
            slicer = self.pipe.new_slicer() if self.pipe.source.kind == "events" else None
            frame_steps = int(self.cfg.slicing.n_time_bins or 1)
            return [encoded_sample(packet, slicer, self.pipe.encoder, frame_steps, self.ann_reference)]
        slicer = self.slicers.get(packet.stream)
        if slicer is None:
            slicer = self.slicers[packet.stream] = self.pipe.new_slicer()
        cut = slicer.push(packet.data)
        if packet.t_end_us is not None:  # the packet's end is a heartbeat: silent windows close on time
            cut += slicer.advance(packet.t_end_us)
        out: list[Any] = self._live_slices(packet.stream, cut, label=packet.label)
        if packet.end_of_stream:
            out += self._live_slices(packet.stream, slicer.flush(), label=packet.label, last=True)
            out.append(StreamEnd(packet.stream))
            self.late_in_samples += self.slicers.pop(packet.stream).late_events
        return out

    def _live_slices(
        self, stream: str, cut: list[EventSlice], label: int | None = None, last: bool = False
    ) -> list[Slice]:
        now = time.monotonic_ns()
        slices = [to_slice(s, stream, -1, -1, s.t_start_us, label) for s in cut]
        out = encode_slices(self.pipe.encoder, slices)
        for s in out:
            s.arrival_ns = now
        if last and out:
            out[-1].last = True
        return out

    # -- sink stage ------------------------------------------------------------------------
    def _sink_main(self) -> None:
        try:
            while True:
                try:
                    preds = self.out_q.get()  # a group of predictions (_hand_over)
                except Closed:
                    break
                for pred in preds:
                    self._turn.wait(0.005)  # write while the stepping loop is in the model
                    self.sinks.write(pred)
                self.sinks.flush()
        except BaseException as err:
            self.errors.append(err)
            self.stop.set()
            self.out_q.close()  # the stepping loop must not wait on a queue nobody reads

    def _hand_over(self, preds: list[Prediction], flush: bool = False) -> None:
        """Queue ``preds`` for the sink thread: at once for live and realtime runs, else in
        groups (every 256 predictions or 50 ms) to spare a replay most thread wake-ups."""
        self._outbox += preds
        self.predictions += len(preds)
        now = time.perf_counter()
        due = flush or self.live or self.cfg.runtime.realtime or len(self._outbox) >= 256
        if self._outbox and (due or now - self._handed_s >= 0.05):
            self._turn.begin()  # a full queue blocks the loop: the sink thread must not wait for it
            with contextlib.suppress(Closed):  # the sink thread failed: its error comes after the loop
                self.out_q.put(self._outbox)
            self._turn.end()
            self._outbox, self._handed_s = [], now

    # -- stepping loop ---------------------------------------------------------------------
    def _admit(self, block: bool) -> None:
        """Move items from the input queue into slots while there is room. A replay (not live)
        never drops: an item that needs a new slot while all are taken waits (``_held``), and a
        stream's queued slices are bounded by ``queue_size`` by not reading further."""
        capacity = self.pipe.operator.capacity
        while not self.source_done:
            if not self.live and self._backlogged(capacity):
                return
            if self._held is not None:
                item, self._held = self._held, None
            else:
                try:
                    if block:
                        self._turn.begin()
                    item = self.in_q.get(timeout=0.05) if block else self.in_q.get_nowait()
                    self._turn.end()
                except TimeoutError:
                    self._hand_over([])  # waiting for input: pass on what waits (its 50 ms rule)
                    return
                except Closed:
                    self.source_done = True
                    return
            block = False
            new_slot = isinstance(item, SampleSlices) or (
                isinstance(item, Slice) and item.stream not in self.slots
            )
            if not self.live and new_slot and len(self.slots) >= capacity:
                self._held = item
                return
            if item is _END:
                self.source_done = True
            elif isinstance(item, SampleSlices):
                self._open_sample(item)
            elif isinstance(item, StreamEnd):
                self._end_stream(item.stream)
            else:
                self._route_live(item)

    def _backlogged(self, capacity: int) -> bool:
        if self._held is not None and len(self.slots) >= capacity:
            return True
        queued = [len(slot.slices) for slot in self.slots.values() if slot.live]
        if queued:
            return max(queued) >= self.cfg.runtime.queue_size
        return len(self.slots) >= capacity

    def _open_sample(self, item: SampleSlices) -> None:
        key = (item.stream, item.sample)
        slot = Slot(
            key, item.stream, item.sample, item.label, live=False, slices=collections.deque(item.slices)
        )
        self.late_in_samples += item.late_events
        slot.mean_input = item.mean_input
        slot.started_ns = time.monotonic_ns()
        slot.ended, slot.n_slices = True, len(item.slices)
        self.pipe.operator.attach(key)
        self.slots[key] = slot

    def _route_live(self, item: Slice) -> None:
        slot = self.slots.get(item.stream)
        if slot is None:
            pipe = self.pipe
            decisions = LiveStream(item.stream, pipe.reset_policy, pipe.exit_policy, pipe.gate)
            if len(pipe.operator.keys) + len(decisions.keys) > pipe.operator.capacity:
                self.skipped_slices += 1
                return
            slot = Slot(item.stream, item.stream, 0, None, live=True, stream_decisions=decisions)
            for key in slot.keys:
                pipe.operator.attach(key)
            self.slots[item.stream] = slot
        if len(slot.slices) >= self.cfg.runtime.queue_size:  # the same drop-oldest rule per stream
            slot.slices.popleft()
            self.dropped_in_slots += 1
        slot.slices.append(item)
        slot.ended = slot.ended or item.last

    def _end_stream(self, stream: str) -> None:
        """No more slices for ``stream``: the slice already queued last closes its decision, or,
        when none is queued, the newest prediction becomes final (``end_of_stream``)."""
        slot = self.slots.get(stream)
        if slot is None:
            return
        slot.ended = True
        if slot.slices:
            slot.slices[-1].last = True
            return
        decisions = slot.stream_decisions
        if slot.last is not None and not slot.last.final and decisions is not None:
            final = decisions.end(slot.last)
            if final is not None:
                final.emit_time = time.time()
                self._hand_over([final])
                self._record(slot, final, full=None)
        self._close(slot)

    def _take(self, slots: list[Slot]) -> list[list[Slice]]:
        """Per slot, its next slice (up to ``runtime.chunk`` slices), stamped for latency."""
        now_ns = time.monotonic_ns()
        chunk = self.cfg.runtime.chunk
        items: list[list[Slice]] = []
        for slot in slots:
            taken = [slot.slices.popleft() for _ in range(min(chunk, len(slot.slices)))]
            for item in taken:
                if not slot.live and not item.arrival_ns:
                    item.arrival_ns = slot.release_ns(item) if self.cfg.runtime.realtime else now_ns
            items.append(taken)
        return items

    def _infer(self, slots: list[Slot], items: list[list[Slice]]) -> tuple[list, list]:
        """One operator call for ``items`` (a single step, or a chunk: slots with fewer slices
        left get zero input after their last): accumulated outputs T×B×K and counters T×B×4,
        as Python lists (the read-out is cheaper in floats than in tensor calls)."""
        keys = [key for slot in slots for key in slot.keys]
        self.model_calls += 1
        self.slot_steps += len(keys)
        chunk = max(len(taken) for taken in items) if self.cfg.runtime.chunk > 1 else 1
        if chunk == 1:  # a live stream's hypotheses all take its slice
            inputs = [taken[0].input for slot, taken in zip(slots, items, strict=True) for _ in slot.keys]
            batch = inputs[0] if len(inputs) == 1 else torch.cat(inputs)  # 1×C×H×W each
        else:
            zero = torch.zeros_like(items[0][0].input)
            steps = [
                torch.cat([taken[t].input if t < len(taken) else zero for taken in items])
                for t in range(chunk)
            ]
            batch = torch.stack(steps)
        t_model = time.perf_counter()
        self._turn.begin()
        operator = self.pipe.operator
        result = operator.step(keys, batch) if chunk == 1 else operator.run(keys, batch)
        self._turn.end()
        self.model_s += time.perf_counter() - t_model
        outputs, counts = result.output.tolist(), result.counts.tolist()
        return ([outputs], [counts]) if chunk == 1 else (outputs, counts)

    def _step(self, slots: list[Slot]) -> None:
        """Step ``slots`` by one slice each (or a chunk), emit their predictions and apply the
        policies: a replayed sample's exit (``_decide_sample``), a live stream's decision rule
        (``_decide_live``)."""
        t_begin = time.perf_counter()
        items = self._take(slots)
        restart = [
            key
            for slot, taken in zip(slots, items, strict=True)
            if slot.stream_decisions is not None
            for key in slot.stream_decisions.before(taken[0], slot.compute_s)
        ]
        self.pipe.operator.reset(restart)
        t0 = time.perf_counter()
        outputs, counts = self._infer(slots, items)
        shared_s = time.perf_counter() - t0
        emitted: list[Prediction] = []
        row = 0  # the slot's first row of the call
        for i, slot in enumerate(slots):
            # encoding and the whole call come before any of the call's predictions
            slot.compute_s += shared_s
            for item in items[i]:
                slot.compute_s += item.encode_s
            if slot.stream_decisions is not None:
                self._decide_live(slot, items[i][0], outputs[0], counts[0], row, emitted)
            else:
                self._decide_sample(slot, items[i], outputs, counts, row, emitted)
            row += len(slot.keys)
        if emitted or self._outbox:
            self._hand_over(emitted)
        decay = self.pipe.reset_policy.decay
        if decay is not None:  # live streams forget old evidence, slice by slice
            live = [key for slot in slots if slot.live and slot.key in self.slots for key in slot.keys]
            self.pipe.operator.decay(live, decay)
        self.step_s += time.perf_counter() - t_begin

    def _decide_sample(
        self, slot: Slot, items: list[Slice], outputs: list, counts: list, row: int, emitted: list[Prediction]
    ) -> None:
        """A replayed sample's predictions after ``items`` (its slices of this call, rows ``row``
        of ``outputs``/``counts``, T×B) and its exit."""
        for t, item in enumerate(items):
            if slot.key not in self.slots:
                break  # closed at an exit earlier in this chunk
            pending = len(items) - t - 1
            if slot.decision is not None and (pending or slot.slices):
                continue  # stepping on silently to full T: only the last step is read out
            t_pol = time.perf_counter()
            steps, spikes, acs, macs = counts[t][row]
            out = outputs[t][row]
            probs, confidence, cls = read_out(out, steps, self.alpha)
            pred = Prediction(
                stream=slot.stream,
                sample=slot.sample,
                step=int(steps),
                t_start_us=item.t_start_us,
                t_end_us=item.t_end_us,
                cls=cls,
                confidence=confidence,
                probs=probs,
                label=slot.label,
                spikes=int(spikes),
                synaptic_events=int(acs),
                energy_uj=energy_uj(acs, macs),
                input_latency_ms=(item.t_end_us - item.sample_t0_us) / 1000.0,
                output=out,
            )
            if self.needs_input:
                pred.input = item.input
            slot.last = pred
            if slot.decision is None:
                reason = self.pipe.exit_policy.decide(pred)
                if reason is None and item.last:
                    reason = "end_of_sample"
                pred.final, pred.reason = reason is not None, reason
                slot.compute_s += time.perf_counter() - t_pol
                pred.compute_latency_ms = slot.compute_s * 1000.0
                pred.emit_time = time.time()
                pred.e2e_latency_ms = (time.monotonic_ns() - item.arrival_ns) / 1e6
                emitted.append(pred)
                if pred.final:
                    slot.decision = pred
            if slot.decision is not None:
                self._after_exit(slot, pred, pending)

    def _after_exit(self, slot: Slot, pred: Prediction, pending: int) -> None:
        """The sample has decided; ``pending``: its slices already stepped in this call after
        ``pred``'s."""
        more = pending + len(slot.slices)
        if more and self.cfg.runtime.full_t:
            return  # keep stepping without emitting, to know the full-T prediction
        self.skipped_slices += more
        self._record(slot, slot.decision, full=None if more else pred)
        self._close(slot)

    def _decide_live(
        self, slot: Slot, item: Slice, outputs: list, counts: list, row: int, emitted: list[Prediction]
    ) -> None:
        """A live stream's prediction after ``item`` from its hypotheses (rows ``row`` onwards
        of ``outputs``/``counts``, B), decided by its rule (``runtime/live.py``)."""
        t_pol = time.perf_counter()
        decisions = slot.stream_decisions
        assert decisions is not None
        preds = []
        for h, hypothesis in enumerate(decisions.hypotheses):
            _, spikes, acs, macs = counts[row + h]
            out = outputs[row + h]
            probs, confidence, cls = read_out(out, hypothesis.age, self.alpha)
            pred = decisions.prediction(
                h,
                item,
                cls=cls,
                confidence=confidence,
                probs=probs,
                spikes=int(spikes),
                synaptic_events=int(acs),
                energy_uj=energy_uj(acs, macs),
                output=out,
            )
            if self.needs_input:
                pred.input = item.input
            preds.append(pred)
        slot.compute_s += time.perf_counter() - t_pol
        decided = decisions.decide(preds, slot.compute_s, last=item.last)
        pred = decided.pred
        pred.emit_time = time.time()
        pred.e2e_latency_ms = (time.monotonic_ns() - item.arrival_ns) / 1e6
        emitted.append(pred)
        slot.last = pred
        self.pipe.operator.reset(decided.reset)
        self.pipe.operator.restart_counts(decided.restart)
        if pred.final:
            self._record(slot, pred, full=None)
        if item.last:
            self._close(slot)

    def _record(self, slot: Slot, d: Prediction, full: Prediction | None) -> None:
        """Decision ``d`` of ``slot`` (``full``: its last prediction when stepped to its end):
        kept by a replay, added to a stream run's totals and per-sample file."""
        counted = self.pipe.operator.count_operations
        index = self.decisions
        self.decisions += 1
        full_cls, full_steps = (None, slot.n_slices) if full is None else (full.cls, full.step)
        outcome = SampleOutcome.of(d, counted, full_cls, full_steps)
        if self.kept is not None:
            self.kept.add(outcome)
        else:
            if full is not None and slot.mean_input is not None:
                # the ANN reference comes after the stepping loop (fill_ann_reference)
                self._ann_inputs[index] = slot.mean_input
            self.outcomes.append(outcome)
        if self.bar is not None:
            self.bar.update(1)
        if self.on_outcome is not None:
            self.on_outcome(index, outcome)

    def fill_ann_reference(
        self, indices: Iterable[int] | None = None, stop: Callable[[], bool] | None = None
    ) -> bool:
        """The ANN on the mean input of every sample replayed to its end (of the outcomes
        ``indices``, default all), in batches of 64: after the stepping loop, not part of the
        streaming work. Each mean input is dropped once used. ``stop`` (checked before every
        batch) ends it early: False then, and the report leaves the ANN accuracy out."""
        model = self.pipe.model.ann
        pending = list(self._ann_inputs) if indices is None else [i for i in indices if i in self._ann_inputs]
        with torch.inference_mode():
            for start in range(0, len(pending), 64):
                if stop is not None and stop():
                    return False
                part = pending[start : start + 64]
                outputs = model(torch.cat([self._ann_inputs.pop(i) for i in part])).double().tolist()
                for i, out in zip(part, outputs, strict=True):
                    self.outcomes[i].cls_ann, self.outcomes[i].ann_output = int(np.argmax(out)), out
        return True

    def _close(self, slot: Slot) -> None:
        for key in slot.keys:
            self.pipe.operator.detach(key)
        if slot.stream_decisions is not None:
            self.live_counts.update(slot.stream_decisions.counts)
        del self.slots[slot.key]

    def run(self) -> RunResult:
        """The run to the end of the source, a stop (``stopping``, Ctrl-C) or an error (raised).
        A stop signal only ends the work under way (``stopping.deferred``): the stepping loop at
        its next turn, else the ANN reference pass at its next batch, or before anything started,
        the run (a report of nothing)."""
        report = None
        with stopping.deferred():
            try:
                stopped = self._start()
                report = self._run_stages(stopped)
                return RunResult(report, self.outcomes if self.kept is None else self.kept.outcomes)
            finally:
                if self.kept is not None:
                    self.kept.close()
                self.sinks.close(report)

    def _start(self) -> bool:
        """Start the sinks (a resumed replay: the samples to skip); True if a stop signal or
        Ctrl-C came meanwhile (the run then steps nothing)."""
        try:
            resuming = [sink for sink in self.pipe.sinks if sink.resumes]
            if resuming and not self.pipe.source.segmented:
                raise ConfigError(
                    f"resume: continues a replay of samples; source '{self.cfg.source.type}' is a "
                    "continuous stream"
                )
            with stopping.interruptible():  # waiting for subscribers checks nothing
                start_sinks(self.pipe.sinks)
            if resuming:
                self.held = set.intersection(*(sink.held_samples() for sink in resuming))
            return False
        except KeyboardInterrupt:
            return True
        except BaseException:
            self.pipe.source.close()
            raise

    def _run_stages(self, stopped: bool) -> dict[str, Any]:
        """Source and sink threads around the stepping loop; the report (``stopped``: of nothing)."""
        rt = self.cfg.runtime
        self.threads = run_threads(rt.threads)
        if stopped:
            self.pipe.source.close()
            return self._report({**self._extra(0.0, True), "ann_reference_s": 0.0})
        total = None if self.live else max(0, len(self.pipe.source) - len(self.held))
        unit = "sample" if self.kept is None else "decision"  # a stream run has no samples
        self.bar = tqdm(total=total, desc=self.cfg.name, unit=unit, disable=not rt.progress, leave=False)
        interrupted = False
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        source_thread = threading.Thread(target=self._source_main, name="streamsnn-source", daemon=True)
        sink_thread = threading.Thread(target=self._sink_main, name="streamsnn-sinks", daemon=True)
        started = time.perf_counter()
        source_thread.start()
        sink_thread.start()
        try:
            while not self.errors:
                if stopping.requested():
                    interrupted = True
                    break
                self._admit(block=not self.slots)
                if rt.realtime:
                    now = time.monotonic_ns()
                    ready = [slot for slot in self.slots.values() if slot.ready(now)]
                else:
                    ready = [slot for slot in self.slots.values() if slot.slices]
                if ready:
                    self._step(ready)
                elif self.source_done and not self.slots:
                    break
                elif self.slots and rt.realtime and not self.live:
                    wake = min(slot.release_ns(slot.slices[0]) for slot in self.slots.values() if slot.slices)
                    self._turn.begin()
                    time.sleep(max(0.0, min(wake - time.monotonic_ns(), 50_000_000)) / 1e9)
                    self._turn.end()
                elif self.slots and not any(slot.slices for slot in self.slots.values()):
                    self._admit(block=True)
        except KeyboardInterrupt:  # Ctrl-C without stopping.stop_signals(): raised anywhere in the loop
            interrupted = True
        finally:
            self.stop.set()
            self.in_q.close()
            self._hand_over([], flush=True)
            self._turn.begin()  # the loop only waits from here: the sinks write their backlog freely
            self.out_q.close()
            sink_thread.join(timeout=30)
            source_thread.join(timeout=5)
            self.bar.close()
            torch.set_num_threads(torch_threads)
        if self.errors:
            raise self.errors[0]
        if interrupted:
            for slot in list(self.slots.values()):  # exited samples still stepping for full T
                if slot.decision is not None and not slot.live:
                    self._record(slot, slot.decision, full=None)
        wall = time.perf_counter() - started
        t_ann = time.perf_counter()
        # the first stop signal ends the ANN pass too, unless it already ended the stepping loop
        try:
            done = self.fill_ann_reference(stop=lambda: not interrupted and stopping.requested())
        except KeyboardInterrupt:
            done = False
        extra = self._extra(wall, interrupted or not done)
        extra["ann_reference_s"] = round(time.perf_counter() - t_ann, 3)
        return self._report(extra)

    def _report(self, extra: dict[str, Any]) -> dict[str, Any]:
        """The report: a replay's of its outcomes, a stream run's of its running totals."""
        report = build_report(self.outcomes, extra) if self.kept is None else self.kept.report(extra)
        if self.held:
            report["resumed_samples"] = self.resumed_samples
        return report

    def counters(self) -> dict[str, Any]:
        """Totals so far: model and step time (s), operator calls and slot steps, predictions
        handed to the sinks, dropped, skipped, out-of-sensor and late input, the source's counters
        (what executors add up across workers). ``out_of_bounds_events``: dropped by the encoder
        or by the source itself (which counts them in its ``source_stats`` too)."""
        late = self.late_in_samples + sum(s.late_events for s in list(self.slicers.values()))
        live = collections.Counter(self.live_counts)
        for slot in list(self.slots.values()):
            if slot.stream_decisions is not None:
                live.update(slot.stream_decisions.counts)
        stats = dict(self.pipe.source.stats)
        return {
            "model_s": self.model_s,
            "step_s": self.step_s,
            "model_calls": self.model_calls,
            "slot_steps": self.slot_steps,
            "predictions": self.predictions,
            "dropped_slices": self.in_q.dropped + self.dropped_in_slots,
            "skipped_slices": self.skipped_slices,
            "out_of_bounds_events": self.pipe.encoder.out_of_bounds
            + int(stats.get("out_of_bounds_events", 0)),
            "late_events": int(late),
            "source_stats": stats,
            **{key: live[key] for key in LIVE_COUNTS},
        }

    def _extra(self, wall: float, interrupted: bool) -> dict[str, Any]:
        return {
            **run_fields(
                self.cfg,
                self.decisions,
                self.counters(),
                wall,
                interrupted,
                1,
                self.pipe.model.discretisation,
            ),
            "torch_threads": self.threads,
            **sink_counters(self.pipe.sinks, self.sinks.errors),
            "executor": "local",
            "workers": 1,
        }


# counters() totals that the report shows as they are
# what live streams' decision rule counted (runtime/live.py)
LIVE_COUNTS = ("onsets", "finals_gated", "finals_repeated", "finals_vetoed")
COUNTED = (
    *("slot_steps", "predictions", "dropped_slices", "skipped_slices"),
    *("out_of_bounds_events", "late_events", "source_stats", *LIVE_COUNTS),
)


def run_fields(
    cfg: PipelineConfig,
    samples: int,
    counted: dict[str, Any],
    wall: float,
    interrupted: bool,
    workers: int = 1,
    discretisation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The report fields of a run of ``samples`` outcomes over ``wall`` seconds of ``workers``
    processes from their ``counters()`` totals: what it ran (with the ``discretisation`` of an
    imported continuous-time model), throughput, the shares of the workers' time in the stepping
    loop and in the model, the mean batch and the counters."""
    busy = wall * workers
    calls = counted["model_calls"]
    return {
        "pipeline": cfg.name,
        "source": cfg.source.type,
        "weights": cfg.model.weights,
        **({"discretisation": discretisation} if discretisation is not None else {}),
        "policy": cfg.policy.exit.model_dump(),
        "batch_size": cfg.runtime.batch_size,
        "realtime": cfg.runtime.realtime,
        "interrupted": interrupted,
        "wall_s": round(wall, 3),
        "samples_per_s": round(samples / wall, 2) if wall > 0 else None,
        "step_share_of_wall": round(counted["step_s"] / busy, 4) if busy > 0 else None,
        "model_share_of_wall": round(counted["model_s"] / busy, 4) if busy > 0 else None,
        # slots per operator call: continuous batching keeps it near batch_size
        "mean_batch": round(counted["slot_steps"] / calls, 2) if calls else None,
        **{key: counted[key] for key in COUNTED},
    }


def sink_counters(sinks: list[Sink], errors: Iterable[str] = ()) -> dict[str, Any]:
    """The sinks' counters, summed (the record sink's always shown, 0 without one), and
    ``sink_errors``: what made a sink fail, naming it (``SinkSet``)."""
    total = collections.Counter({"recorded_events": 0, "late_events_not_recorded": 0})
    for sink in sinks:
        total.update(sink.counters())
    return {**total, "sink_errors": list(errors)}


def start_sinks(sinks: list[Sink]) -> None:
    """Start the sinks before the first prediction (e.g. wait for subscribers)."""
    for sink in sinks:
        sink.start()


def close_sinks(sinks: list[Sink], report: dict[str, Any] | None) -> None:
    """Hand the report to the sinks (``finish``), then close every sink."""
    for sink in sinks:
        if report is not None:
            sink.finish(report)
        sink.close()


class SinkSet:
    """A run's sinks, each named as in the config (``sinks[i] (type: file)``). A sink whose hook
    raises is closed and left out from then on: its error is logged at once and kept
    (``errors``, the report's ``sink_errors``), and the other sinks go on. Hooks are called from
    the source thread (``write_packet``), the sink thread (``write``, ``flush``) and at the end
    (``close``)."""

    def __init__(self, pipe: Pipeline) -> None:
        self.errors: list[str] = []
        self._lock = threading.Lock()
        named = [(sink_name(i, sink, pipe.config), sink) for i, sink in enumerate(pipe.sinks)]
        self._healthy = named  # replaced, never changed in place: threads iterate it
        self._recorders = [(name, sink) for name, sink in named if sink.needs_events]

    def write(self, pred: Prediction) -> None:
        for name, sink in self._healthy:
            try:
                sink.write(pred)
            except Exception as err:
                self._failed(name, sink, err)

    def write_packet(self, packet: Packet, sensor: Any) -> None:
        for name, sink in self._recorders:
            try:
                sink.write_packet(packet, sensor)
            except Exception as err:
                self._failed(name, sink, err)

    def flush(self) -> None:
        for name, sink in self._healthy:
            try:
                sink.flush()
            except Exception as err:
                self._failed(name, sink, err)

    def close(self, report: dict[str, Any] | None) -> None:
        """Hand the report to the sinks (``finish``), then close every sink still in the run;
        the report's ``sink_errors`` then include those of closing."""
        for name, sink in self._healthy:
            try:
                sink.flush()
                if report is not None:
                    sink.finish(report)
                sink.close()
            except Exception as err:
                self._failed(name, sink, err)
        if report is not None:
            report["sink_errors"] = list(self.errors)

    def _failed(self, name: str, sink: Sink, err: Exception) -> None:
        with self._lock:
            if all(s is not sink for _, s in self._healthy):
                return
            self._healthy = [(n, s) for n, s in self._healthy if s is not sink]
            self._recorders = [(n, s) for n, s in self._recorders if s is not sink]
            self.errors.append(f"{name}: {err}")
        log.error("%s: %s; the run goes on without it", name, err)
        with contextlib.suppress(Exception):
            sink.close()


def sink_name(index: int, sink: Sink, cfg: PipelineConfig) -> str:
    """``sinks[i] (type: file or address)``: how messages name the run's ``index``-th sink."""
    options = cfg.sinks[index] if index < len(cfg.sinks) else None
    fits = options is not None and isinstance(sink, SINKS.plugin(options.type))
    kind = options.type if fits and options is not None else type(sink).__name__
    where = sink.target or sink.endpoint
    return f"sinks[{index}] ({kind}{': ' + where if where else ''})"
