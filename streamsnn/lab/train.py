"""Training (``streamsnn train CONFIG``): quantisation-aware ANNs for conversion, and SNNs trained
directly with surrogate gradients and the TET loss.

- ``method: ann`` trains the configured ANN (QCFS / LSQ-style quantised activations, or ReLU for
  a full-precision start or data-based normalisation), optionally fine-tuning from a
  full-precision checkpoint (``init_from``: weights copied, each QCFS threshold initialised at
  the 99th percentile of the matching ReLU's activations) and with Dutson et al.'s sparsity
  penalties.
- ``method: direct`` trains a spiking network (VGGSNN, LIF) on frame sequences with
  ``(1 − λ)·mean_t CE(o_t, y) + λ·MSE(o, 1)`` (TET, λ = 1e-3).

Event data for the digits: the ANN sees what the SNN's running mean input looks like after any
number of slices, so it is trained on event-rate frames of random time windows of each
recording (prefixes and sub-windows, rates normalised by window length) and of whole recordings.
Runs are seeded; ``device: cuda`` and ``amp: true`` (mixed precision) for GPU users.

Checkpoints go to ``runs/train/<config file name>.pt`` unless an output is given. A config that
reproduces a shipped checkpoint names it (``reproduces: builtin:digits_dvs``): the result is
compared with it (metrics, the direction of every weight matrix, the config), never written over it.

CIFAR10-DVS recordings are checked as the replay checks them: one that cannot be read is skipped,
logged with its file and counted (``data_stats`` in the metrics); an empty split is an error that
says why (``data.split_by: share`` splits a partial copy of the data set).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from streamsnn.config import RUNS, TrainConfig
from streamsnn.events import EventCheck, Sensor
from streamsnn.lab import datasets as ds
from streamsnn.lab.anytime import SparsityPenalty, prune_small_weights
from streamsnn.lab.policy_training import train_policy
from streamsnn.lab.seeding import seed_everything
from streamsnn.options import ConfigError
from streamsnn.snn.checkpoint import CheckpointError, LoadedModel, load_checkpoint, save_checkpoint
from streamsnn.snn.models import build_model, is_spiking
from streamsnn.snn.network import SpikingNetwork
from streamsnn.snn.quant import QCFS
from streamsnn.sources.digits import RECORDING_US
from streamsnn.sources.event_datasets import (
    DATASETS,
    DatasetError,
    dataset_split,
    open_tonic_dataset,
    why_unreadable,
)

log = logging.getLogger(__name__)

# a run reproduces a checkpoint when its validation accuracy is within this of the checkpoint's and
# every weight matrix points the same way (cosine above this; a run with another seed gives |cos| < 0.2).
# Bits differ across CPUs (vector widths change the order of float sums), so equality is not asked.
REPRODUCED_ACCURACY = 0.01
REPRODUCED_COSINE = 0.9


def default_output(config: str | Path) -> Path:
    """``runs/train/<config file name>.pt``: where ``streamsnn train CONFIG`` writes unless told."""
    return RUNS / "train" / f"{Path(config).stem}.pt"


class TrainingData:
    """Training batches and evaluation inputs for one configured data set."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg, d, t = cfg, cfg.data, cfg.train
        self.rng = np.random.default_rng(t.seed)
        self.sequences = cfg.model.name == "vggsnn"  # frame sequences N×T×C×H×W
        self.stats: dict[str, int] = {}  # recovered bad input (CIFAR10-DVS)
        if d.name == "digits_dvs":
            self.train_events, self.train_y = ds.split_events("train", d.seed)
            val_events, self.val_y = ds.split_events("val", d.seed)
            unit = cfg.input.rate_unit_us
            self.val_x = torch.from_numpy(
                np.stack([ds.rate_frame(e, 0, RECORDING_US, unit) for e in val_events])
            )
        elif d.name == "digits_frames":
            images, self.train_y, _ = ds.digits_split("train")
            self.train_x = torch.from_numpy(ds.digit_frames(images, d.size))[:, None]
            val_images, self.val_y, _ = ds.digits_split("val")
            self.val_x = torch.from_numpy(ds.digit_frames(val_images, d.size))[:, None]
        elif d.name == "cifar10":
            images, self.train_y = ds.cifar10_arrays(d.root, "train", d.download)
            test_images, self.val_y = ds.cifar10_arrays(d.root, "test", d.download)
            images, self.train_y = images[: d.limit], self.train_y[: d.limit]
            test_images, self.val_y = test_images[: d.limit], self.val_y[: d.limit]
            self.train_x, self.val_x = ds.normalise_cifar10(images), ds.normalise_cifar10(test_images)
        elif d.name == "cifar10dvs":
            dataset = open_tonic_dataset("cifar10dvs", d.root, "train", d.download)
            train_idx = dataset_split("cifar10dvs", dataset, "train", d.split_by)[: d.limit]
            val_idx = dataset_split("cifar10dvs", dataset, "val", d.split_by)[: d.limit]
            self.train_x, self.train_y = self._dvs_tensors(dataset, train_idx, "train")
            self.val_x, self.val_y = self._dvs_tensors(dataset, val_idx, "val")
        self.val_y = np.asarray(self.val_y)
        self.train_y = np.asarray(self.train_y)

    def _dvs_tensors(self, dataset: Any, indices: list[int], split: str) -> tuple[torch.Tensor, np.ndarray]:
        """The recordings ``indices`` (``split``) as frame sequences and their labels; one that
        cannot be read is skipped, logged and counted (``skipped_samples``)."""
        d = self.cfg.data
        sensor = Sensor("cifar10dvs", *DATASETS["cifar10dvs"][1])
        frames, labels = [], []
        for position, i in enumerate(tqdm(indices, desc=f"preprocess {split}", leave=False)):
            try:
                events, error = EventCheck(sensor, self.stats)(dataset[i][0])
                if error is not None:
                    raise error
                frames.append(ds.seenn_frames(events, d.frames, d.size, antialias=d.antialias))
            except Exception as err:  # any reader failure skips only this recording
                self.stats["skipped_samples"] = self.stats.get("skipped_samples", 0) + 1
                log.warning("skipping %s sample %d: %s", split, position, why_unreadable(dataset, i, err))
                continue
            labels.append(dataset.targets[i])
        if not frames:
            raise DatasetError(f"CIFAR10-DVS split '{split}': not one of its {len(indices)} recordings reads")
        return torch.stack(frames), np.array(labels)

    def __len__(self) -> int:
        return len(self.train_y)

    def epoch_inputs(self) -> torch.Tensor:
        """All training inputs of one epoch, freshly augmented."""
        d, t = self.cfg.data, self.cfg.train
        if d.name == "digits_dvs":
            wins = ds.random_windows(
                self.rng, len(self.train_events), t.full_stream_fraction, t.min_window_us
            )
            unit = self.cfg.input.rate_unit_us
            frames = [
                ds.rate_frame(e, w0, w1, unit) for e, (w0, w1) in zip(self.train_events, wins, strict=True)
            ]
            return ds.shift_batch(torch.from_numpy(np.stack(frames)), self.rng, t.shift_px)
        if d.name == "cifar10":
            return ds.random_crop_flip(self.train_x, self.rng) if d.augment else self.train_x
        if d.name == "cifar10dvs":
            return (
                ds.augment_event_frames(self.train_x, self.rng, d.dvs_augment) if d.augment else self.train_x
            )
        return ds.shift_batch(self.train_x, self.rng, t.shift_px)

    def batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y = self.epoch_inputs(), torch.from_numpy(self.train_y)
        order = torch.randperm(len(y), generator=generator)
        bs = self.cfg.train.batch_size
        for i in range(0, len(y), bs):
            idx = order[i : i + bs]
            yield x[idx], y[idx]


def tet_loss(per_step: torch.Tensor, target: torch.Tensor, lam: float) -> torch.Tensor:
    """TET: (1 − λ)·mean_t CE(o_t, y) + λ·MSE(o, 1) over per-step outputs T×B×K."""
    ce = torch.stack([F.cross_entropy(o, target) for o in per_step]).mean()
    mse = F.mse_loss(per_step, torch.ones_like(per_step))
    return (1 - lam) * ce + lam * mse


class Trainee:
    """The model being trained and how to get its outputs (ANN forward or SNN over T steps)."""

    def __init__(self, model: nn.Sequential, input_shape: tuple[int, ...]) -> None:
        self.model = model
        self.net = SpikingNetwork(list(model), input_shape) if is_spiking(model) else None

    def per_step(self, x: torch.Tensor) -> torch.Tensor:
        """SNN outputs at every step (T×B×K) for frame sequences x (B×T×C×H×W)."""
        assert self.net is not None
        xs = x.transpose(0, 1)
        return self.net.run_per_step(xs, self.net.init_state(xs.shape[1], xs.dtype, xs.device))[1]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.per_step(x).mean(0) if self.net is not None else self.model(x)

    def loss(self, x: torch.Tensor, y: torch.Tensor, tet_lambda: float) -> torch.Tensor:
        if self.net is not None:
            return tet_loss(self.per_step(x), y, tet_lambda)
        return F.cross_entropy(self.model(x), y)


def accuracy(
    trainee: Trainee, x: torch.Tensor, y: np.ndarray, device: torch.device, batch: int = 256
) -> float:
    """Top-1 accuracy (evaluation mode)."""
    trainee.model.eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            preds.append(trainee.logits(x[i : i + batch].to(device)).argmax(1).cpu())
    return float((torch.cat(preds).numpy() == y).mean()) if preds else float("nan")


def init_from_checkpoint(model: nn.Module, path: str, calibration: torch.Tensor) -> None:
    """Copy the weights of a (full-precision) checkpoint of the same architecture; every QCFS
    threshold θ starts at the 99th percentile of the matching ReLU's activations."""
    source = load_checkpoint(path).ann
    missing, unexpected = model.load_state_dict(source.state_dict(), strict=False)
    bad = [k for k in missing if not k.endswith(".theta")] + list(unexpected)
    if bad:
        raise ValueError(f"{path}: does not fit the configured architecture (keys {bad[:5]})")
    relus = [m for m in source.modules() if isinstance(m, nn.ReLU)]
    qcfs = [m for m in model.modules() if isinstance(m, QCFS)]
    if not qcfs or len(relus) != len(qcfs):
        return
    acts: dict[int, torch.Tensor] = {}
    hooks = [
        r.register_forward_hook(lambda _m, _x, y, i=i: acts.__setitem__(i, y.detach().flatten()))
        for i, r in enumerate(relus)
    ]
    source.eval()
    with torch.no_grad():
        source(calibration)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for i, q in enumerate(qcfs):
            level = float(torch.quantile(acts[i][:1_000_000].float(), 0.99))
            if level > 0:  # a silent ReLU keeps the configured θ
                q.theta.fill_(level)


def train(cfg: TrainConfig, output: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train as configured, save the checkpoint to ``output`` (else the config's ``output``) and
    return its metrics; with ``reproduces``, also how it compares with that checkpoint
    (``compared_with``, see ``compare_checkpoints``)."""
    path = output or cfg.output
    if path is None:
        raise ConfigError("output: no checkpoint path (streamsnn train writes runs/train/<config name>.pt)")
    reference = None
    if cfg.reproduces:  # checked before training, which takes minutes
        try:
            reference = load_checkpoint(cfg.reproduces)
        except CheckpointError as err:
            raise ConfigError(f"reproduces: {err}") from None
    train_one = train_policy if cfg.train.method == "policy" else _train
    result = train_one(cfg, Path(path), progress)
    if reference is not None:
        result["compared_with"] = compare_checkpoints(load_checkpoint(str(path)), reference, cfg.reproduces)
    return result


def _train(cfg: TrainConfig, path: Path, progress: bool) -> dict[str, Any]:
    """Train an ANN (``method: ann``) or an SNN (``direct``), save it to ``path``, return its metrics."""
    assert cfg.data is not None and cfg.input is not None
    seed_everything(cfg.train.seed)
    started = time.perf_counter()
    t = cfg.train
    device = torch.device(t.device)
    try:
        data = TrainingData(cfg)
    except DatasetError as err:
        raise ConfigError(f"data: {err}") from None
    model = build_model(cfg.model.model_dump(exclude_none=True))
    input_shape = tuple(data.val_x.shape[2:] if data.sequences else data.val_x.shape[1:])
    if t.init_from:
        init_from_checkpoint(model, t.init_from, data.epoch_inputs()[:256])
    model.to(device)
    trainee = Trainee(model, input_shape)
    penalty = None
    if t.sparsity_activation or t.sparsity_weight:
        example = data.val_x[:1].to(device)
        penalty = SparsityPenalty(model, example, t.sparsity_activation, t.sparsity_weight)
    if t.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay
        )
    else:
        opt = torch.optim.Adam(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    total_steps = t.epochs * math.ceil(len(data) / t.batch_size)
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(total_steps, 1))
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=t.amp and device.type == "cuda")
    gen = torch.Generator().manual_seed(t.seed)
    steps, val_acc, loss_sum, seen = 0, float("nan"), 0.0, 0
    bar = tqdm(total=total_steps, desc=f"train {cfg.model.name}", unit="step", disable=not progress)
    for epoch in range(t.epochs):
        model.train()
        loss_sum, seen = 0.0, 0
        for x, y in data.batches(gen):
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=t.amp):
                loss = trainee.loss(x, y, t.tet_lambda)
                if penalty is not None:
                    loss = loss + penalty()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            steps += 1
            loss_sum, seen = loss_sum + loss.item() * len(y), seen + len(y)
            bar.update(1)
            if steps >= total_steps:
                break
        last = epoch + 1 == t.epochs or steps >= total_steps
        if last or (epoch + 1) % t.eval_every == 0:
            val_acc = accuracy(trainee, data.val_x, data.val_y, device)
        shown = "n/a" if math.isnan(val_acc) else f"{val_acc:.4f}"  # none before the first evaluation
        bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / max(seen, 1):.3f}", val_acc=shown)
        if last:
            break
    bar.close()
    metrics: dict[str, Any] = {
        "val_accuracy_ann" if not trainee.net else "val_accuracy_snn": val_acc,
        "train_steps": steps,
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    if data.stats:
        metrics["data_stats"] = dict(data.stats)
    if t.prune_epsilon:
        metrics["pruned_weights"] = prune_small_weights(model, t.prune_epsilon)
    input_spec = {"shape": list(input_shape), **cfg.input.model_dump(exclude_none=True)}
    if cfg.data.name == "cifar10dvs":  # the run-time encoder resizes the same way
        input_spec["antialias"] = cfg.data.antialias
    save_checkpoint(
        path, model.cpu(), cfg.model.model_dump(exclude_none=True), input_spec, metrics, cfg.model_dump()
    )
    return {"checkpoint": str(path), **metrics}


def compare_checkpoints(fresh: LoadedModel, reference: LoadedModel, name: str) -> dict[str, Any]:
    """How a trained checkpoint compares with ``reference`` (named ``name``, e.g. the shipped
    weights its config reproduces): ``metrics`` (each number both hold: [this run, reference]),
    ``weight_cosine_min`` (the lowest cosine between a weight matrix and the reference's; None
    when the architectures differ), ``config_differs`` (training config fields both hold that
    differ: [this run, reference]) and ``reproduced`` (see ``REPRODUCED_ACCURACY``)."""
    metrics = {
        k: [v, reference.metrics[k]]
        for k, v in fresh.metrics.items()
        if isinstance(v, int | float) and isinstance(reference.metrics.get(k), int | float)
    }
    ours, theirs = fresh.ann.state_dict(), reference.ann.state_dict()
    cosine = None
    if ours.keys() == theirs.keys() and all(ours[k].shape == theirs[k].shape for k in ours):
        cosine = min(
            (
                float(F.cosine_similarity(w.flatten().double(), theirs[k].flatten().double(), dim=0))
                for k, w in ours.items()
                if k.endswith(".weight") and w.dim() > 1  # conv and linear
            ),
            default=None,
        )
    mine, other = _flat(fresh.train_config), _flat(reference.train_config)
    differs = {
        k: [mine[k], other[k]]
        for k in sorted(mine.keys() & other.keys() - {"output", "reproduces"})
        if mine[k] != other[k]
    }
    accuracies = [k for k in metrics if "accuracy" in k]
    reproduced = (
        cosine is not None
        and cosine > REPRODUCED_COSINE
        and bool(accuracies)
        and all(abs(metrics[k][0] - metrics[k][1]) <= REPRODUCED_ACCURACY for k in accuracies)
    )
    return {
        "checkpoint": name,
        "reproduced": reproduced,
        "metrics": metrics,
        "weight_cosine_min": cosine,
        "config_differs": differs,
    }


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config as dotted names (``train.epochs``) → values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def format_comparison(cmp: dict[str, Any]) -> str:
    """``compare_checkpoints``'s result as a few lines for the terminal."""
    name = cmp["checkpoint"]
    verdict = "reproduced" if cmp["reproduced"] else "not reproduced"
    lines = [
        f"compared with {name}: {verdict} (validation accuracy within {REPRODUCED_ACCURACY:g} and every "
        f"weight matrix at cosine > {REPRODUCED_COSINE:g} of it)"
    ]
    for key, (this, other) in cmp["metrics"].items():
        lines.append(f"  {key:<24} {this:.4g}   {name}: {other:.4g}   ({this - other:+.4g})")
    cosine = cmp["weight_cosine_min"]
    lines.append(
        f"  {'weights':<24} "
        + ("another architecture" if cosine is None else f"lowest cosine with {name}'s: {cosine:.4f}")
    )
    if cmp["config_differs"]:
        shown = ", ".join(
            f"{k} {this} ({name}: {other})" for k, (this, other) in cmp["config_differs"].items()
        )
        lines.append(f"  {'config differs':<24} {shown}")
    return "\n".join(lines)
