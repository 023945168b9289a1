"""Human-readable predictions on stderr (through tqdm, so a progress bar stays intact)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from streamsnn.prediction import Prediction, prediction_line


class ConsoleSink:
    """Print final predictions (or all with ``final_only: false``), every ``every``-th one."""

    def __init__(self, final_only: bool = True, every: int = 1) -> None:
        self.final_only, self.every = final_only, max(1, every)
        self._seen = 0

    def write(self, pred: Prediction) -> None:
        if self.final_only and not pred.final:
            return
        self._seen += 1
        if (self._seen - 1) % self.every:
            return
        tqdm.write(prediction_line(pred.to_dict()), file=sys.stderr)

    def close(self) -> None:
        pass
