"""Whole samples of a segmented source (dataset replay), cut into slices and encoded."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from streamsnn.encoding import Encoder
from streamsnn.events import Packet, Slice
from streamsnn.slicing import EventSlice, Slicer


@dataclass
class SampleSlices:
    """All slices of one sample of a segmented source, encoded. ``late_events``: events the
    slicer dropped as too late to place in time. ``mean_input``: the mean of the slices' inputs
    (1×C×H×W), when asked for (the ANN reference)."""

    stream: str
    sample: int
    label: int | None
    slices: list[Slice]
    late_events: int = 0
    mean_input: torch.Tensor | None = None


def to_slice(
    s: EventSlice | Slice, stream: str, sample: int, index: int, t0: int, label: int | None
) -> Slice:
    return Slice(stream, sample, index, s.t_start_us, s.t_end_us, s.data, t0, label)


def sample_slices(packet: Packet, slicer: Slicer | None, frame_steps: int) -> list[Slice]:
    """All slices of one whole sample: a frame shown for ``frame_steps`` steps (``slicer`` None),
    or events cut by ``slicer``. A sample without events still gets one empty slice, so it gets a
    decision."""
    sample = int(packet.sample or 0)
    if slicer is None:
        t0 = int(packet.t0_us or 0)
        slices = [
            Slice(packet.stream, sample, i, t0, t0, packet.data, t0, packet.label) for i in range(frame_steps)
        ]
    else:
        slicer.reset(packet.t0_us)
        cut = slicer.push(packet.data) + slicer.flush(packet.t_end_us)
        t0 = int(slicer.t0_us or 0)
        if not cut:
            cut = [EventSlice(t0, int(packet.t_end_us or t0 + 1), packet.data[:0])]
        slices = [to_slice(s, packet.stream, sample, i, t0, packet.label) for i, s in enumerate(cut)]
    slices[-1].last = True
    return slices


def encode_slices(encoder: Encoder, slices: list[Slice]) -> list[Slice]:
    """Set every slice's ``input`` (1×C×H×W: a batch of one, so that a stream stepped on its
    own needs no tensor call on the stepping loop) and ``encode_s`` (s)."""
    if encoder.batched and slices:  # event binning: one pass for all
        t0 = time.perf_counter()
        inputs = encoder.encode_many(slices).split(1)
        share = (time.perf_counter() - t0) / len(slices)
        for item, x in zip(slices, inputs, strict=True):
            item.input, item.encode_s = x, share
        return slices
    for item in slices:
        t0 = time.perf_counter()
        item.input = encoder(item).unsqueeze(0)
        item.encode_s = time.perf_counter() - t0
    return slices


def encoded_sample(
    packet: Packet, slicer: Slicer | None, encoder: Encoder, frame_steps: int, mean: bool = False
) -> SampleSlices:
    """One whole sample cut (``sample_slices``) and encoded (``encode_slices``), with the mean
    of its inputs if ``mean``."""
    slices = encode_slices(encoder, sample_slices(packet, slicer, frame_steps))
    late = slicer.late_events if slicer is not None else 0
    sample = SampleSlices(packet.stream, int(packet.sample or 0), packet.label, slices, late)
    if mean:
        sample.mean_input = torch.cat([item.input for item in slices]).mean(0, keepdim=True)
    return sample
