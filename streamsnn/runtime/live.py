"""A live stream's decisions: the rule, stated once.

An unsegmented stream has no sample boundaries. It keeps ``reset_policy.hypotheses`` states
(operator slots, keys ``(stream, h)``), all stepped on every slice. Per slice:

1. ``before``: the gate takes the slice's event count; at an onset every hypothesis restarts
   (counted in ``onsets``). Then each hypothesis due for its scheduled reset restarts.
2. The runner steps every hypothesis on the slice (one batched call with the other streams).
3. ``decide``: each hypothesis that has seen at least ``min_steps`` slices since its reset asks
   the exit policy, then the reset policy's ``closes``, about its own prediction. A final whose
   slices the gate does not find open is dropped (``finals_gated``), as is a final of a class
   decided less than ``repeat_steps`` slices ago (``finals_repeated``). Of the finals left, the
   most confident is the stream's decision, unless a younger hypothesis old enough to decide (the
   youngest) reads another class (``finals_vetoed``): it has seen the least of what was in view
   before, so an older one's stale certainty (the digit that just left) does not outvote it. A dropped or
   outvoted final ends its hypothesis's decision all the same (``after_final``).
4. The stream emits one prediction per slice: its decision, else the most confident hypothesis
   old enough to decide, else the oldest. Its ``step`` and latencies are those of the hypothesis
   (slices, sensor time and wall time since its reset); ``sample`` numbers the stream's
   decisions.

Every hypothesis's predictions go to the exit policy as a stream ``<stream>@<h>`` whose samples
are its runs (reset to reset), so a policy's per-sample state never mixes two hypotheses.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from streamsnn.events import Slice
from streamsnn.policies import ExitPolicy, Gate, ResetPolicy
from streamsnn.prediction import Prediction


@dataclass
class Hypothesis:
    """One state of a live stream: its operator key, its runs (reset to reset), slices since its
    reset (``age``), slices until its next scheduled reset (``countdown``), the sensor time of
    its first slice (µs) and the stream's compute time when it started (s)."""

    key: Any
    run: int = 0
    age: int = 0
    countdown: int | None = None
    t0_us: int | None = None
    compute_from_s: float = 0.0


@dataclass
class Decided:
    """What ``decide`` made of a slice: the prediction to emit (final or not) and the keys whose
    states the runner clears (``reset``) or whose counts it restarts (``restart``)."""

    pred: Prediction
    reset: list[Any]
    restart: list[Any]


class LiveStream:
    """The decisions of one live stream (see the module docstring). ``counts``: its ``onsets``
    and the finals dropped by the gate (``finals_gated``), as repeats (``finals_repeated``) or
    outvoted by the youngest hypothesis (``finals_vetoed``)."""

    def __init__(self, stream: str, reset_policy: ResetPolicy, exit_policy: ExitPolicy, gate: Gate) -> None:
        self.stream = stream
        self.reset_policy, self.exit_policy, self.gate = reset_policy, exit_policy, gate
        self.hypotheses = [Hypothesis((stream, h)) for h in range(reset_policy.hypotheses)]
        self.gate_state = gate.new_state()
        self.decisions = 0  # finals emitted: the next decision's number
        self.slices = 0  # slices stepped
        self.decided_at: dict[int, int] = {}  # class → the slice of its last final
        self.counts = {"onsets": 0, "finals_gated": 0, "finals_repeated": 0, "finals_vetoed": 0}
        self._schedule()
        for h in self.hypotheses:
            self._start(h, 0.0)

    @property
    def keys(self) -> list[Any]:
        return [h.key for h in self.hypotheses]

    def _schedule(self) -> None:
        """Stagger the scheduled resets from now (a fresh start)."""
        for i, h in enumerate(self.hypotheses):
            h.countdown = self.reset_policy.first_reset(i)

    def before(self, item: Slice, compute_s: float) -> list[Any]:
        """Take ``item`` (not yet stepped); the keys whose states restart before it.
        ``compute_s``: the stream's compute time so far (s)."""
        events = len(item.data) if self.gate.needs_events else 0
        restart = []
        if self.gate.update(self.gate_state, events, item.t_end_us - item.t_start_us):
            self.counts["onsets"] += 1
            restart = list(self.hypotheses)
            self._schedule()
        else:
            for h in self.hypotheses:
                if h.countdown is not None and h.countdown <= 0:
                    restart.append(h)
                    h.countdown = self.reset_policy.period
        for h in restart:
            self._start(h, compute_s)
        for h in self.hypotheses:
            if h.t0_us is None:
                h.t0_us = item.t_start_us
            h.age += 1
            if h.countdown is not None:
                h.countdown -= 1
        self.slices += 1
        return [h.key for h in restart]

    def _start(self, h: Hypothesis, compute_s: float) -> None:
        h.run, h.age, h.t0_us, h.compute_from_s = h.run + 1, 0, None, compute_s

    def prediction(self, h: int, item: Slice, **fields: Any) -> Prediction:
        """Hypothesis ``h``'s prediction after ``item``, as its exit policy sees it."""
        hyp = self.hypotheses[h]
        assert hyp.t0_us is not None
        return Prediction(
            stream=f"{self.stream}@{h}",
            sample=hyp.run,
            step=hyp.age,
            t_start_us=item.t_start_us,
            t_end_us=item.t_end_us,
            label=item.label,
            input_latency_ms=(item.t_end_us - hyp.t0_us) / 1000.0,
            **fields,
        )

    def decide(self, preds: list[Prediction], compute_s: float, last: bool = False) -> Decided:
        """The stream's prediction after a slice from its hypotheses' ``preds`` (in order), with
        ``compute_s`` the stream's compute time so far (s); ``last``: the stream's last slice,
        whose prediction is final (``end_of_stream``) if no hypothesis decided and the gate is
        open."""
        policy = self.reset_policy
        finals: list[tuple[float, int, str]] = []
        reset, restart = [], []
        for h, pred in enumerate(preds):
            if pred.step < policy.min_steps:
                continue
            reason = self.exit_policy.decide(pred) or policy.closes(pred)
            if reason is None:
                continue
            if not self.gate.open(self.gate_state, pred.step):
                self.counts["finals_gated"] += 1
            elif self.slices - self.decided_at.get(pred.cls, -(1 << 62)) < policy.repeat_steps:
                self.counts["finals_repeated"] += 1
            else:
                finals.append((pred.confidence, h, reason))
                continue
            self._ended(h, compute_s, reset, restart)  # dropped: its decision ends all the same
        ready = [h for h, p in enumerate(preds) if p.step >= policy.min_steps]
        if finals:
            _, h, reason = max(finals)
            for _, other, _ in finals:
                if other != h:  # a final not chosen ends its hypothesis's decision too
                    self._ended(other, compute_s, reset, restart)
            youngest = min(ready, key=lambda i: preds[i].step)
            if preds[youngest].step < preds[h].step and preds[youngest].cls != preds[h].cls:
                # a hypothesis that started since reads what came into view since otherwise
                self.counts["finals_vetoed"] += 1
                self._ended(h, compute_s, reset, restart)
                finals = []
        if finals:
            self.decided_at[preds[h].cls] = self.slices
            emitted = self._as_stream(preds[h], h, compute_s, reason)
            self.decisions += 1
            self._ended(h, compute_s, reset, restart)
            return Decided(emitted, reset, restart)
        if ready:
            h = max(ready, key=lambda i: preds[i].confidence)
        else:
            h = max(range(len(preds)), key=lambda i: preds[i].step)
        reason = None
        if last and self.gate.open(self.gate_state, preds[h].step):
            reason = "end_of_stream"
        elif last:
            self.counts["finals_gated"] += 1
        emitted = self._as_stream(preds[h], h, compute_s, reason)
        self.decisions += reason is not None
        return Decided(emitted, reset, restart)

    def end(self, last: Prediction) -> Prediction | None:
        """The stream ended after ``last`` (its newest prediction, not final): that prediction as
        the final decision (``end_of_stream``) if the gate is open over it, else None."""
        if not self.gate.open(self.gate_state, last.step):
            self.counts["finals_gated"] += 1
            return None
        self.decisions += 1
        return dataclasses.replace(last, final=True, reason="end_of_stream")

    def _ended(self, h: int, compute_s: float, reset: list[Any], restart: list[Any]) -> None:
        """Hypothesis ``h`` made (or had dropped) a final: what ``after_final`` says."""
        hyp = self.hypotheses[h]
        after = self.reset_policy.after_final
        if after == "continue":
            return
        (reset if after == "reset" else restart).append(hyp.key)
        self._start(hyp, compute_s)

    def _as_stream(self, pred: Prediction, h: int, compute_s: float, reason: str | None) -> Prediction:
        """``pred`` (hypothesis ``h``'s) as the stream's prediction."""
        compute_ms = (compute_s - self.hypotheses[h].compute_from_s) * 1000.0
        return dataclasses.replace(
            pred,
            stream=self.stream,
            sample=self.decisions,
            final=reason is not None,
            reason=reason,
            compute_latency_ms=compute_ms,
        )
