"""JSON Lines: one prediction per line, ``final`` marks the exit decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from streamsnn.options import Options
from streamsnn.prediction import Prediction
from streamsnn.sinks.base import SINKS, Sink


class JsonlSinkConfig(Options):
    """One JSON line per prediction."""

    type: Literal["jsonl"] = "jsonl"
    path: str = Field(description="the file (its folder is created; an existing file is overwritten)")
    final_only: bool = Field(False, description="write only exit decisions")


@SINKS.register(JsonlSinkConfig)
class JsonlSink(Sink):
    def __init__(self, config: JsonlSinkConfig) -> None:
        self.path = Path(config.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.final_only = config.final_only
        self._file = open(self.path, "w")  # noqa: SIM115 - closed in close()
        self.written = 0

    def write(self, pred: Prediction) -> None:
        if self.final_only and not pred.final:
            return
        self._file.write(json.dumps(pred.to_dict(), separators=(",", ":")) + "\n")
        self.written += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
