"""Checkpoints: weights plus everything needed to rebuild and feed the model.

A checkpoint is a plain dictionary saved with ``torch.save`` and loaded with
``weights_only=True`` (tensors and plain containers only, no pickled code): ``arch`` (the
architecture and its arguments), ``input`` (shape, encoder and its options), ``state_dict``,
``metrics`` and the training config that produced it. ``builtin:NAME`` names the checkpoints
shipped in ``streamsnn/assets/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from streamsnn.snn.convert import convert, fold_spiking
from streamsnn.snn.models import build_model, is_spiking
from streamsnn.snn.network import SpikingNetwork

FORMAT = "streamsnn-checkpoint/1"
ASSETS = Path(__file__).resolve().parent.parent / "assets"


@dataclass
class LoadedModel:
    ann: nn.Sequential
    input: dict[str, Any]
    metrics: dict[str, Any]
    path: Path
    train_config: dict[str, Any]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.input["shape"])  # type: ignore[return-value]

    def snn(
        self, method: str = "qcfs", v0: float = 0.5, dtype: torch.dtype = torch.float32
    ) -> SpikingNetwork:
        """The spiking network in ``dtype``: converted (``method``: qcfs or qffs; see ``convert``),
        or, for a directly trained SNN, itself with BatchNorm folded (``method`` and ``v0``
        unused)."""
        if is_spiking(self.ann):
            return fold_spiking(self.ann, self.input_shape, dtype)
        return convert(self.ann, self.input_shape, method=method, v0=v0, dtype=dtype)


def resolve_weights(name: str) -> Path:
    """Path of a checkpoint given as a path or ``builtin:NAME``."""
    if name.startswith("builtin:"):
        path = ASSETS / f"{name.split(':', 1)[1]}.pt"
        if not path.exists():
            known = ", ".join(f"builtin:{p.stem}" for p in sorted(ASSETS.glob("*.pt")))
            raise FileNotFoundError(f"no shipped weights '{name}'; shipped: {known or 'none'}")
        return path
    path = Path(name)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    return path


def save_checkpoint(
    path: Path,
    model: nn.Module,
    arch: dict[str, Any],
    input_spec: dict[str, Any],
    metrics: dict[str, Any],
    train_config: dict[str, Any],
) -> None:
    """Write ``model``'s weights with its architecture (``build_model``'s dict), input spec
    (``shape`` C×H×W of one step, the encoder and its options), metrics and training config."""
    payload = {
        "format": FORMAT,
        "arch": arch,
        "input": input_spec,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": metrics,
        "train_config": train_config,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def load_checkpoint(name: str) -> LoadedModel:
    """Load ``name`` (path or ``builtin:NAME``) safely and rebuild its ANN."""
    path = resolve_weights(name)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise ValueError(
            f"{path}: not a readable streamsnn checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not a streamsnn checkpoint (expected format {FORMAT})")
    ann = build_model(payload["arch"])
    ann.load_state_dict(payload["state_dict"])
    return LoadedModel(
        ann.eval(), payload["input"], payload.get("metrics", {}), path, payload.get("train_config", {})
    )
