"""SEENN-II at run time: a small policy network predicts, from a sample's first slice, how many
steps the SNN needs; the stream is final at that step. (Training: ``streamsnn.lab.policy_training``.)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from streamsnn.options import Options
from streamsnn.policies.exit import EXIT_POLICIES, ExitPolicy
from streamsnn.prediction import Prediction
from streamsnn.snn.checkpoint import load_checkpoint

MAX_OPEN_DECISIONS = 1 << 16  # far above the streams any operator holds at once


class PolicyNetExitConfig(Options):
    """SEENN-II: a policy network picks each sample's number of steps from its first slice."""

    type: Literal["policy_net"] = "policy_net"
    weights: str = Field(description="the policy network (`streamsnn train` with train.method: policy)")


@EXIT_POLICIES.register(PolicyNetExitConfig)
class PolicyNetExit(ExitPolicy):
    """SEENN-II at run time: at a sample's first slice the policy network picks the number of
    steps (argmax of v); the prediction is final at that step."""

    needs_input = True

    def __init__(self, config: PolicyNetExitConfig) -> None:
        model = load_checkpoint(config.weights)
        candidates = model.input.get("candidates")
        if not candidates:
            raise ValueError(f"{config.weights}: not a policy network checkpoint (no candidate step counts)")
        self.net: nn.Module = model.ann.eval()
        self.candidates = [int(c) for c in candidates]
        self._target: dict[tuple[str, int], int] = {}

    def choose(self, xs: torch.Tensor) -> np.ndarray:
        """The number of steps the policy picks for each input (N×C×H×W → N)."""
        with torch.inference_mode():
            picks = self.net(xs.float()).argmax(1).numpy()
        return np.asarray(self.candidates)[picks]

    def decide(self, pred: Prediction) -> str | None:
        key = (pred.stream, pred.sample)
        if pred.step == 1 or key not in self._target:
            if pred.input is None:
                raise ValueError("policy_net needs the slice input; the runtime passes it with needs_input")
            self._target[key] = int(self.choose(pred.input)[0])
        if pred.step >= self._target[key]:
            del self._target[key]
            return "policy"
        if len(self._target) > MAX_OPEN_DECISIONS:  # samples cut short by their end never got here
            del self._target[next(iter(self._target))]
        return None
