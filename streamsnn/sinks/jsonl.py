"""JSON Lines: one prediction per line, ``final`` marks the exit decision."""

from __future__ import annotations

import json
from pathlib import Path

from streamsnn.prediction import Prediction


class JsonlSink:
    def __init__(self, path: str | Path, final_only: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.final_only = final_only
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
