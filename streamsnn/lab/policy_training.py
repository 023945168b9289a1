"""SEENN-II's policy network, trained (``streamsnn train`` with ``train.method: policy``).

Training needs, for every training sample, its first-slice input and whether the SNN is correct
after each candidate number of steps c_k. The loss is the exact expectation of the negative
reward over the policy's softmax v (no sampling): ``Σ_k (β·(1 − c_k) − 2^{−t_k}·c_k)·v_k``
(SEENN eqs. 7–10). ``train.reward: code`` takes the released code's form instead (reward
2^{−(t_k − 1)}, samples wrong after step 1 weighted; see ``expected_negative_reward``). At run
time the network is the ``policy_net`` exit policy (``streamsnn.policies.policy_net``).

The policy is trained against a fixed SNN, not jointly with it (SEENN eq. 12 also fine-tunes the
SNN by cross-entropy at the chosen step): the SNN here is the converted or shipped network the
pipeline runs, which stays fixed at run time, so its per-step correctness is collected once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from streamsnn.config import load_pipeline
from streamsnn.lab.calibrate import collect, collecting, exit_max_steps
from streamsnn.lab.progress import Stages
from streamsnn.lab.seeding import seed_everything
from streamsnn.runtime import build_pipeline
from streamsnn.runtime.samples import sample_slices
from streamsnn.snn.checkpoint import save_checkpoint
from streamsnn.snn.models import build_model


def expected_negative_reward(
    logits: torch.Tensor,
    correct: torch.Tensor,
    candidates: torch.Tensor,
    beta: float,
    reward: str = "paper",
    rate: float | None = None,
) -> torch.Tensor:
    """Mean over the batch of the negative of SEENN-II's expected reward under v = softmax(logits).
    ``correct``: B×n (0/1), ``candidates``: the n step counts t_k, the first being t = 1.

    - ``paper`` (eq. 7): ``Σ_k (β·(1 − c_k) − 2^{−t_k}·c_k)·v_k``; reward 2^{−t} when right after
      t steps, −β when wrong.
    - ``code`` (the released code): ``w·Σ_k (β·(1 − c_k) − 2^{−(t_k − 1)}·c_k)·v_k``, the reward of
      a right answer doubled (so its β is twice the paper's for the same trade-off), and each
      sample weighted by w = 1 if it is right after step 1, ``rate/(1 − rate)`` if not, where
      ``rate`` is the fraction of training samples right after step 1: both groups then weigh the
      same in total (w = 0 when ``rate`` is 1: no sample is wrong at step 1).
    """
    if reward not in ("paper", "code"):
        raise ValueError(f"unknown SEENN-II reward '{reward}'; use paper or code")
    v = torch.softmax(logits, dim=1)
    c = correct.to(v.dtype)
    if reward == "paper":
        cost = beta * (1 - c) - torch.pow(2.0, -candidates.to(v.dtype)) * c
        return (cost * v).sum(1).mean()
    if rate is None:
        raise ValueError("reward 'code' needs the training split's step-1 accuracy `rate`")
    cost = beta * (1 - c) - torch.pow(2.0, 1 - candidates.to(v.dtype)) * c
    weight = c[:, 0] + (rate / (1 - rate) if rate < 1 else 0.0) * (1 - c[:, 0])
    return ((cost * v).sum(1) * weight).mean()


def first_slice_inputs(pipe: Any) -> tuple[torch.Tensor, np.ndarray]:
    """The encoded first slice of every sample of a pipeline's (segmented) source (N×C×H×W) and
    the labels (N), in sample order."""
    rows = []
    with pipe.source as source:
        for packet in source:
            slicer = pipe.new_slicer() if source.kind == "events" else None
            first = sample_slices(packet, slicer, 1)[0]
            rows.append((int(packet.sample or 0), pipe.encoder(first), packet.label))
    rows.sort(key=lambda r: r[0])
    return torch.stack([r[1] for r in rows]), np.asarray([r[2] for r in rows])


def save_policy(
    path: Path,
    net: nn.Module,
    arch: dict[str, Any],
    input_shape: tuple[int, ...],
    candidates: list[int],
    metrics: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
) -> None:
    """A policy network checkpoint: the usual checkpoint whose input spec names the candidate
    step counts (one per output of ``net``)."""
    spec = {"shape": list(input_shape), "encoder": "policy", "candidates": candidates}
    save_checkpoint(path, net, arch, spec, metrics or {}, train_config or {})


def train_policy(cfg: Any, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train SEENN-II's policy network for the fixed SNN of ``cfg.pipeline`` on the training
    split (its per-step correctness is collected once), report it on validation, save it."""
    if not cfg.pipeline:
        raise ValueError("train.method policy needs `pipeline:` (the pipeline whose SNN the policy serves)")
    seed_everything(cfg.train.seed)
    started = time.perf_counter()
    base = load_pipeline(cfg.pipeline, ["runtime.progress=false", "sinks=[]"])  # its outputs are not a run's
    stage = Stages("train policy", progress)
    data = {}
    for split in ("train", "val"):
        stage(collecting(base, split))
        collected = collect(base, split, exit_max_steps(base), progress)
        stage(f"reading each {split} sample's first slice (the policy network's input)")
        x, _ = first_slice_inputs(build_pipeline(base.on_split(split)))
        correct = torch.from_numpy(collected.classes == collected.labels[:, None])
        data[split] = (x, correct)
    t_n = data["train"][1].shape[1]
    candidates = list(range(1, t_n + 1))
    arch = {**cfg.model.model_dump(exclude_none=True), "classes": t_n}
    net = build_model(arch)
    t = cfg.train
    opt = torch.optim.Adam(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    cand = torch.tensor(candidates)
    gen = torch.Generator().manual_seed(t.seed)
    x, correct = data["train"]
    rate = float(correct[:, 0].float().mean())  # step-1 accuracy on training (reward: code)
    steps = 0
    most = f", at most {t.max_steps} steps" if t.max_steps else ""
    stage(f"training {cfg.model.name} on {len(x)} samples ({t.epochs} epochs{most})")
    for _ in tqdm(range(t.epochs), desc="train policy", unit="epoch", disable=not progress):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), t.batch_size):
            idx = order[i : i + t.batch_size]
            loss = expected_negative_reward(net(x[idx]), correct[idx], cand, t.beta, t.reward, rate)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if t.max_steps and steps >= t.max_steps:
                break
        if t.max_steps and steps >= t.max_steps:
            break
    net.eval()
    vx, vcorrect = data["val"]
    with torch.inference_mode():
        choice = net(vx).argmax(1)
    metrics = {
        "val_accuracy_policy": float(vcorrect[torch.arange(len(vx)), choice].float().mean()),
        "val_mean_steps_policy": float((choice + 1).float().mean()),
        "val_accuracy_full_T": float(vcorrect[:, -1].float().mean()),
        "train_steps": steps,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    path = Path(output or cfg.output)
    save_policy(
        path, net, arch, tuple(x.shape[1:]), candidates, metrics=metrics, train_config=cfg.model_dump()
    )
    return {"checkpoint": str(path), **metrics}
