"""The conversion table (``streamsnn convert``)."""

from streamsnn.lab.table import conversion_table, format_table
from streamsnn.snn.checkpoint import load_checkpoint


def test_conversion_table_and_high_entropy_initialisation():
    model = load_checkpoint("builtin:digits_frames_2bit")
    table = conversion_table(model, ["qcfs", "qffs"], [1, 2, 3, 8], split="val")
    assert table.ann_accuracy > 0.95 and table.samples == 360
    qcfs, qffs = table.rows
    assert qcfs.accuracy[8] >= table.ann_accuracy - 0.01
    assert qffs.accuracy[3] >= table.ann_accuracy - 0.01  # QFFS: exact within Z_max (+ depth) steps
    assert qffs.spikes_per_neuron <= 3 + 1e-9 and qffs.spikes_per_neuron < qcfs.spikes_per_neuron
    text = format_table(table)
    assert "QCFS" in text and "QFFS" in text and "T=8" in text
    zero = conversion_table(model, ["qcfs"], [1, 2, 3, 8], split="val", v0=0.0).rows[0]
    assert qcfs.pareto_latency < zero.pareto_latency  # V0 = θ/2 reaches ANN accuracy sooner
