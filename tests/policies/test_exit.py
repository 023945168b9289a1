import math

import pytest
from pydantic import ValidationError

from streamsnn.policies import (
    EXIT_POLICIES,
    RESET_POLICIES,
    ConfidenceExitConfig,
    DeadlineExitConfig,
    DynamicConfidenceExitConfig,
    FixedExitConfig,
    OracleExitConfig,
)
from streamsnn.policies.exit import Oracle, normalised_entropy_score
from streamsnn.policies.policy_net import PolicyNetExit
from streamsnn.prediction import Prediction


def pred(step, probs):
    return Prediction("s", 0, step, 0, 0, max(range(len(probs)), key=probs.__getitem__), max(probs), probs)


def test_fixed_exits_at_t():
    p = EXIT_POLICIES.build(FixedExitConfig(steps=4))
    assert [p.decide(pred(t, [0.5, 0.5])) for t in (1, 3, 4)] == [None, None, "max_steps"]


def test_confidence_exits_strictly_above_threshold_or_at_max_steps():
    p = EXIT_POLICIES.build(ConfidenceExitConfig(threshold=0.9, max_steps=8))
    assert p.decide(pred(1, [0.9, 0.1])) is None  # not strictly above
    assert p.decide(pred(1, [0.95, 0.05])) == "confident"
    assert p.decide(pred(8, [0.6, 0.4])) == "max_steps"


def test_entropy_score():
    assert normalised_entropy_score([1.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert normalised_entropy_score([1 / 3] * 3) == pytest.approx(0.0)
    p = EXIT_POLICIES.build(ConfidenceExitConfig(threshold=0.5, score="entropy"))
    probs = [0.9, 0.05, 0.05]
    h = -sum(q * math.log(q) for q in probs) / math.log(3)
    assert (p.decide(pred(1, probs)) == "confident") == (1 - h > 0.5)


def test_unknown_policies_are_named():
    with pytest.raises(KeyError, match=r"unknown exit policy 'oracle2'.*fixed"):
        EXIT_POLICIES.plugin("oracle2")
    with pytest.raises(KeyError, match="unknown reset policy 'sometimes'"):
        RESET_POLICIES.options("sometimes")


def test_policies_declare_what_they_read():
    assert EXIT_POLICIES.plugin("oracle") is Oracle and Oracle.needs_labels and not Oracle.needs_input
    assert EXIT_POLICIES.plugin("policy_net") is PolicyNetExit and PolicyNetExit.needs_input
    others = [name for name in EXIT_POLICIES.names if name not in ("oracle", "policy_net")]
    assert not any(
        EXIT_POLICIES.plugin(n).needs_labels or EXIT_POLICIES.plugin(n).needs_input for n in others
    )


def pred_out(step, logits, label=None, input_ms=0.0, compute_ms=0.0):
    import torch

    out = torch.tensor(logits, dtype=torch.float64)
    probs = torch.softmax(out, 0).tolist()
    p = Prediction("s", 0, step, 0, 0, int(out.argmax()), max(probs), probs, label=label, output=out.tolist())
    p.input_latency_ms, p.compute_latency_ms = input_ms, compute_ms
    return p


def test_dynamic_confidence_scales_by_alpha_and_temperature():
    p = EXIT_POLICIES.build(
        DynamicConfidenceExitConfig(threshold=0.8, alpha=4.0, temperature=1.0, max_steps=6)
    )
    # accumulated logits [8, 0]: softmax([2, 0]) = 0.881 > 0.8 with α = 4; a plain softmax would say 0.9997
    assert p.decide(pred_out(2, [8.0, 0.0])) == "confident"
    assert p.decide(pred_out(2, [4.0, 0.0])) is None  # softmax([1, 0]) = 0.731
    cooler = EXIT_POLICIES.build(DynamicConfidenceExitConfig(threshold=0.8, alpha=4.0, temperature=2.0))
    assert cooler.decide(pred_out(2, [8.0, 0.0])) is None  # softmax([1, 0])
    assert p.decide(pred_out(6, [1.0, 0.0])) == "max_steps"
    with pytest.raises(ValueError, match="needs a calibration file or both threshold and alpha"):
        EXIT_POLICIES.build(DynamicConfidenceExitConfig(threshold=0.5))


def test_deadline_and_oracle():
    with pytest.raises(ValidationError, match="deadline needs input_ms, compute_ms or max_steps"):
        DeadlineExitConfig()
    d = EXIT_POLICIES.build(DeadlineExitConfig(input_ms=100.0, compute_ms=5.0))
    assert d.decide(pred_out(1, [0.0, 1.0], input_ms=60)) is None
    assert d.decide(pred_out(2, [0.0, 1.0], input_ms=100)) == "input_deadline"
    assert d.decide(pred_out(2, [0.0, 1.0], input_ms=20, compute_ms=5.5)) == "compute_deadline"
    o = EXIT_POLICIES.build(OracleExitConfig(max_steps=3))
    assert o.decide(pred_out(1, [1.0, 0.0], label=1)) is None
    assert o.decide(pred_out(2, [0.0, 1.0], label=1)) == "correct"
    assert o.decide(pred_out(3, [1.0, 0.0], label=1)) == "max_steps"
    with pytest.raises(ValueError, match="needs labels"):
        o.decide(pred_out(1, [1.0, 0.0]))
