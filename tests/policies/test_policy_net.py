"""SEENN-II at run time: the policy network's decisions."""

import pytest
import torch

from streamsnn.lab.policy_training import save_policy
from streamsnn.policies import make_exit_policy
from streamsnn.policies.policy_net import PolicyNetExit
from streamsnn.prediction import Prediction
from streamsnn.snn.models import build_model


@pytest.fixture
def policy_file(tmp_path):
    torch.manual_seed(0)
    arch = {"name": "resnet8", "in_channels": 1, "size": 8, "classes": 3, "activation": "relu"}
    net = build_model(arch).eval()
    path = tmp_path / "policy.pt"
    save_policy(path, net, arch, (1, 8, 8), [1, 2, 4])
    return path, net


def test_policy_net_is_final_at_the_chosen_step_per_stream(policy_file):
    path, net = policy_file
    policy = make_exit_policy("policy_net", weights=str(path))
    xs = torch.randn(6, 1, 8, 8)
    with torch.inference_mode():
        expected = [[1, 2, 4][i] for i in net(xs).argmax(1).tolist()]
    assert policy.choose(xs).tolist() == expected
    exits = {}
    for step in range(1, 5):  # six streams interleaved step by step
        for s, x in enumerate(xs.split(1)):  # a slice's input is a batch of one
            if s in exits:
                continue
            p = Prediction(f"cam{s}", 0, step, 0, 0, 0, 0.5, [0.5, 0.5], input=x)
            if policy.decide(p) == "policy":
                exits[s] = step
    assert [exits[s] for s in range(6)] == expected


def test_policy_net_refuses_other_checkpoints_and_missing_input(policy_file):
    with pytest.raises(ValueError, match="not a policy network checkpoint"):
        PolicyNetExit("builtin:digits_frames")
    policy = PolicyNetExit(str(policy_file[0]))
    with pytest.raises(ValueError, match="needs the slice input"):
        policy.decide(Prediction("s", 0, 1, 0, 0, 0, 0.5, [0.5, 0.5]))
