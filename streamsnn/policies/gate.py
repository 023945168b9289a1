"""Gates: no decision on no input.

A live stream's decision is final only if the gate is open over the slices it rests on: a model
asked about an empty window, or about sensor noise, still answers with some class, often
confidently, so its confidence is not trusted on input unlike what it was trained on. The gate
also marks an **onset**, activity after a quiet spell, at which the stream's states restart
(``policies/reset.py``), so a decision starts with what just came into view.

- ``none``: always open, no onsets (the behaviour without a gate).
- ``event_rate``: open when the mean event rate over the decision's last ``over_steps`` slices
  (fewer if it is younger) is at least ``min_events_per_ms``; an onset is a slice at that rate
  after at least ``quiet_steps`` slices below it. Choose the rate between the sensor's noise and
  the quietest moments of what it should see (``streamsnn evaluate --live`` reports both).

A gate keeps its per-stream state explicitly (``GateState``): ``update`` takes one slice and
says whether it is an onset, ``open`` reads the state.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pydantic import Field, PositiveFloat, PositiveInt

from streamsnn.options import Options, Registry


@dataclass
class GateState:
    """One stream's recent input: event rates (events per ms) of its last slices, newest last,
    and how many slices in a row were below the gate's rate."""

    rates: collections.deque[float] = field(default_factory=collections.deque)
    quiet: int = 0


class Gate:
    """Whether input supports a decision. ``needs_events`` (a capability): it reads event counts,
    so the source must give events."""

    needs_events: ClassVar[bool] = False

    def new_state(self) -> GateState:
        return GateState()

    def update(self, state: GateState, events: int, duration_us: int) -> bool:
        """Take one slice (``events`` in ``duration_us``); True if it is an onset."""
        return False

    def open(self, state: GateState, steps: int) -> bool:
        """Whether a decision resting on the last ``steps`` slices may be final."""
        return True


GATES: Registry[Gate] = Registry("gate")


class NoGateConfig(Options):
    """No gate: every decision may be final, and there are no onsets."""

    type: Literal["none"] = "none"


@GATES.register(NoGateConfig)
class NoGate(Gate):
    def __init__(self, config: NoGateConfig) -> None:
        pass


class EventRateGateConfig(Options):
    """Open when the event rate over a decision's recent slices is at least a minimum; an onset is
    that rate after a quiet spell."""

    type: Literal["event_rate"] = "event_rate"
    min_events_per_ms: PositiveFloat = Field(
        description="the least mean event rate (events per ms of sensor time) a final decision rests on"
    )
    over_steps: PositiveInt = Field(5, description="the rate is the mean over this many recent slices")
    quiet_steps: PositiveInt = Field(
        3, description="an onset: a slice at the rate after at least this many slices below it"
    )


@GATES.register(EventRateGateConfig)
class EventRateGate(Gate):
    """The ``event_rate`` gate (see the module docstring)."""

    needs_events = True

    def __init__(self, config: EventRateGateConfig) -> None:
        self.min_rate, self.over, self.quiet = config.min_events_per_ms, config.over_steps, config.quiet_steps

    def new_state(self) -> GateState:
        return GateState(collections.deque(maxlen=self.over))

    def update(self, state: GateState, events: int, duration_us: int) -> bool:
        rate = events * 1000.0 / max(duration_us, 1)
        state.rates.append(rate)
        active = rate >= self.min_rate
        onset = active and state.quiet >= self.quiet
        state.quiet = 0 if active else state.quiet + 1
        return onset

    def open(self, state: GateState, steps: int) -> bool:
        recent = list(state.rates)[-min(steps, self.over) :]
        return bool(recent) and sum(recent) / len(recent) >= self.min_rate
