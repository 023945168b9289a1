"""The stateful, batched, multi-stream SNN operator.

Every stream (a camera, or a sample being replayed) owns one slot of a batch of network states.
``step`` advances any subset of streams by one slice in one batched call; streams not in the call
keep their state untouched, and a stream's result never depends on which other streams share the
batch. ``reset`` returns a stream to the fresh state (membranes at V0, empty output).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from streamsnn.snn.counting import SampleCounter
from streamsnn.snn.network import NetState, SpikingNetwork


@dataclass
class StepResult:
    """Per stream of the call: accumulated output (B×K), and since reset (B each): steps,
    spikes, synaptic events (accumulates) and multiply-accumulates (0 unless counted)."""

    keys: list[Hashable]
    output: torch.Tensor
    steps: torch.Tensor
    spikes: torch.Tensor
    acs: torch.Tensor
    macs: torch.Tensor


class SNNOperator:
    """Holds the state of up to ``capacity`` streams of one ``SpikingNetwork``.

    ``count_operations``: also count every stream's synaptic events and multiply-accumulates
    (``streamsnn.snn.counting``; costs roughly one extra single-channel conv per layer).
    ``analog_input``: the input is real-valued, so the layers before the first spiking layer
    multiply (False for binary spike input)."""

    def __init__(
        self,
        network: SpikingNetwork,
        capacity: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        count_operations: bool = False,
        analog_input: bool = True,
    ) -> None:
        self.device, self.dtype = torch.device(device), dtype
        self.net = network.to(device=self.device, dtype=dtype).eval()
        self.capacity = capacity
        self.state = self.net.init_state(capacity, dtype, self.device)
        self._fresh = self.net.init_state(1, dtype, self.device)
        self.steps = torch.zeros(capacity, dtype=torch.long, device=self.device)
        self.spikes = torch.zeros(capacity, dtype=dtype, device=self.device)
        self.acs = torch.zeros(capacity, device=self.device)
        self.macs = torch.zeros(capacity, device=self.device)
        self.count_operations, self.analog_input = count_operations, analog_input
        self._slots: dict[Hashable, int] = {}
        self._free = list(range(capacity - 1, -1, -1))

    # -- streams --------------------------------------------------------------------------
    @property
    def streams(self) -> list[Hashable]:
        return list(self._slots)

    def attach(self, key: Hashable) -> int:
        """Give stream ``key`` a fresh slot (idempotent)."""
        if key in self._slots:
            return self._slots[key]
        if not self._free:
            raise RuntimeError(f"operator is full ({self.capacity} streams); detach one first")
        slot = self._free.pop()
        self._slots[key] = slot
        self._reset_slots(torch.tensor([slot], device=self.device))
        return slot

    def detach(self, key: Hashable) -> None:
        """Free the slot of stream ``key``."""
        self._free.append(self._slots.pop(key))

    def reset(self, keys: Sequence[Hashable]) -> None:
        """Clear the state of these streams: membranes back to V0, output and counters to 0."""
        if keys:
            self._reset_slots(self._index(keys))

    def _index(self, keys: Sequence[Hashable]) -> torch.Tensor:
        try:
            return torch.tensor([self._slots[k] for k in keys], device=self.device)
        except KeyError as err:
            raise KeyError(f"stream {err.args[0]!r} is not attached to the operator") from None

    @torch.inference_mode()
    def _reset_slots(self, idx: torch.Tensor) -> None:
        for layer, fresh in zip(self.state.layers, self._fresh.layers, strict=True):
            for field, value in zip(layer, fresh, strict=True):
                field[idx] = value
        self.state.out[idx] = 0
        self._zero_counters(idx)

    def _zero_counters(self, idx: torch.Tensor) -> None:
        for counter in (self.steps, self.spikes, self.acs, self.macs):
            counter[idx] = 0

    @torch.inference_mode()
    def decay(self, keys: Sequence[Hashable], factor: float) -> None:
        """Move these streams' state towards fresh: membranes ``v0 + factor·(v − v0)``, the
        accumulated output ``factor·out`` (other state, such as QFFS spike counts, is kept)."""
        if not keys:
            return
        idx = self._index(keys)
        for layer, fresh in zip(self.state.layers, self._fresh.layers, strict=True):
            v = layer.v[idx]
            layer.v[idx] = fresh.v + factor * (v - fresh.v)
        self.state.out[idx] = self.state.out[idx] * factor

    @torch.inference_mode()
    def restart_counts(self, keys: Sequence[Hashable]) -> None:
        """Start counting steps and spikes anew (a new decision) without touching the state."""
        if keys:
            self._zero_counters(self._index(keys))

    # -- stepping -------------------------------------------------------------------------
    def _gather(self, idx: torch.Tensor | None) -> NetState:
        if idx is None:
            return self.state
        layers = tuple(type(s)(*(f[idx] for f in s)) for s in self.state.layers)
        return NetState(layers, self.state.out[idx])

    def _scatter(self, idx: torch.Tensor | None, new: NetState) -> None:
        if idx is None:
            self.state = new
            return
        for layer, s in zip(self.state.layers, new.layers, strict=True):
            for field, value in zip(layer, s, strict=True):
                field[idx] = value
        self.state.out[idx] = new.out

    def _slots_of(self, keys: Sequence[Hashable]) -> torch.Tensor | None:
        """Slot indices of ``keys``, or None when they are exactly all slots in order."""
        idx = self._index(keys)
        if len(keys) == self.capacity and torch.equal(idx, torch.arange(self.capacity, device=self.device)):
            return None
        return idx

    @torch.inference_mode()
    def step(self, keys: Sequence[Hashable], x: torch.Tensor) -> StepResult:
        """Advance streams ``keys`` by one slice each; ``x`` is B×C×H×W (row i for keys[i])."""
        idx = self._slots_of(keys)
        counter = SampleCounter(len(keys), self.analog_input, self.device) if self.count_operations else None
        new, spikes = self.net.step(x.to(self.device, self.dtype), self._gather(idx), counter)
        self._scatter(idx, new)
        sel = slice(None) if idx is None else idx
        self.steps[sel] += 1
        self.spikes[sel] += spikes
        if counter is not None:
            self.acs[sel] += counter.acs
            self.macs[sel] += counter.macs
        counters = (self.steps, self.spikes, self.acs, self.macs)
        return StepResult(list(keys), new.out, *(c[sel].clone() for c in counters))

    @torch.inference_mode()
    def run(self, keys: Sequence[Hashable], xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance streams ``keys`` by T slices at once (xs: T×B×C×H×W, layer by layer).
        Returns the accumulated output after every slice (T×B×K) and spikes per slice (T×B);
        operations are not counted here."""
        idx = self._slots_of(keys)
        new, outs, spikes = self.net.run(xs.to(self.device, self.dtype), self._gather(idx))
        self._scatter(idx, new)
        sel = slice(None) if idx is None else idx
        self.steps[sel] += xs.shape[0]
        self.spikes[sel] += spikes.sum(0)
        return outs, spikes
