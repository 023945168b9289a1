"""The same spiking network in other frameworks, for timing our per-step inference against theirs.

``spikingjelly_twin`` and ``snntorch_twin`` rebuild a plain (non-residual) ``SpikingNetwork`` with
SpikingJelly's or snnTorch's neurons around the very same synapse modules (shared weights, not
copies); ``ann_twin`` is the dense network with ReLU in place of the neurons, whose one forward is
the floor for a dense step. ``check_agreement`` steps ours and the twins on the same inputs.

SpikingJelly and snnTorch are imported lazily, so this module imports without them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from streamsnn.snn.network import Fork, Merge, SpikingNetwork
from streamsnn.snn.neurons import IFNeuron, LIFNeuron, SpikingNeuron

SPIKINGJELLY_INSTALL = "pip install --no-deps spikingjelly==2.0.0 loguru"
SNNTORCH_INSTALL = "pip install snntorch==1.0.0"


def _layers(net: SpikingNetwork, dense: bool = False) -> list[nn.Module]:
    """The layers of ``net``, checked: IF and LIF neurons only (any neuron when ``dense``), no
    residual markers."""
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (Fork, Merge)):
            raise NotImplementedError(
                f"layer {i} ({type(layer).__name__}): residual networks have no twin; use a plain network"
            )
        if isinstance(layer, SpikingNeuron) and not dense and type(layer) not in (IFNeuron, LIFNeuron):
            raise NotImplementedError(
                f"layer {i} ({type(layer).__name__}): only IF and LIF neurons have twins"
            )
    return list(net.layers)


def _scalar(t: torch.Tensor, what: str, i: int) -> float:
    if t.numel() != 1:
        raise ValueError(
            f"layer {i}: per-channel {what} ({t.numel()} values); SpikingJelly neurons take one float"
        )
    return float(t)


class Twin:
    """A peer framework's copy of a ``SpikingNetwork``: ``reset()``, then ``step(x)`` once per
    time step (x B×C×H×W → the output accumulated since the reset, B×K)."""

    def __init__(self, body: nn.Sequential) -> None:
        self.body = body.eval()
        self.out: torch.Tensor | None = None

    def reset(self) -> None:
        """Membranes back to V0·θ, output accumulator emptied."""
        self.out = None

    def _accumulate(self, y: torch.Tensor) -> torch.Tensor:
        self.out = y if self.out is None else self.out + y  # the order of additions of ``net.step``
        return self.out

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One time step: x B×C×H×W → accumulated output B×K."""
        return self._accumulate(self.body(x))


class SpikingJellyTwin(Twin):
    """SpikingJelly's ``IFNode``/``LIFNode`` in single-step (``'s'``) or multi-step (``'m'``) mode."""

    def __init__(self, body: nn.Sequential, step_mode: str) -> None:
        super().__init__(body)
        self.step_mode = step_mode
        self.reset()

    def reset(self) -> None:
        from spikingjelly.activation_based import functional

        functional.reset_net(self.body)  # v ← its reset value, set to V0·θ in spikingjelly_twin
        super().reset()

    def step(self, x: torch.Tensor) -> torch.Tensor:
        if self.step_mode == "m":
            return self.run(x.unsqueeze(0))[0]
        return super().step(x)

    def run(self, xs: torch.Tensor) -> torch.Tensor:
        """T steps in SpikingJelly's multi-step mode (T folded into the batch for the synapses):
        xs T×B×C×H×W → accumulated outputs after every step, T×B×K."""
        if self.step_mode != "m":
            raise RuntimeError("run needs a multi-step twin: spikingjelly_twin(net, 'm')")
        return torch.stack([self._accumulate(y) for y in self.body(xs)])


def spikingjelly_twin(net: SpikingNetwork, step_mode: str = "s") -> SpikingJellyTwin:
    """``net`` with SpikingJelly neurons: IF → ``IFNode(v_reset=None)`` (soft reset), LIF →
    ``LIFNode(tau=1/(1 − decay), decay_input=False, v_reset=0.0)``, i.e. v ← v − v/τ + x =
    decay·v + x, hard reset to 0 (bit-exact for IF and for decay 0.5; other decays round v − v/τ
    differently from decay·v). Needs one threshold and V0 per layer (SpikingJelly takes floats).
    ``step_mode`` ``'m'``: consecutive synapse layers inside ``layer.SeqToANNContainer``."""
    try:
        from spikingjelly.activation_based import layer as sj_layer
        from spikingjelly.activation_based import neuron as sj_neuron
    except ImportError as e:
        raise ImportError(f"the SpikingJelly twin needs SpikingJelly: {SPIKINGJELLY_INSTALL}") from e
    if step_mode not in ("s", "m"):
        raise ValueError(f"step_mode must be 's' or 'm', not {step_mode!r}")

    def wrap(synapses: list[nn.Module]) -> list[nn.Module]:
        return [sj_layer.SeqToANNContainer(*synapses)] if step_mode == "m" and synapses else synapses

    modules: list[nn.Module] = []
    synapses: list[nn.Module] = []
    for i, m in enumerate(_layers(net)):
        if not isinstance(m, SpikingNeuron):
            synapses.append(m)
            continue
        theta = _scalar(m.threshold, "threshold", i)
        node: nn.Module
        if isinstance(m, LIFNeuron):
            if not 0.0 < m.decay < 1.0:
                raise ValueError(f"layer {i}: SpikingJelly's LIF needs 0 < decay < 1 (τ > 1), not {m.decay}")
            node = sj_neuron.LIFNode(
                tau=1.0 / (1.0 - m.decay),
                decay_input=False,
                v_threshold=theta,
                v_reset=0.0,
                step_mode=step_mode,
            )
        else:
            node = sj_neuron.IFNode(v_threshold=theta, v_reset=None, step_mode=step_mode)
        # The membrane is a float until the first step broadcasts it to the input's shape
        # (BaseNode.materialize_states); reset() restores this reset value.
        node.set_reset_value("v", _scalar(m.v0, "V0", i) * theta)
        modules += [*wrap(synapses), node]
        synapses = []
    modules += wrap(synapses)
    return SpikingJellyTwin(nn.Sequential(*modules), step_mode)


class SnnTorchTwin(Twin):
    """snnTorch's ``Leaky`` neurons (``init_hidden=True``), single step."""

    def __init__(self, body: nn.Sequential, starts: list[tuple[Any, tuple[int, ...], torch.Tensor]]) -> None:
        super().__init__(body)
        self.starts = starts  # (Leaky, neuron shape without batch, V0·θ)
        self.fresh = True

    def reset(self) -> None:
        super().reset()
        self.fresh = True  # membranes are set on the next step, once the batch size is known

    def step(self, x: torch.Tensor) -> torch.Tensor:
        if self.fresh:
            for leaky, shape, start in self.starts:
                # Leaky zeroes ``mem`` whose shape differs from the input's, so it gets the full shape
                leaky.mem = torch.zeros((x.shape[0], *shape), dtype=x.dtype, device=x.device) + start
            self.fresh = False
        return super().step(x)


def snntorch_twin(net: SpikingNetwork) -> SnnTorchTwin:
    """``net`` with snnTorch neurons: IF → ``Leaky(beta=1, reset_mechanism='subtract')``, LIF →
    ``Leaky(beta=decay, reset_mechanism='zero')``; thresholds may be per channel.

    snnTorch keeps the membrane *before* reset and resets at the start of the next step from
    the spike of the last (``reset_delay=True``): m ← β·m + x − H(m − θ)·θ (subtract) or
    m ← β·(1 − H(m − θ))·m + x (zero), spike H(m − θ). That is our recurrence for the pre-reset
    membrane h (v = h − s·θ or h·(1 − s)), given V0 ≤ θ, with two differences: it spikes when
    m > θ where we spike when v ≥ θ, and it adds in another order ((m + x) − θ against
    (h − θ) + x), so a membrane within rounding of θ may spike in one and not in the other.
    """
    try:
        import snntorch
    except ImportError as e:
        raise ImportError(f"the snnTorch twin needs snnTorch: {SNNTORCH_INSTALL}") from e
    modules: list[nn.Module] = []
    starts: list[tuple[Any, tuple[int, ...], torch.Tensor]] = []
    shapes = iter(net.neuron_shapes)
    for m in _layers(net):
        if not isinstance(m, SpikingNeuron):
            modules.append(m)
            continue
        lif = isinstance(m, LIFNeuron)
        leaky = snntorch.Leaky(
            beta=m.decay if lif else 1.0,
            threshold=m.threshold.clone(),
            reset_mechanism="zero" if lif else "subtract",
            init_hidden=True,
        )
        # Every snnTorch neuron enrols in a class-level list that Leaky.reset_hidden() and
        # snntorch.utils.reset() zero all at once (V0 lost, and other twins' states too), and
        # that keeps it alive; the twin resets its own neurons, so it takes them off the list.
        snntorch.SpikingNeuron.instances.remove(leaky)
        modules.append(leaky)
        starts.append((leaky, next(shapes), (m.v0 * m.threshold).detach().clone()))
    return SnnTorchTwin(nn.Sequential(*modules), starts)


def ann_twin(net: SpikingNetwork) -> nn.Sequential:
    """The dense network: ``net``'s synapse layers (shared, not copies) with ``nn.ReLU`` in place
    of every spiking layer, in eval mode; input B×C×H×W → output B×K."""
    return nn.Sequential(
        *(nn.ReLU(inplace=True) if isinstance(m, SpikingNeuron) else m for m in _layers(net, dense=True))
    ).eval()


@torch.inference_mode()
def check_agreement(net: SpikingNetwork, steps: int = 8, batch: int = 2, seed: int = 0) -> dict[str, float]:
    """Step ``net`` and every twin whose framework is installed on the same random inputs
    (uniform in [0, 1), steps×batch×C×H×W): the largest absolute difference of the accumulated
    outputs over all steps per twin (``spikingjelly_s``, ``spikingjelly_m`` (its ``run``),
    ``snntorch``), the largest accumulated output of ours (``scale``) and our spikes per stream
    and step (``spikes``, to see that the comparison is not trivially silent)."""
    xs = torch.rand(steps, batch, *net.input_shape, generator=torch.Generator().manual_seed(seed))
    state, ours, spikes = net.init_state(batch), [], 0.0
    for x in xs:
        state, z = net.step(x, state)
        ours.append(state.out)
        spikes += float(z.sum())
    ref = torch.stack(ours)
    result = {"scale": float(ref.abs().max()), "spikes": spikes / (steps * batch)}

    def diff(outs: torch.Tensor) -> float:
        return float((outs - ref).abs().max())

    try:
        sj = spikingjelly_twin(net, "s")
        result["spikingjelly_s"] = diff(torch.stack([sj.step(x) for x in xs]))
        result["spikingjelly_m"] = diff(spikingjelly_twin(net, "m").run(xs))
    except ImportError:
        result["spikingjelly_s"] = result["spikingjelly_m"] = math.nan
    try:
        st = snntorch_twin(net)
        result["snntorch"] = diff(torch.stack([st.step(x) for x in xs]))
    except ImportError:
        result["snntorch"] = math.nan
    return result
