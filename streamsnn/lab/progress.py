"""What the offline lab's long jobs show while they run (``convert``, ``calibrate``,
``evaluate``): a line on stderr as each stage starts, and tqdm bars where a stage counts
something (the runtime's bar over samples, the scale search's evaluations); nothing with
``--no-progress``."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm


class Stages:
    """Stage lines for one job, ``<job>: <text>``, each with the seconds since the job began
    (through ``tqdm.write``, so a bar on the terminal stays intact); silent unless ``shown``."""

    def __init__(self, job: str, shown: bool = True) -> None:
        self.job, self.shown = job, shown
        self.began = time.monotonic()

    def __call__(self, text: str) -> None:
        if self.shown:
            elapsed = time.monotonic() - self.began
            tqdm.write(f"{self.job} [{elapsed:5.1f} s]: {text}", file=sys.stderr)

    def bar(self, total: int, desc: str, unit: str) -> tqdm:
        """A bar for a stage that counts ``total`` ``unit``s (disabled unless ``shown``)."""
        return tqdm(total=total, desc=f"{self.job}: {desc}", unit=unit, disable=not self.shown, leave=False)
