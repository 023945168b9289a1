"""Checkpoints: weights plus everything needed to rebuild and feed the model.

A checkpoint is a plain dictionary saved with ``torch.save`` and loaded with
``weights_only=True`` (tensors and plain containers only, no pickled code): ``arch`` (the
architecture and its arguments), ``input`` (shape, encoder and its options), ``state_dict``,
``metrics`` and the training config that produced it; a network imported from a continuous-time
description (NIR) also states its ``discretisation`` (time step, integration rule, reset).
``builtin:NAME`` names the checkpoints shipped in ``streamsnn/assets/``. A file that is missing,
refused by the safe loader or inconsistent (an unknown architecture, an argument it does not take,
weights that do not fit it, no input shape) is a ``CheckpointError`` naming the file and what is
wrong.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
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
# sentences of torch's load errors that advise loading unsafely (weights_only=False, allowlisting
# globals) or point elsewhere: left out of our messages
_ADVICE = re.compile(
    r"weights_only|torch\.load|safe_globals|trust|file an issue|Weights only load failed|PyTorch 2\.6|\x1b",
    re.IGNORECASE,
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what is wrong."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint file (or shipped checkpoint) of that name."""


@dataclass
class LoadedModel:
    ann: nn.Sequential
    input: dict[str, Any]
    metrics: dict[str, Any]
    path: Path
    train_config: dict[str, Any]
    discretisation: dict[str, Any] | None = None

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
            raise CheckpointNotFoundError(f"no shipped weights '{name}'; shipped: {known or 'none'}")
        return path
    path = Path(name)
    if not path.exists():
        raise CheckpointNotFoundError(f"weights file not found: {path}")
    return path


def save_checkpoint(
    path: Path,
    model: nn.Module,
    arch: dict[str, Any],
    input_spec: dict[str, Any],
    metrics: dict[str, Any],
    train_config: dict[str, Any],
    discretisation: dict[str, Any] | None = None,
) -> None:
    """Write ``model``'s weights with its architecture (``build_model``'s dict), input spec
    (``shape`` C×H×W of one step, the encoder and its options), metrics and training config (and
    the ``discretisation`` of an imported continuous-time network)."""
    payload = {
        "format": FORMAT,
        "arch": arch,
        "input": input_spec,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": metrics,
        "train_config": train_config,
    }
    if discretisation is not None:
        payload["discretisation"] = discretisation
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def load_checkpoint(name: str) -> LoadedModel:
    """Load ``name`` (path or ``builtin:NAME``) safely and rebuild its ANN; ``CheckpointError``
    says what is wrong with it."""
    path = resolve_weights(name)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # what torch's safe loader refuses
        raise CheckpointError(
            f"{path}: refused: the safe loader reads only tensors and plain containers, and runs "
            f"nothing ({_reason(err)})"
        ) from None
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(
            f"{path}: not a readable streamsnn checkpoint ({type(err).__name__}: {_reason(err)})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a streamsnn checkpoint (expected format {FORMAT})")
    spec, state = payload.get("input"), payload.get("state_dict")
    shape = spec.get("shape") if isinstance(spec, dict) else None
    if not (isinstance(shape, list | tuple) and len(shape) == 3 and all(_positive_int(n) for n in shape)):
        raise CheckpointError(f"{path}: input: expected a map with shape [C, H, W] (positive integers)")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: state_dict: no weights")
    try:
        ann = build_model(payload.get("arch"))
    except ValueError as err:
        raise CheckpointError(f"{path}: arch: {err}") from None
    expected = ann.state_dict()
    wrong = {
        "missing": [k for k in expected if k not in state],
        "unexpected": [k for k in state if k not in expected],
        "of another shape": [
            k for k in expected if k in state and getattr(state[k], "shape", None) != expected[k].shape
        ],
    }
    if any(wrong.values()):
        found = "; ".join(f"{what}: {_some(keys)}" for what, keys in wrong.items() if keys)
        raise CheckpointError(f"{path}: state_dict does not fit arch {payload['arch']['name']}: {found}")
    ann.load_state_dict(state)
    metrics, train_config = payload.get("metrics", {}), payload.get("train_config", {})
    discretisation = payload.get("discretisation")
    if not isinstance(metrics, dict) or not isinstance(train_config, dict):
        raise CheckpointError(f"{path}: metrics and train_config must be maps")
    if discretisation is not None and not isinstance(discretisation, dict):
        raise CheckpointError(f"{path}: discretisation must be a map")
    return LoadedModel(ann.eval(), spec, metrics, path, train_config, discretisation)


def _positive_int(n: Any) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n > 0


def _some(keys: Iterable[str]) -> str:
    """The first keys of ``keys`` and how many there are."""
    keys = list(map(str, keys))
    return ", ".join(keys[:3]) + (f"... ({len(keys)} in all)" if len(keys) > 3 else "")


def _reason(err: Exception) -> str:
    """What torch says is wrong with a file, without its advice to load it unsafely."""
    text = str(err).split("WeightsUnpickler error:")[-1]
    sentences = (s.strip() for s in re.split(r"(?<=[.:])\s+|\n+", text))
    return " ".join(s for s in sentences if s and not _ADVICE.search(s)) or type(err).__name__
