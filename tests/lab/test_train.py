import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from streamsnn.config import load_train_config
from streamsnn.lab.datasets import random_windows
from streamsnn.lab.train import train
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.sources.digits import RECORDING_US
from tests.datasets_layout import partial_copy

CLI = [sys.executable, "-m", "streamsnn.cli"]


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
    assert cfg.reproduces == f"builtin:{name}"
    result = train(cfg, output=tmp_path / "w.pt", progress=False)
    shipped = torch.load(root / "streamsnn" / "assets" / f"{name}.pt", weights_only=True)
    fresh = torch.load(tmp_path / "w.pt", weights_only=True)["state_dict"]
    for key, weight in shipped["state_dict"].items():
        if key.endswith(".weight") and weight.dim() > 1:  # conv/linear; seed 1 gives |cos| < 0.2
            cosine = torch.nn.functional.cosine_similarity(weight.flatten(), fresh[key].flatten(), dim=0)
            assert cosine > 0.9, (key, float(cosine))
    assert abs(result["val_accuracy_ann"] - shipped["metrics"]["val_accuracy_ann"]) <= 0.01
    compared = result["compared_with"]  # what `streamsnn train` says
    assert compared["reproduced"] and compared["config_differs"] == {}
    assert compared["metrics"]["val_accuracy_ann"] == [
        result["val_accuracy_ann"],
        shipped["metrics"]["val_accuracy_ann"],
    ]


def test_train_writes_under_runs_and_compares_with_the_shipped_weights(root, tmp_path):
    """``streamsnn train configs/digits_frames.yaml`` (shortened) from a user's folder: the checkpoint
    goes to runs/train/, the shipped weights stay as they are and the run is compared with them."""
    asset = root / "streamsnn" / "assets" / "digits_frames.pt"
    before = asset.read_bytes()
    config = root / "configs" / "digits_frames.yaml"
    done = subprocess.run(
        [*CLI, "train", str(config), "--set", "train.epochs=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert asset.read_bytes() == before
    result = json.loads(done.stdout)
    assert result["checkpoint"] == "runs/train/digits_frames.pt"
    assert load_checkpoint(str(tmp_path / "runs" / "train" / "digits_frames.pt")).input_shape == (1, 16, 16)
    compared = result["compared_with"]
    assert compared["checkpoint"] == "builtin:digits_frames" and not compared["reproduced"]
    assert compared["config_differs"] == {"train.epochs": [2, 60]}
    assert -1 <= compared["weight_cosine_min"] < 1
    assert "compared with builtin:digits_frames: not reproduced" in done.stderr
    assert "train.epochs 2 (builtin:digits_frames: 60)" in done.stderr
    assert "wrote runs/train/digits_frames.pt" in done.stderr
    # the progress bar: no validation accuracy before the first evaluation (every 5 epochs, and the last)
    assert "val_acc=n/a" in done.stderr and "nan" not in done.stderr


def test_a_missing_reference_is_an_error_before_training(root, tmp_path):
    done = subprocess.run(
        [*CLI, "train", str(root / "configs" / "digits_frames.yaml"), "--set", "reproduces=builtin:nothing"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "digits_frames.yaml: reproduces: no shipped weights 'builtin:nothing'; shipped: " in done.stderr
    assert not (tmp_path / "runs").exists()


def train_cli(root, data, tmp_path, *sets):
    """``streamsnn train`` of the CIFAR10-DVS config on ``data`` (one step), with its progress bars."""
    smoke = [
        "data.download=false",
        "data.limit=4",
        "train.max_steps=1",
        "train.epochs=1",
        "train.batch_size=2",
    ]
    args = [x for s in (*smoke, f"data.root={data}", *sets) for x in ("--set", s)]
    config = root / "configs" / "cifar10dvs_vggsnn_tet.yaml"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "streamsnn.cli",
            "train",
            str(config),
            *args,
            "--output",
            str(tmp_path / "w.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )


def test_training_skips_a_damaged_recording_naming_it(root, cifar10dvs_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(cifar10dvs_root, data)
    damaged = (
        data / "CIFAR10DVS" / "automobile" / "cifar10_automobile_0.aedat4"
    )  # the second of the train split
    damaged.write_bytes(damaged.read_bytes()[:300])
    done = train_cli(root, data, tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "skipping train sample 1: " in done.stderr and "cifar10_automobile_0.aedat4" in done.stderr
    assert json.loads(done.stdout)["data_stats"] == {"skipped_samples": 1}
    assert load_checkpoint(str(tmp_path / "w.pt")).input_shape == (2, 48, 48)


def test_training_on_a_partial_copy_says_which_split_is_empty_and_why(root, cifar10dvs_root, tmp_path):
    data = partial_copy(cifar10dvs_root, tmp_path / "partial")
    done = train_cli(root, data, tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert re.match(
        r"error: .*cifar10dvs_vggsnn_tet\.yaml: data: CIFAR10-DVS split 'val' is empty: it takes recordings "
        r"800–899 of each class .* numbered 0–99\. A partial copy of the data set is split with "
        r"split_by: share",
        done.stderr,
    )
    done = train_cli(root, data, tmp_path, "data.split_by=share")
    assert done.returncode == 0, done.stderr[-2000:]
