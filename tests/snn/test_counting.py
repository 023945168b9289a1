import torch
import torch.nn.functional as F
from torch import nn

from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.snn.counting import PJ_PER_AC, PJ_PER_MAC, counted_run, dense_macs, synaptic_events


def brute_force_conv_events(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Σ over outputs of the non-zero inputs in their receptive field, times out channels."""
    cols = F.unfold((x != 0).float(), conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    return cols.sum((1, 2)) * conv.out_channels


def test_conv_synaptic_events_count_fan_out_exactly_at_borders():
    g = torch.Generator().manual_seed(0)
    for conv in (nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 5, 5, stride=2, padding=2), nn.Conv2d(3, 4, 3)):
        x = (torch.rand(4, 3, 11, 11, generator=g) < 0.2).float()
        assert torch.equal(synaptic_events(conv, x), brute_force_conv_events(conv, x))
    one = torch.zeros(1, 1, 5, 5)
    one[0, 0, 0, 0] = 1  # a corner spike reaches 4 of the 9 outputs of a padded 3×3 conv
    assert synaptic_events(nn.Conv2d(1, 2, 3, padding=1), one).item() == 4 * 2


def test_linear_and_pool_events_and_dense_macs():
    x = torch.tensor([[0.0, 1.0, 1.0, 0.0]])
    assert synaptic_events(nn.Linear(4, 7), x).item() == 14
    spikes = torch.ones(1, 2, 4, 4)
    assert synaptic_events(nn.AvgPool2d(2), spikes).item() == 32
    conv = nn.Conv2d(2, 3, 3, padding=1)
    assert dense_macs(conv, spikes, conv(spikes)) == 3 * 16 * 2 * 9
    row = torch.zeros(1, 2, 6)
    row[0, 0, 0] = row[0, 1, 3] = (
        1  # an edge spike reaches 2 of a padded 3-tap conv's outputs, an inner one 3
    )
    conv1d = nn.Conv1d(2, 4, 3, padding=1)
    assert synaptic_events(conv1d, row).item() == (2 + 3) * 4
    assert dense_macs(conv1d, row, conv1d(row)) == 4 * 6 * 2 * 3


def test_counted_run_matches_the_network_and_energy_adds_up():
    model = load_checkpoint("builtin:digits_frames_2bit")
    snn = model.snn("qcfs")
    x = torch.rand(5, 1, 16, 16)
    outs, counts = counted_run(snn, x.unsqueeze(0).expand(6, *x.shape))
    _, ref, ref_spikes = snn.run(x.unsqueeze(0).expand(6, *x.shape), snn.init_state(5))
    torch.testing.assert_close(outs, ref)
    assert abs(sum(sum(s) for s in counts.spikes) - float(ref_spikes.sum())) < 1e-3
    assert counts.neurons == 32 * 16 * 16 + 64 * 8 * 8
    first_conv_macs = 32 * 16 * 16 * 9
    assert all(m[0] == first_conv_macs * 5 for m in counts.macs)  # analog input: MACs in layer 1
    acs = sum(sum(e) for e in counts.events)
    macs = sum(sum(m) for m in counts.macs)
    assert abs(counts.energy_uj() - (acs * PJ_PER_AC + macs * PJ_PER_MAC) / 5 * 1e-6) < 1e-9
    assert counts.ann_energy_uj() > 0
