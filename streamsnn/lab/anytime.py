"""Anytime optimisations of converted SNNs (Dutson, Li, Gupta, WACV 2023).

- **Sparsity fine-tuning** of the ANN: an activation penalty from the BatchNorm shifts β (the
  expected fraction of non-zero post-ReLU activations, ``½ (erf(β/(|γ|√2)) + 1)`` per channel,
  weighted by pixels per channel; the paper fixes γ = 1) and an L1 weight penalty weighted the
  same way (eqs. 8–10).
- **Firing-rate scaling**: a per-channel factor η multiplies a spiking layer's incoming weights
  and bias and divides its outgoing weights, so the ANN function is unchanged while the SNN's
  firing rates (thresholds fixed) change. η (and optionally V0) is optimised with NLopt's
  Subplex on ``λe·M_e + λl·P_l + λp·P_p`` in phases global → layer → channel, with P_l and P_p
  normalised as the paper's scale-free form or as SaRNN's code (``AnytimeObjective``).
- The measures: Pareto latency and Pareto power of an accuracy-over-steps curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from streamsnn.snn.counting import counted_run
from streamsnn.snn.network import SpikingNetwork
from streamsnn.snn.neurons import SpikingNeuron

# -- sparsity fine-tuning ---------------------------------------------------------------------


def pareto_latency(a_max: float, accuracy: np.ndarray | list[float]) -> float:
    """Dutson et al.: ``P_l = Σ_t (a_max − a_t)`` (accuracy as a fraction, so the unit is steps)."""
    return float(np.sum(a_max - np.asarray(accuracy, dtype=np.float64)))


def pareto_power(a_max: float, accuracy: np.ndarray | list[float], events: np.ndarray | list[float]) -> float:
    """Dutson et al.: ``P_p = Σ_t e_t (a_max − a_t)`` with e_t the synaptic events at step t."""
    return float(
        np.sum(np.asarray(events, dtype=np.float64) * (a_max - np.asarray(accuracy, dtype=np.float64)))
    )


def _pixels_per_channel(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, int]:
    """Output pixels per channel of every BN, conv and linear layer for one ``example`` input."""
    sizes: dict[nn.Module, int] = {}
    hooks = [
        m.register_forward_hook(lambda m, _x, y: sizes.__setitem__(m, int(y[0, 0].numel())))
        for m in model.modules()
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(example[:1])
    model.train(was_training)
    for h in hooks:
        h.remove()
    return sizes


class SparsityPenalty:
    """``λa·L_a + λw·L_w`` of Dutson et al. for ``model`` (pixel counts traced from ``example``)."""

    def __init__(self, model: nn.Module, example: torch.Tensor, activation: float, weight: float) -> None:
        self.model, self.activation, self.weight = model, activation, weight
        self.pixels = _pixels_per_channel(model, example)

    def activation_loss(self) -> torch.Tensor:
        """L_a: expected fraction of non-zero activations over all BN channels (eq. 8)."""
        num, den = 0.0, 0
        for m, n in self.pixels.items():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.affine:
                frac = 0.5 * (torch.erf(m.bias / (m.weight.abs() + 1e-8) / math.sqrt(2)) + 1)
                num = num + (n * frac).sum()
                den += n * m.num_features
        return num / max(den, 1) if den else torch.zeros(())

    def weight_loss(self) -> torch.Tensor:
        """L_w: L1 of the weights, each weighted by the neurons that use it (eq. 9)."""
        num, den = 0.0, 0
        for m, n in self.pixels.items():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                num = num + n * m.weight.abs().sum()
                den += n * m.weight.numel()
        return num / max(den, 1) if den else torch.zeros(())

    def __call__(self) -> torch.Tensor:
        return self.activation * self.activation_loss() + self.weight * self.weight_loss()


def prune_small_weights(model: nn.Module, epsilon: float = 1e-4) -> int:
    """Zero every conv/linear weight with magnitude below ``epsilon``; returns how many."""
    pruned = 0
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                small = m.weight.abs() < epsilon
                pruned += int(small.sum())
                m.weight[small] = 0
    return pruned


# -- firing-rate scaling ------------------------------------------------------------------------

WEIGHTED = (nn.Conv2d, nn.Linear)
PASS_THROUGH = (nn.AvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)


def scalable_layers(layers: list[nn.Module], is_activation: Callable[[nn.Module], bool]) -> list[int]:
    """Indices of the activation layers whose channels can be scaled: a weighted layer before
    them and a weighted layer after them (through pooling and flatten only)."""
    out = []
    for i, m in enumerate(layers):
        if not is_activation(m):
            continue
        before = next((j for j in range(i - 1, -1, -1) if not isinstance(layers[j], PASS_THROUGH)), None)
        after = next((j for j in range(i + 1, len(layers)) if not isinstance(layers[j], PASS_THROUGH)), None)
        if (
            before is not None
            and after is not None
            and isinstance(layers[before], WEIGHTED)
            and isinstance(layers[after], WEIGHTED)
        ):
            out.append(i)
    return out


@torch.no_grad()
def scale_channels(layers: list[nn.Module], position: int, eta: torch.Tensor) -> None:
    """Scale the activation at ``layers[position]`` channel-wise by ``eta`` (C, or scalar):
    incoming weights and bias × η, outgoing weights ÷ η (in place). With a homogeneous
    activation (ReLU) the network function is unchanged."""
    before = next(j for j in range(position - 1, -1, -1) if isinstance(layers[j], WEIGHTED))
    after = next(j for j in range(position + 1, len(layers)) if isinstance(layers[j], WEIGHTED))
    src, dst = layers[before], layers[after]
    channels = src.out_channels if isinstance(src, nn.Conv2d) else src.out_features
    eta = torch.as_tensor(eta, dtype=src.weight.dtype).expand(channels).to(src.weight.device)
    src.weight.mul_(eta.reshape(-1, *([1] * (src.weight.dim() - 1))))
    if src.bias is not None:
        src.bias.mul_(eta)
    if isinstance(dst, nn.Conv2d):
        dst.weight.div_(eta.reshape(1, -1, 1, 1))
    else:  # linear after flatten: each channel covers a block of consecutive features
        per_channel = dst.in_features // channels
        dst.weight.div_(eta.repeat_interleave(per_channel).reshape(1, -1))


@dataclass
class ScalingResult:
    """Optimised factors per scalable spiking layer (by layer index) and initial membranes."""

    etas: dict[int, torch.Tensor]
    v0: dict[int, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class AnytimeObjective:
    """``λe·M_e + λl·TAC + λp·PAC`` (Dutson et al. eq. 11): M_e the lowest error over the steps,
    TAC and PAC the Pareto latency and power, normalised as ``form`` says. The λ defaults
    100 / 10 / 100 are the released code's.

    - ``paper``: TAC = P_l / T (the mean accuracy gap to the ANN over time) and PAC =
      P_p / (T·E_ref) (the gap weighted by the events of each step, relative to the unscaled
      network's mean events per step E_ref), e_t counting accumulates and the analog first
      layer's multiply-accumulates. T and E_ref are fixed over an optimisation, so this is eq. 11
      with λl/T and λp/(T·E_ref): the λs do not depend on T or on the network's size.
    - ``sarnn`` (SaRNN's released code): TAC = P_l / a_ANN and PAC = Σ_t (a_ANN − a_t)·p_t / a_ANN
      with raw per-sample event counts: synaptic events only (the analog first layer is not
      counted), and, as SaRNN simulates in chunks of ``chunk`` steps, p_t = the mean events per
      step of t's chunk ÷ ``chunk`` (``chunk`` = 1: p_t = e_t and PAC = P_p / a_ANN).
    """

    lambda_error: float = 100.0
    lambda_latency: float = 10.0
    lambda_power: float = 100.0
    form: Literal["paper", "sarnn"] = "paper"
    chunk: int = 1  # sarnn: steps per simulation chunk

    def __post_init__(self) -> None:
        if self.form not in ("paper", "sarnn"):
            raise ValueError(f"unknown anytime objective form '{self.form}'; use paper or sarnn")
        if self.chunk < 1:
            raise ValueError(f"anytime objective: chunk must be a positive number of steps, not {self.chunk}")

    def __call__(
        self, accuracy: np.ndarray, accumulates: np.ndarray, macs: np.ndarray, a_max: float, e_ref: float
    ) -> dict[str, float]:
        """The loss and its terms for per-step ``accuracy`` and per-sample ``accumulates`` and
        ``macs`` of every step; ``e_ref``: the unscaled network's mean accumulates + MACs per step
        (the ``paper`` form's reference)."""
        t = len(accuracy)
        m_e = float(1 - accuracy.max())
        p_l = pareto_latency(a_max, accuracy)
        if self.form == "paper":
            tac = p_l / t
            pac = pareto_power(a_max, accuracy, accumulates + macs) / (t * max(e_ref, 1e-12))
        else:
            if t % self.chunk:
                raise ValueError(f"sarnn objective: {t} steps are not whole chunks of {self.chunk}")
            power = (
                np.repeat(np.asarray(accumulates).reshape(-1, self.chunk).mean(1), self.chunk) / self.chunk
            )
            tac = p_l / a_max
            pac = pareto_power(a_max, accuracy, power) / a_max
        loss = self.lambda_error * m_e + self.lambda_latency * tac + self.lambda_power * pac
        return {"loss": loss, "min_error": m_e, "pareto_latency": p_l, "tac": tac, "pac": pac}


def simulate(
    net: SpikingNetwork, x: torch.Tensor, labels: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy, accumulates (synaptic events) and multiply-accumulates per sample after every
    step, for constant input ``x``."""
    outs, counts = counted_run(net, x.unsqueeze(0).expand(steps, *x.shape))
    acc = (outs.argmax(2).numpy() == labels[None]).mean(1)
    accumulates = np.array([sum(e) for e in counts.events]) / len(labels)
    macs = np.array([sum(m) for m in counts.macs]) / len(labels)
    return acc, accumulates, macs


def optimize_scaling(
    net: SpikingNetwork,
    x: torch.Tensor,
    labels: np.ndarray,
    steps: int,
    a_max: float,
    phases: dict[str, int],
    objective: AnytimeObjective | None = None,
    optimize_v0: bool = False,
    bounds: tuple[float, float] = (0.1, 10.0),
    on_evaluation: Callable[[dict[str, float]], None] | None = None,
) -> ScalingResult:
    """Optimise firing-rate scaling (and V0) of ``net`` in place with NLopt's Subplex.

    ``phases`` maps ``global``, ``layer`` and ``channel`` to their evaluation budgets, run in
    that order, each starting from the previous result. η is searched in log space within
    ``bounds``; V0 (a fraction of θ) within [0, 1]. The objective is simulated on ``x``
    (calibration inputs, not the evaluation split) for ``steps`` steps. ``on_evaluation`` is
    called after each evaluation of the objective with its phase and terms (for progress).
    """
    import nlopt

    objective = objective or AnytimeObjective()
    layers = list(net.layers)
    positions = scalable_layers(layers, lambda m: isinstance(m, SpikingNeuron))
    channels = {p: _channels(layers, p) for p in positions}
    base = {
        id(m): (m.weight.detach().clone(), None if m.bias is None else m.bias.detach().clone())
        for m in layers
        if isinstance(m, WEIGHTED)
    }
    neurons = {p: layers[p] for p in positions}
    neuron_index = [i for i, m in enumerate(layers) if isinstance(m, SpikingNeuron)]
    v0_shape = {
        p: (-1, 1, 1) if len(net.neuron_shapes[neuron_index.index(p)]) == 3 else (-1,) for p in positions
    }
    v0_base = {p: neurons[p].v0.detach().clone() for p in positions}
    _, acs_ref, macs_ref = simulate(net, x, labels, steps)
    e_ref = float((acs_ref + macs_ref).mean())
    etas = {p: torch.ones(channels[p]) for p in positions}
    v0s = {
        p: v0_base[p].expand(channels[p]).clone() if v0_base[p].numel() == 1 else v0_base[p].flatten().clone()
        for p in positions
    }
    history: list[dict[str, float]] = []

    def apply() -> None:
        with torch.no_grad():
            for m in layers:
                if isinstance(m, WEIGHTED):
                    w, b = base[id(m)]
                    m.weight.copy_(w)
                    if b is not None:
                        m.bias.copy_(b)
        for p in positions:
            scale_channels(layers, p, etas[p])
            neurons[p].v0 = v0s[p].reshape(v0_shape[p]).clone()

    def run_phase(name: str, budget: int) -> None:
        groups = _groups(name, positions, channels)
        n = len(groups)
        if n == 0:
            return
        log_eta = [float(np.mean([math.log(float(etas[p][c].mean())) for p, c in g])) for g in groups]
        start_v0 = [float(np.mean([float(v0s[p][c].mean()) for p, c in g])) for g in groups]
        start = np.array(log_eta + (start_v0 if optimize_v0 else []))

        def unpack(vec: np.ndarray) -> None:
            for k, group in enumerate(groups):
                for p, c in group:
                    etas[p][c] = float(np.exp(vec[k]))
                    if optimize_v0:
                        v0s[p][c] = float(vec[n + k])

        def f(vec: np.ndarray, _grad: np.ndarray) -> float:
            unpack(vec)
            apply()
            acc, accumulates, macs = simulate(net, x, labels, steps)
            result = objective(acc, accumulates, macs, a_max, e_ref)
            history.append({"phase": name, **result})
            if on_evaluation is not None:
                on_evaluation(history[-1])
            return result["loss"]

        opt = nlopt.opt(nlopt.LN_SBPLX, len(start))
        lo = [math.log(bounds[0])] * n + ([0.0] * n if optimize_v0 else [])
        hi = [math.log(bounds[1])] * n + ([1.0] * n if optimize_v0 else [])
        opt.set_lower_bounds(lo)
        opt.set_upper_bounds(hi)
        opt.set_min_objective(f)
        opt.set_maxeval(budget)
        opt.set_initial_step([0.3] * n + ([0.1] * n if optimize_v0 else []))
        best = opt.optimize(start)
        unpack(best)
        apply()

    for name in ("global", "layer", "channel"):
        if phases.get(name):
            run_phase(name, int(phases[name]))
    return ScalingResult(
        {p: etas[p].clone() for p in positions}, {p: v0s[p].clone() for p in positions}, history
    )


def _channels(layers: list[nn.Module], position: int) -> int:
    before = next(j for j in range(position - 1, -1, -1) if isinstance(layers[j], WEIGHTED))
    src = layers[before]
    return src.out_channels if isinstance(src, nn.Conv2d) else src.out_features


Group = list[tuple[int, slice | int]]


def _groups(phase: str, positions: list[int], channels: dict[int, int]) -> list[Group]:
    """The parameters of a phase, each a group of (layer, channels) sharing one value: one for
    the whole network (global), one per layer, or one per channel."""
    if phase == "global":
        return [[(p, slice(None)) for p in positions]] if positions else []
    if phase == "layer":
        return [[(p, slice(None))] for p in positions]
    if phase == "channel":
        return [[(p, c)] for p in positions for c in range(channels[p])]
    raise ValueError(f"unknown scaling phase '{phase}'; use global, layer or channel")
