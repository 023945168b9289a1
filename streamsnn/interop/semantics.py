"""What ``streamsnn export`` writes beyond NIR's equations, declared once for the writer and the
reader: the graph's ``format`` and, per neuron node, the exact streamsnn neuron it was
(``streamsnn_neuron``) with its reset and tie rule (``streamsnn_reset``, ``streamsnn_fires_at``);
``streamsnn_v0`` (initial membrane) and ``streamsnn_z_max`` (QFFS budget) come with their values."""

from __future__ import annotations

FORMAT = "streamsnn-nir-export/1"
FORMAT_PREFIX = "streamsnn-nir-export/"
"""How the graph metadata ``format`` of any version of the export starts."""

EXACT: dict[str, dict[str, str]] = {
    "IFNeuron": {"streamsnn_reset": "subtract", "streamsnn_fires_at": "v >= threshold"},
    "QFFSNeuron": {"streamsnn_reset": "subtract", "streamsnn_fires_at": "v >= threshold"},
    "LIFNeuron": {"streamsnn_reset": "zero", "streamsnn_fires_at": "v > threshold"},
}
"""Each exported neuron's reset and tie rule, as its node's metadata states them."""
