"""SEENN-II's policy network trained: the exact-expectation loss and the shipped configs."""

import pytest
import torch
import yaml

from streamsnn.config import load_train_config
from streamsnn.lab.policy_training import expected_negative_reward
from streamsnn.lab.train import train

CANDIDATES = torch.tensor([1, 2, 4])


def test_loss_is_the_expected_negative_reward_worked_example():
    """Uniform policy over t ∈ {1, 2, 4}, β = 0.5; rewards 2^−t when right, −β when wrong.
    Sample 1 is wrong at t = 1 only: E[−R] = (0.5 − 1/4 − 1/16) / 3 = 0.0625.
    Sample 2 is always right: E[−R] = −(1/2 + 1/4 + 1/16) / 3 = −0.2708..."""
    correct = torch.tensor([[0, 1, 1], [1, 1, 1]])
    loss = expected_negative_reward(torch.zeros(2, 3), correct, CANDIDATES, beta=0.5)
    assert loss.item() == pytest.approx((0.0625 - 0.8125 / 3) / 2)


def test_loss_equals_the_sampled_reward_in_expectation():
    """The closed form equals the mean negative reward of actions drawn from the policy."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, generator=gen)
    correct = torch.randint(0, 2, (4, 3), generator=gen)
    beta = 0.7
    exact = expected_negative_reward(logits, correct, CANDIDATES, beta).item()
    v = torch.softmax(logits, 1)
    actions = torch.multinomial(v, 200_000, replacement=True, generator=gen)  # 4 × draws
    right = correct.gather(1, actions).double()
    reward = right * torch.pow(2.0, -CANDIDATES[actions].double()) - beta * (1 - right)
    assert exact == pytest.approx(-reward.mean().item(), abs=3e-3)


def test_gradient_moves_the_policy_towards_the_best_step():
    """Right from step 2 on: t = 2 has the highest reward, so its logit must grow."""
    logits = torch.zeros(1, 3, requires_grad=True)
    expected_negative_reward(logits, torch.tensor([[0, 1, 1]]), CANDIDATES, beta=0.5).backward()
    assert logits.grad.argmin().item() == 1


def test_code_reward_worked_example():
    """The released code's form: right after t steps earns 2^−(t−1), and a sample wrong after step
    1 weighs rate/(1 − rate). Uniform policy over t ∈ {1, 2, 4}, β = 0.5, rate = 0.6.
    Sample 1 is wrong at t = 1 only: (0.5 − 1/2 − 1/8) / 3 · 1.5 = −0.0625.
    Sample 2 is always right (weight 1): −(1 + 1/2 + 1/8) / 3 = −0.5416..."""
    correct = torch.tensor([[0, 1, 1], [1, 1, 1]])
    loss = expected_negative_reward(torch.zeros(2, 3), correct, CANDIDATES, 0.5, "code", rate=0.6)
    assert loss.item() == pytest.approx((-0.0625 - 1.625 / 3) / 2)


def test_code_reward_follows_the_released_loop():
    """Step by step as the released code accumulates it (k = 0…n−1 for t = 1…n, reward 2^−k,
    the step-1 weight taken at k = 0), against the closed form."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 4, generator=gen)
    correct = torch.randint(0, 2, (6, 4), generator=gen).double()
    beta, rate = 3.0, 0.3
    v = torch.softmax(logits.double(), 1)
    total = torch.zeros(6, dtype=torch.float64)
    for k in range(4):
        c = correct[:, k]
        if k == 0:
            weight = c + rate / (1 - rate) * (1 - c)
        total = total + (beta * (1 - c) - 2.0**-k * c) * v[:, k] * weight
    closed = expected_negative_reward(logits.double(), correct, torch.arange(1, 5), beta, "code", rate)
    assert closed.item() == pytest.approx(total.mean().item(), rel=1e-12)


def test_code_reward_is_the_paper_reward_at_twice_beta_when_weights_are_one():
    """Everyone right after step 1 (weight 1): the code's loss at 2β is twice the paper's at β."""
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(5, 3, generator=gen, dtype=torch.float64)
    correct = torch.cat([torch.ones(5, 1), torch.randint(0, 2, (5, 2), generator=gen)], 1)
    paper = expected_negative_reward(logits, correct, CANDIDATES, 0.7)
    code = expected_negative_reward(logits, correct, CANDIDATES, 1.4, "code", rate=1.0)
    assert code.item() == pytest.approx(2 * paper.item(), rel=1e-12)
    with pytest.raises(ValueError, match="needs the training split's step-1 accuracy"):
        expected_negative_reward(logits, correct, CANDIDATES, 1.4, "code")
    with pytest.raises(ValueError, match="unknown SEENN-II reward 'both'; use paper or code"):
        expected_negative_reward(logits, correct, CANDIDATES, 1.4, "both")


@pytest.mark.parametrize(
    "name, reward",
    [("digits_frames_policy", "paper"), ("digits_dvs_policy", "paper"), ("digits_frames_policy", "code")],
)
def test_policy_training_configs_train_and_run(root, tmp_path, name, reward, capsys):
    """A few optimiser steps of each shipped SEENN-II config (and of the code's reward) on a small
    slice of its pipeline's data; the checkpoint drives the runtime's ``policy_net`` exit."""
    cfg = load_train_config(root / "configs" / f"{name}.yaml")
    pipeline = yaml.safe_load((root / cfg.pipeline).read_text())
    pipeline["source"]["limit"] = 24
    pipeline["sinks"] = []
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(pipeline))
    assert cfg.train.reward == "paper"  # the shipped configs keep the paper's reward
    train_options = cfg.train.model_copy(update={"max_steps": 2, "batch_size": 8, "reward": reward})
    cfg = cfg.model_copy(update={"pipeline": str(tmp_path / "pipe.yaml"), "train": train_options})
    result = train(cfg, output=tmp_path / "policy.pt", progress=True)
    assert result["train_steps"] == 2
    err = capsys.readouterr().err.replace("\r", "\n")  # a line per stage, bars between them
    stages = [line.split("]: ", 1)[1][:40] for line in err.splitlines() if line.startswith("train policy [")]
    assert stages == [
        f"running {pipeline['name']} on the train split at full length"[:40],
        "reading each train sample's first slice ",
        f"running {pipeline['name']} on the val split at full length"[:40],
        "reading each val sample's first slice (t",
        f"training resnet8 on 24 samples ({cfg.train.epochs} epochs, at most 2 steps)"[:40],
    ]
    assert "train policy: " in err
    assert 1 <= result["val_mean_steps_policy"] <= 16
    assert 0 <= result["val_accuracy_policy"] <= 1

    from streamsnn.config import load_pipeline
    from streamsnn.runtime import build_pipeline, run_pipeline

    run_cfg = load_pipeline(
        tmp_path / "pipe.yaml",
        [f"policy.exit={{type: policy_net, weights: {tmp_path / 'policy.pt'}}}", "runtime.progress=false"],
    )
    pipe = build_pipeline(run_cfg)
    report = run_pipeline(pipe).report
    assert report["samples"] == 24
    assert set(report["exit_reasons"]) <= {"policy", "end_of_sample"}
