"""The calibration file of Dynamic Confidence (written by ``streamsnn calibrate``, read by the
``dynamic_confidence`` exit policy): α, the temperature τ, the threshold, and how they were chosen."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

CALIBRATION_FORMAT = "streamsnn-calibration/1"


@dataclass
class Calibration:
    """What the ``dynamic_confidence`` policy needs, and how it was chosen."""

    format: str
    pipeline: str
    split: str
    steps: int
    alpha: float
    temperature: float
    threshold: float
    resolution: float
    tolerance: float
    target_saving: float | None
    accuracy_full_T: float
    accuracy: float
    mean_steps: float
    saving: float
    front: list[list[float]]  # [threshold, mean steps, accuracy] on the Pareto front

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path


def load_calibration(path: str | Path) -> Calibration:
    """Read a calibration file written by ``streamsnn calibrate``; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable calibration file ({err})") from None
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{path}: not a streamsnn calibration file (expected format {CALIBRATION_FORMAT})")
    try:
        return Calibration(**data)
    except TypeError as err:
        raise ValueError(f"{path}: calibration file fields do not match ({err})") from None
