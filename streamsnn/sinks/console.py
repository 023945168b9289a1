"""Human-readable predictions on stderr (through tqdm, so a progress bar stays intact)."""

from __future__ import annotations

import sys

from tqdm import tqdm

from streamsnn.prediction import Prediction


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
        mark = (
            ""
            if pred.label is None
            else ("  ok" if pred.cls == pred.label else f"  WRONG (label {pred.label})")
        )
        state = f"final/{pred.reason}" if pred.final else "      "
        tqdm.write(
            f"{pred.stream} #{pred.sample:<5} step {pred.step:>3} {state:<20} class {pred.cls} "
            f"conf {pred.confidence:.3f}  input {pred.input_latency_ms:7.1f} ms  "
            f"compute {pred.compute_latency_ms:6.2f} ms{mark}",
            file=sys.stderr,
        )

    def close(self) -> None:
        pass
