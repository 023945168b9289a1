"""Export a small (untrained) SNN for the digits-dvs sensor (2×34×34) from snnTorch or Sinabs to
a NIR file, as the README's "Bring your own SNN" shows; export a trained network the same way.

    python examples/nir_export.py snntorch runs/nir/snntorch.nir
    python examples/nir_export.py sinabs runs/nir/sinabs.nir
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nir
import torch


def snntorch_graph() -> nir.NIRGraph:
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    def leaky(shape: tuple[int, ...], **kwargs) -> snn.Leaky:
        # per-neuron β and threshold (the export needs the layer's shape); reset to zero, which is
        # what the export states (v_reset = 0)
        beta, threshold = torch.full(shape, 0.9), torch.full(shape, 0.5)
        return snn.Leaky(beta=beta, threshold=threshold, init_hidden=True, reset_mechanism="zero", **kwargs)

    net = torch.nn.Sequential(
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(2, 8, 3, padding=1),
        leaky((8, 17, 17)),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 10),
        leaky((10,), output=True),
    )
    return export_to_nir(net, torch.zeros(1, 2, 34, 34), ignore_dims=[0])  # ignore the batch axis


def sinabs_graph() -> nir.NIRGraph:
    import sinabs.layers as sl
    from sinabs.activation import SingleSpike
    from sinabs.nir import to_nir

    net = torch.nn.Sequential(
        sl.SumPool2d(2),
        torch.nn.Conv2d(2, 8, 3, padding=1),
        sl.IAFSqueeze(spike_fn=SingleSpike, batch_size=1),  # one spike per step at most, as NIR's IF
        sl.SumPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 8 * 8, 10),
        sl.ExpLeakSqueeze(tau_mem=torch.full((10,), 4.0), norm_input=True, batch_size=1),  # NIR's LI, r = 1
    )
    graph = to_nir(net, torch.zeros(1, 2, 34, 34))
    graph.infer_types()  # Sinabs leaves the conv nodes' shapes out; nir.write needs them
    return graph


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tool", choices=["snntorch", "sinabs"])
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    torch.manual_seed(0)
    graph = snntorch_graph() if args.tool == "snntorch" else sinabs_graph()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    nir.write(args.output, graph)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
