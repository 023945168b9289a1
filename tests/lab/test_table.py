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


def test_convert_shows_its_stages_and_the_scale_search(capsys):
    """`streamsnn convert --scale` says what it does as it goes: a line per stage on stderr and a
    bar over the Subplex evaluations; `--no-progress` leaves the table alone."""
    from streamsnn.cli import main

    args = ["convert", "builtin:digits_frames_2bit", "--methods", "data_norm", "--steps", "1,2"]
    assert main([*args, "--scale", "global=2,layer=3"]) == 0
    out, err = capsys.readouterr()
    stages = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("convert [")]
    assert [line.split("]: ", 1)[1].split(":")[0] for line in stages] == [
        "reading the digits test split and 300 training frames (calibration)",
        "data_norm",
        "data_norm+scaling",
        "data_norm+scaling",
    ]
    assert (
        "Subplex search on 300 training frames at T = 2, at most 2 global, 3 layer evaluations" in stages[2]
    )
    assert "convert: scale search:" in err and "/5 [" in err and "evaluation" in err
    assert "DATA_NORM+SCALING" in out and "scale search" not in out
    assert main([*args, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "DATA_NORM" in out
