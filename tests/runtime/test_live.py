"""A live stream's decision rule (runtime/live.py), slice by slice on hand-made predictions."""

import numpy as np
import pytest

from streamsnn.config import load_pipeline
from streamsnn.events import Slice, make_events
from streamsnn.policies import (
    EXIT_POLICIES,
    GATES,
    RESET_POLICIES,
    ConfidenceExitConfig,
    EventRateGateConfig,
    NoGateConfig,
    OnExitResetConfig,
    StaggeredResetConfig,
)
from streamsnn.policies.reset import DecayResetConfig
from streamsnn.runtime import build_pipeline, run_pipeline
from streamsnn.runtime.live import LiveStream

SLICE_US = 20_000
BUSY, QUIET = 400, 10  # events per slice: a digit, background noise


def stream(reset=None, gate=None, threshold=0.9) -> LiveStream:
    return LiveStream(
        "cam",
        RESET_POLICIES.build(reset or StaggeredResetConfig(hypotheses=3, every_steps=15, min_steps=5)),
        EXIT_POLICIES.build(ConfidenceExitConfig(threshold=threshold)),
        GATES.build(gate or EventRateGateConfig(min_events_per_ms=2.6, over_steps=2)),
    )


def a_slice(k: int, events: int = BUSY) -> Slice:
    ev = make_events(np.full(events, k * SLICE_US), np.zeros(events), np.zeros(events), np.ones(events))
    return Slice("cam", -1, -1, k * SLICE_US, (k + 1) * SLICE_US, ev)


class Run:
    """Feeds slices to a ``LiveStream``; each hypothesis reads out what ``read(h, age)`` says."""

    def __init__(self, live: LiveStream, read) -> None:
        self.live, self.read, self.k = live, read, 0
        self.restarted: list[list] = []

    def slice(self, events: int = BUSY):
        item = a_slice(self.k, events)
        self.restarted.append(self.live.before(item, compute_s=0.001 * self.k))
        preds = []
        for h, hyp in enumerate(self.live.hypotheses):
            cls, confidence = self.read(h, hyp.age, self.k)
            probs = [0.0] * 10
            probs[cls] = confidence
            preds.append(self.live.prediction(h, item, cls=cls, confidence=confidence, probs=probs))
        self.k += 1
        return self.live.decide(preds, compute_s=0.001 * self.k)

    def finals(self, counts: list[int]) -> list[tuple[int, int, int, str]]:
        """(slice, class, step, reason) of every final over slices of ``counts`` events."""
        out = []
        for n in counts:
            pred = self.slice(n).pred
            if pred.final:
                out.append((self.k - 1, pred.cls, pred.step, pred.reason))
        return out


def test_staggered_hypotheses_start_together_then_reset_evenly_apart():
    run = Run(stream(), lambda h, age, k: (0, 0.5))
    for _ in range(60):
        run.slice()
    resets = [(k, key[1]) for k, keys in enumerate(run.restarted) for key in keys]
    # all three start with the stream; then h0 every 15 slices, h1 from 20, h2 from 25
    assert resets == [(15, 0), (20, 1), (25, 2), (30, 0), (35, 1), (40, 2), (45, 0), (50, 1), (55, 2)]
    assert [h.age for h in run.live.hypotheses] == [15, 10, 5]


def test_no_final_before_min_steps_then_the_most_confident_decides():
    confidences = {0: 0.95, 1: 0.97, 2: 0.99}
    run = Run(stream(), lambda h, age, k: (h, confidences[h]))
    finals = run.finals([BUSY] * 5)
    assert finals == [(4, 2, 5, "confident")]  # all three are 5 slices old at slice 4; h2 is surest
    assert run.live.counts["finals_vetoed"] == 0


def test_the_gate_refuses_finals_on_noise_and_silence():
    run = Run(stream(), lambda h, age, k: (3, 0.99))  # a model sure of a 3 whatever it sees
    assert run.finals([0] * 40 + [QUIET] * 40) == []
    assert run.live.counts["finals_gated"] > 0
    assert run.finals([BUSY] * 10)[0][1] == 3  # input again: the onset restarts all, 5 slices on


def test_an_onset_restarts_every_hypothesis():
    run = Run(stream(), lambda h, age, k: (1, 0.5))
    for n in [BUSY] * 10 + [QUIET] * 4:
        run.slice(n)
    assert [h.age for h in run.live.hypotheses] == [14, 14, 14]
    run.slice(BUSY)
    assert run.live.counts["onsets"] == 1 and len(run.restarted[-1]) == 3
    assert [h.age for h in run.live.hypotheses] == [1, 1, 1]


def test_a_class_is_not_decided_again_within_repeat_steps():
    run = Run(stream(), lambda h, age, k: (7, 0.95))
    finals = run.finals([BUSY] * 40)
    assert [f[0] for f in finals] == [4, 19, 34]  # one final per 15 slices, not one per slice
    assert run.live.counts["finals_repeated"] > 0


def test_the_youngest_ready_hypothesis_outvotes_a_stale_one():
    # from slice 20 on, a hypothesis older than 10 slices is sure of the digit that left (4); one
    # that started since reads the new one (6), not yet surely
    def read(h, age, k):
        if k < 20:
            return 4, 0.5
        return (4, 0.99) if age > 10 else (6, 0.5)

    run = Run(stream(), read)
    finals = run.finals([BUSY] * 26)
    assert finals == [] and run.live.counts["finals_vetoed"] > 0


def test_what_a_final_does_to_its_state():
    def read(h, age, k):
        return 2, 0.95 if age >= 3 else 0.5

    on_exit = Run(stream(OnExitResetConfig(), NoGateConfig()), read)
    assert [f[0] for f in on_exit.finals([BUSY] * 9)] == [2, 5, 8]  # reset, three slices again
    decay = Run(stream(DecayResetConfig(), NoGateConfig()), read)
    assert [f[0] for f in decay.finals([BUSY] * 9)] == [2, 5, 8]  # counted from step 1 again
    staggered = Run(
        stream(StaggeredResetConfig(hypotheses=1, every_steps=10, min_steps=3, repeat_steps=0)), read
    )
    assert [f[0] for f in staggered.finals([BUSY] * 9)] == [2, 3, 4, 5, 6, 7, 8]  # keeps going


def test_decisions_are_numbered_and_carry_the_hypothesis_latencies():
    run = Run(stream(OnExitResetConfig(), NoGateConfig()), lambda h, age, k: (5, 0.95 if age == 3 else 0.5))
    preds = [run.slice().pred for _ in range(6)]
    finals = [p for p in preds if p.final]
    assert [(p.sample, p.step, p.stream) for p in finals] == [(0, 3, "cam"), (1, 3, "cam")]
    assert [p.input_latency_ms for p in finals] == [60.0, 60.0]  # three 20 ms slices each
    assert finals[1].compute_latency_ms > 0
    assert [p.sample for p in preds] == [0, 0, 0, 1, 1, 1]  # the open decision's number


POLICIES = {  # policy.* overrides of pipelines/udp_live.yaml (its own: staggered hypotheses + gate)
    "staggered + gate": [],
    "on_exit + gate": ["policy.reset=on_exit"],
    "periodic": ["policy.reset={type: periodic, every_steps: 15}", "policy.gate=none"],
    "decay": [  # its decaying sum stays below 0.9 of confidence: a lower threshold, to decide
        "policy.reset={type: decay, factor: 0.8}",
        "policy.gate=none",
        "policy.exit={type: confidence, threshold: 0.3}",
    ],
}


@pytest.mark.parametrize("policy", POLICIES)
def test_each_live_rule_decides_a_stream_alike_alone_and_batched_with_others(root, policy):
    """Three digits-dvs streams with gaps (unpaced: nothing dropped) stepped by one operator
    decide, stream by stream, exactly as each stream alone."""
    one = "{{type: digits_dvs, live: true, pace: false, scenario: gaps, offset: {}, limit: 4, seed: {}}}"
    sources = ", ".join(one.format(6 * i, i) for i in range(3))
    base = [
        "runtime.progress=false",
        "report.path=null",
        "sinks=[]",
        "runtime.batch_size=9",
        f"source={{type: streams, sources: [{sources}]}}",
        *POLICIES[policy],
    ]
    pipeline = root / "pipelines" / "udp_live.yaml"
    together = run_pipeline(build_pipeline(load_pipeline(pipeline, base))).outcomes
    assert len({o.stream for o in together}) == 3
    for i in range(3):
        alone_cfg = load_pipeline(pipeline, [*base, f"source.offset={i}", "source.limit=1"])
        alone = run_pipeline(build_pipeline(alone_cfg)).outcomes
        stream = f"digits-dvs/test/live-gaps#{i}"
        got = [
            (o.sample, o.cls, o.steps, o.reason, o.input_latency_ms) for o in together if o.stream == stream
        ]
        assert got == [(o.sample, o.cls, o.steps, o.reason, o.input_latency_ms) for o in alone]
        assert len(got) >= 3  # each stream decided (4 digits, with gaps)


def test_the_live_pipelines_share_one_rule(root):
    """pipelines/udp_streams.yaml takes udp_live.yaml's policy as it is (nothing to drift)."""
    live = load_pipeline(root / "pipelines" / "udp_live.yaml")
    streams = load_pipeline(root / "pipelines" / "udp_streams.yaml")
    assert streams.policy == live.policy and streams.model == live.model
    assert streams.runtime.batch_size == 4 * live.runtime.batch_size  # four feeds, three slots each
