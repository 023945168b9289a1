"""The stateful, batched, multi-stream SNN operator.

Every key (a live camera's stream, or a sample being replayed) holds one slot of a batch of
network states. ``step`` advances any subset of keys by one slice in one batched call; slots not in
the call keep their state untouched, and a key's result never depends on which other keys share the
batch. ``reset`` returns a slot to the fresh state (membranes at V0, empty output).

The attached keys always hold the first slots: a detached key's slot is filled by moving the last
slot's rows into it. A call that steps every attached key (offline replay, and live streams that
all have a slice) then works in place on views of those rows, however many are
free; only a call for a strict subset gathers a copy of its rows and writes it back.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch

from streamsnn.snn.counting import SampleCounter
from streamsnn.snn.network import NetState, SpikingNetwork


@dataclass
class StepResult:
    """Per key of the call: the accumulated output (B×K) and its counters since reset (B×4,
    float64: steps, spikes, synaptic events (accumulates), multiply-accumulates (0 unless
    counted)). ``SNNOperator.run`` adds a leading T axis to both."""

    keys: list[Hashable]
    output: torch.Tensor
    counts: torch.Tensor

    @property
    def steps(self) -> torch.Tensor:
        return self.counts[..., 0].long()

    @property
    def spikes(self) -> torch.Tensor:
        return self.counts[..., 1]

    @property
    def acs(self) -> torch.Tensor:
        return self.counts[..., 2]

    @property
    def macs(self) -> torch.Tensor:
        return self.counts[..., 3]


class SNNOperator:
    """Holds the state of up to ``capacity`` keys (slots) of one ``SpikingNetwork``.

    ``count_operations``: also count every slot's synaptic events and multiply-accumulates
    (``streamsnn.snn.counting``; costs roughly one extra single-channel conv per layer).
    ``analog_input``: the input is real-valued, so the layers before the first spiking layer
    multiply (False for binary spike input). ``channels_last``: convolution weights, 4-D state
    and input in channels-last memory layout (N×H×W×C in memory; faster convolutions and
    several times faster average pooling on CPU); results are the same."""

    def __init__(
        self,
        network: SpikingNetwork,
        capacity: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        count_operations: bool = False,
        analog_input: bool = True,
        channels_last: bool = True,
    ) -> None:
        self.device, self.dtype = torch.device(device), dtype
        self.layout = torch.channels_last if channels_last else torch.contiguous_format
        self.net = network.to(device=self.device, dtype=dtype, memory_format=self.layout).eval()
        self.capacity = capacity
        self.state = self._laid_out(self.net.init_state(capacity, dtype, self.device))
        self._fresh = self._laid_out(self.net.init_state(1, dtype, self.device))
        # per slot since its reset: steps, spikes, synaptic events, MACs (integers, in float64)
        self.counts = torch.zeros(capacity, 4, dtype=torch.float64, device=self.device)
        self._in_order = list(range(capacity))
        # per slot, views of its rows of every state tensor, the output and the counters, and
        # what a reset copies into them
        tensors = [f for layer in self.state.layers for f in layer] + [self.state.out, self.counts]
        self._rows = [[t[slot] for t in tensors] for slot in range(capacity)]
        self._fresh_rows = [f[0] for layer in self._fresh.layers for f in layer]
        self._fresh_rows += [self.state.out[0].new_zeros(()), self.counts[0].new_zeros(())]
        self.count_operations, self.analog_input = count_operations, analog_input
        self._slots: dict[Hashable, int] = {}  # key → slot
        self._keys: list[Hashable] = []  # slot → key, for the first len(_keys) slots
        self._prefixes: dict[int, NetState] = {}  # n → views of the state's first n rows

    def _laid_out(self, state: NetState) -> NetState:
        """``state`` with its 4-D tensors in the operator's memory layout."""
        return NetState(tuple(type(s)(*(self._layout(f) for f in s)) for s in state.layers), state.out)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.layout) if x.dim() == 4 else x

    # -- keys -----------------------------------------------------------------------------
    @property
    def keys(self) -> list[Hashable]:
        return list(self._slots)

    def attach(self, key: Hashable) -> int:
        """Give ``key`` a fresh slot (idempotent)."""
        if key in self._slots:
            return self._slots[key]
        slot = len(self._keys)
        if slot == self.capacity:
            raise RuntimeError(f"operator is full ({self.capacity} slots); detach a key first")
        self._slots[key] = slot
        self._keys.append(key)
        self._reset_slots([slot])
        return slot

    def detach(self, key: Hashable) -> None:
        """Free the slot of ``key``: the key in the last held slot moves into it (its rows copied
        as they are), so the attached keys keep holding the first slots."""
        slot = self._slots.pop(key)
        last_key = self._keys.pop()
        if last_key != key:
            for dst, src in zip(self._rows[slot], self._rows[len(self._keys)], strict=True):
                dst.copy_(src)
            self._keys[slot], self._slots[last_key] = last_key, slot

    def reset(self, keys: Sequence[Hashable]) -> None:
        """Clear the state of these keys' slots: membranes back to V0, output and counters to 0."""
        if keys:
            self._reset_slots(self._slot_list(keys))

    def _slot_list(self, keys: Sequence[Hashable]) -> list[int]:
        try:
            return [self._slots[k] for k in keys]
        except KeyError as err:
            raise KeyError(f"{err.args[0]!r} holds no slot of the operator") from None

    def _index(self, keys: Sequence[Hashable]) -> torch.Tensor:
        return torch.tensor(self._slot_list(keys), device=self.device)

    def _reset_slots(self, slots: list[int]) -> None:
        # row copies through views made once: cheaper than an index tensor and index_put
        for slot in slots:
            for row, fresh in zip(self._rows[slot], self._fresh_rows, strict=True):
                row.copy_(fresh)

    @torch.inference_mode()
    def decay(self, keys: Sequence[Hashable], factor: float) -> None:
        """Move these keys' state towards fresh: membranes ``v0 + factor·(v − v0)``, the
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
        for slot in self._slot_list(keys):
            self.counts[slot].zero_()

    # -- stepping -------------------------------------------------------------------------
    def _plan(
        self, keys: Sequence[Hashable], x: torch.Tensor, batch_dim: int
    ) -> tuple[torch.Tensor | None, torch.Tensor, NetState, bool]:
        """Slots of ``keys`` (None: the first slots in order), the input with its rows in the
        order of the state to step, that state, and whether it is stepped in place: views of the
        first rows when ``keys`` are every attached key (the input rows are permuted instead),
        else a gathered copy of those slots' state."""
        x = x.to(self.device, self.dtype)
        x = self._layout(x) if batch_dim == 0 else x  # a chunk's T×B×… is laid out by the first layer
        slots = self._slot_list(keys)
        n = len(slots)
        if n == len(self._keys):
            state = self.state if n == self.capacity else self._prefix(n)
            if slots == self._in_order[:n]:
                return None, x, state, True
            idx = torch.tensor(slots, device=self.device)
            permuted = torch.empty_like(x)
            permuted.index_copy_(batch_dim, idx, x)
            return idx, permuted, state, True
        idx = torch.tensor(slots, device=self.device)
        layers = tuple(type(s)(*(f[idx] for f in s)) for s in self.state.layers)
        return idx, x, NetState(layers, self.state.out[idx]), False

    def _prefix(self, n: int) -> NetState:
        """Views of the first ``n`` rows of every state tensor (made once per n)."""
        view = self._prefixes.get(n)
        if view is None:
            layers = tuple(type(s)(*(f[:n] for f in s)) for s in self.state.layers)
            view = self._prefixes[n] = NetState(layers, self.state.out[:n])
        return view

    def _increments(self, spikes: torch.Tensor, counter: SampleCounter | None) -> torch.Tensor:
        """Counter increments per slot and step (…×4: steps, spikes, accumulates, MACs)."""
        inc = torch.zeros(*spikes.shape, 4, dtype=torch.float64, device=self.device)
        inc[..., 0] = 1
        inc[..., 1] = spikes
        if counter is not None:
            inc[..., 2] = counter.acs.view_as(spikes)
            inc[..., 3] = counter.macs.view_as(spikes)
        return inc

    def _finish(
        self,
        idx: torch.Tensor | None,
        state: NetState,
        in_place: bool,
        outputs: torch.Tensor,
        inc: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write back a gathered state and add the counter increments (T×B×4, rows in the
        state's order). Returns ``outputs`` (…×B×K) and the counters after every step (T×B×4),
        both with their rows in the order of the keys, copied out of the operator's state."""
        if not in_place:
            counts = self.counts[idx] + inc.cumsum(0)  # counts are integers, exact in float64
            for layer, s in zip(self.state.layers, state.layers, strict=True):
                for field, value in zip(layer, s, strict=True):
                    field[idx] = value
            self.state.out[idx] = state.out
            self.counts[idx] = counts[-1]
            return outputs, counts
        since = self.counts[: inc.shape[1]]
        counts = since + inc.cumsum(0)
        since.copy_(counts[-1])
        if idx is None:
            return outputs.clone(), counts
        return outputs[..., idx, :], counts[:, idx]

    @torch.inference_mode()
    def step(self, keys: Sequence[Hashable], x: torch.Tensor) -> StepResult:
        """Advance ``keys`` by one slice each; ``x`` is B×C×H×W (row i for keys[i])."""
        idx, x, state, in_place = self._plan(keys, x, 0)
        counter = SampleCounter(len(x), self.analog_input, self.device) if self.count_operations else None
        spikes = self.net.step_(x, state, counter)
        inc = self._increments(spikes, counter)[None]
        output, counts = self._finish(idx, state, in_place, state.out, inc)
        return StepResult(list(keys), output, counts[0])

    @torch.inference_mode()
    def run(self, keys: Sequence[Hashable], xs: torch.Tensor) -> StepResult:
        """Advance ``keys`` by T slices with one call per layer (xs: T×B×C×H×W; the
        chunked mode of offline replay). Every field of the result has a leading T axis: the
        accumulated output (T×B×K) and the counters (T×B) after every slice, as T ``step`` calls
        would give."""
        idx, xs, state, in_place = self._plan(keys, xs, 1)
        t_n, b = xs.shape[:2]
        counter = SampleCounter(t_n * b, self.analog_input, self.device) if self.count_operations else None
        outs, spikes = self.net.run_(xs, state, counter)
        outs, counts = self._finish(idx, state, in_place, outs, self._increments(spikes, counter))
        return StepResult(list(keys), outs, counts)
