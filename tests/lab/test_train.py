import numpy as np
import pytest
import torch

from streamsnn.config import load_train_config
from streamsnn.lab.datasets import random_windows
from streamsnn.lab.train import train
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.sources.digits import RECORDING_US


def test_training_is_seeded_and_reproducible(root, tmp_path):
    cfg = load_train_config(root / "configs" / "digits_frames.yaml", ["train.epochs=2"])
    a = train(cfg, output=tmp_path / "a.pt", progress=False)
    b = train(cfg, output=tmp_path / "b.pt", progress=False)
    sa = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a["val_accuracy_ann"] == b["val_accuracy_ann"] > 0.5
    model = load_checkpoint(str(tmp_path / "a.pt"))
    assert model.input_shape == (1, 16, 16) and model.input["encoder"] == "direct"
    snn = model.snn()
    state, _ = snn.step(torch.rand(3, 1, 16, 16), snn.init_state(3))
    assert state.out.shape == (3, 10)


def test_random_windows_cover_whole_prefix_and_sub_windows():
    w = random_windows(np.random.default_rng(0), 10_000, 0.4, 20_000)
    length = w[:, 1] - w[:, 0]
    assert np.all(w[:, 0] >= 0) and np.all(w[:, 1] <= RECORDING_US) and np.all(length >= 20_000)
    whole = (w[:, 0] == 0) & (w[:, 1] == RECORDING_US)
    prefix = (w[:, 0] == 0) & ~whole
    assert 0.38 < whole.mean() < 0.42 and 0.25 < prefix.mean() < 0.35


def test_checkpoints_load_safely(tmp_path):
    bad = tmp_path / "evil.pt"
    bad.write_bytes(b"not a checkpoint at all")
    try:
        load_checkpoint(str(bad))
        raise AssertionError("a corrupt checkpoint loaded")
    except ValueError as err:
        assert "evil.pt" in str(err)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits_frames", "digits_dvs"])
def test_training_config_reproduces_the_shipped_weights(root, tmp_path, name):
    """``streamsnn train configs/NAME.yaml`` reproduces the shipped weights: the same seeded
    trajectory (each conv/linear weight points the same way) and the same validation accuracy. Bits differ
    across CPUs (vector widths change float summation order), so bit-exactness is checked
    between two runs on one machine above."""
    cfg = load_train_config(root / "configs" / f"{name}.yaml")
    result = train(cfg, output=tmp_path / "w.pt", progress=False)
    shipped = torch.load(root / "streamsnn" / "assets" / f"{name}.pt", weights_only=True)
    fresh = torch.load(tmp_path / "w.pt", weights_only=True)["state_dict"]
    for key, weight in shipped["state_dict"].items():
        if key.endswith(".weight") and weight.dim() > 1:  # conv/linear; seed 1 gives |cos| < 0.2
            cosine = torch.nn.functional.cosine_similarity(weight.flatten(), fresh[key].flatten(), dim=0)
            assert cosine > 0.9, (key, float(cosine))
    assert abs(result["val_accuracy_ann"] - shipped["metrics"]["val_accuracy_ann"]) <= 0.01
