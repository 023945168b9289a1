"""Checkpoints that cannot be used are refused with an error naming the file and what is wrong:
real files written with torch.save, loaded by the safe loader."""

import os
import pickle

import pytest
import torch

from streamsnn.snn.checkpoint import ASSETS, CheckpointError, CheckpointNotFoundError, load_checkpoint


class RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint holds."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def shipped():
    return torch.load(ASSETS / "digits_dvs.pt", weights_only=True)


def changed(tmp_path, name, **fields):
    """The shipped digits_dvs checkpoint with ``fields`` replaced (None: left out), saved."""
    payload = {**shipped(), **fields}
    path = tmp_path / name
    torch.save({k: v for k, v in payload.items() if v is not None}, path)
    return str(path)


# (file name, changed fields, what the error says after the file name)
BROKEN = [
    ("unknown_arch.pt", {"arch": {"name": "lenet"}}, "arch: unknown architecture 'lenet'; known: digits_cnn"),
    (
        "extra_argument.pt",
        {"arch": {**shipped()["arch"], "dropout": 0.5}},
        "arch: digits_cnn takes no argument dropout (it takes in_channels, size",
    ),
    ("bad_argument.pt", {"arch": {**shipped()["arch"], "widths": 5}}, "arch: digits_cnn: 'int' object"),
    ("arch_list.pt", {"arch": ["digits_cnn"]}, "arch: expected a map of the architecture's name"),
    ("empty_state.pt", {"state_dict": {}}, "state_dict: no weights"),
    ("no_input.pt", {"input": None}, "input: expected a map with shape [C, H, W] (positive integers)"),
    ("short_shape.pt", {"input": {"shape": [2, 34]}}, "input: expected a map with shape [C, H, W]"),
    (
        "missing_weight.pt",
        {"state_dict": {k: v for k, v in shipped()["state_dict"].items() if k != "0.weight"}},
        "state_dict does not fit arch digits_cnn: missing: 0.weight",
    ),
    (
        "wrong_shape.pt",
        {"state_dict": {**shipped()["state_dict"], "0.weight": torch.zeros(3, 3)}},
        "state_dict does not fit arch digits_cnn: of another shape: 0.weight",
    ),
    ("not_ours.pt", {"format": "someone-else/3"}, "not a streamsnn checkpoint (expected format"),
]


@pytest.mark.parametrize(("name", "fields", "error"), BROKEN, ids=[b[0] for b in BROKEN])
def test_an_inconsistent_checkpoint_is_a_checkpoint_error_naming_the_file(tmp_path, name, fields, error):
    path = changed(tmp_path, name, **fields)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: {error}")


def test_a_checkpoint_holding_code_is_refused_without_running_it_or_advising_to(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({**shipped(), "metrics": {"x": RunsCode(marker)}}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(str(path))
    text = str(err.value)
    assert text.startswith(f"{path}: refused: the safe loader reads only tensors and plain containers")
    assert "system" in text  # what it refused
    assert "weights_only" not in text and "trust" not in text and "safe_globals" not in text
    assert not marker.exists()


def test_unreadable_and_missing_files(tmp_path):
    data = (ASSETS / "digits_dvs.pt").read_bytes()
    cut, plain = tmp_path / "cut.pt", tmp_path / "plain.pkl"
    cut.write_bytes(data[: len(data) // 2])
    plain.write_bytes(pickle.dumps({"format": "streamsnn-checkpoint/1"}, protocol=2))
    with pytest.raises(CheckpointError, match=f"{cut}: not a readable streamsnn checkpoint"):
        load_checkpoint(str(cut))
    with pytest.raises(CheckpointError, match=f"{plain}: not a readable streamsnn checkpoint") as err:
        load_checkpoint(str(plain))
    assert "weights_only" not in str(err.value)
    with pytest.raises(CheckpointNotFoundError, match="weights file not found"):
        load_checkpoint(str(tmp_path / "none.pt"))
    with pytest.raises(
        FileNotFoundError, match="no shipped weights 'builtin:nope'; shipped: builtin:digits_dvs"
    ):
        load_checkpoint("builtin:nope")
    assert load_checkpoint("builtin:digits_dvs").input_shape == (2, 34, 34)
