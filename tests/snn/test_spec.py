import pytest
import torch
from torch import nn

from streamsnn.snn.models import build_model
from streamsnn.snn.network import Fork, Merge, Scale, SpikingNetwork, Threshold
from streamsnn.snn.neurons import CurrentNeuron, LeakyNeuron
from streamsnn.snn.spec import build_layers, layer_specs


def test_layers_rebuilt_from_plain_data_step_the_same():
    torch.manual_seed(3)
    layers = [
        nn.Conv2d(2, 4, 3, padding=1),
        LeakyNeuron(torch.rand(4, 6, 6), 1.0, 0.0, torch.rand(4, 6, 6) + 0.5, 0.0, "subtract"),
        nn.AvgPool2d(2, divisor_override=1),  # sum pooling
        Fork("a"),
        CurrentNeuron(0.8, 1.0, torch.rand(4, 3, 3), 1.0, 0.0, 0.7, -0.1, "value"),
        Merge("a", Scale(torch.rand(4, 3, 3))),
        Threshold(0.5),
        nn.Flatten(),
        nn.Linear(36, 5, bias=False),
        LeakyNeuron(0.5, 1.0, 0.0, fires=False),
    ]
    original = nn.Sequential(*layers)
    specs = layer_specs(original)
    assert specs == eval(repr(specs))  # plain data: maps, lists, numbers, strings, booleans
    rebuilt = build_model({"name": "spiking_network", "layers": specs})
    rebuilt.load_state_dict(original.state_dict())
    a, b = SpikingNetwork(list(original), (2, 6, 6)), SpikingNetwork(list(rebuilt), (2, 6, 6))
    xs = torch.rand(5, 3, 2, 6, 6) * 3
    outs_a, spikes_a = a.run_(xs, a.init_state(3))
    outs_b, spikes_b = b.run_(xs, b.init_state(3))
    assert torch.equal(outs_a, outs_b) and torch.equal(spikes_a, spikes_b) and spikes_a.sum() > 0


def test_a_wrong_layer_is_named():
    with pytest.raises(ValueError, match=r"layers\[1\]: unknown layer kind 'lstm'"):
        build_layers([{"kind": "flatten", "start_dim": 1, "end_dim": -1}, {"kind": "lstm"}])
    with pytest.raises(ValueError, match=r"layers\[0\]: layer linear"):
        build_layers([{"kind": "linear", "in_features": 3}])
    with pytest.raises(ValueError, match="no plain-data description of layer LSTM"):
        layer_specs([nn.LSTM(3, 3)])
