"""Human-readable predictions on stderr (through tqdm, so a progress bar stays intact)."""

from __future__ import annotations

import sys
from typing import Literal

from pydantic import Field, PositiveInt
from tqdm import tqdm

from streamsnn.options import Options
from streamsnn.prediction import Prediction, prediction_line
from streamsnn.sinks.base import SINKS, Sink


class ConsoleSinkConfig(Options):
    """Human-readable prediction lines on stderr."""

    type: Literal["console"] = "console"
    final_only: bool = Field(True, description="print only exit decisions")
    every: PositiveInt = Field(
        1,
        description="print every n-th of those predictions; a live run prints every final decision "
        "(they come at the sensor's pace) and every n-th of the others",
    )


@SINKS.register(ConsoleSinkConfig)
class ConsoleSink(Sink):
    """Print final predictions (or all with ``final_only: false``), every ``every``-th one; in a
    live run (``live``) every final one, and every ``every``-th of the others."""

    def __init__(self, config: ConsoleSinkConfig) -> None:
        self.final_only, self.every = config.final_only, config.every
        self._seen = 0

    def write(self, pred: Prediction) -> None:
        if self.final_only and not pred.final:
            return
        if not (self.live and pred.final):  # thinned: a replay's lines, a live run's non-finals
            self._seen += 1
            if (self._seen - 1) % self.every:
                return
        tqdm.write(prediction_line(pred.to_dict()), file=sys.stderr)
