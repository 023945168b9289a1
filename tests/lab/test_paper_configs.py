"""Every training config of the papers' settings trains one step on a tiny data set written in
the real layout, on CPU, and its checkpoint becomes a spiking network."""

import pytest
import torch

from streamsnn.config import load_pipeline, load_train_config
from streamsnn.lab.train import train
from streamsnn.runtime import build_pipeline
from streamsnn.snn.checkpoint import load_checkpoint
from streamsnn.sources.event_datasets import DatasetError, dataset_split, open_tonic_dataset
from tests.datasets_layout import write_cifar10

SMOKE = ["data.download=false", "data.limit=4", "train.max_steps=1", "train.epochs=1", "train.batch_size=2"]


@pytest.fixture(scope="module")
def cifar10_root(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar10"))


def smoke_train(root, name, data_root, tmp_path, *extra):
    out = tmp_path / f"{name}.pt"
    cfg = load_train_config(root / "configs" / f"{name}.yaml", [*SMOKE, f"data.root={data_root}", *extra])
    result = train(cfg, output=out, progress=False)
    assert result["train_steps"] == 1
    return load_checkpoint(str(out)), cfg


def check_snn(model, method="qcfs"):
    snn = model.snn(method)
    x = torch.rand(1, *model.input_shape)
    state, _ = snn.step(x, snn.init_state(1))
    state, _ = snn.step(x, state)
    assert state.out.shape == (1, 10) and torch.isfinite(state.out).all()
    return snn


@pytest.mark.parametrize("name", ["cifar10_vgg16_qcfs", "cifar10_resnet18_qcfs"])
def test_cifar10_qcfs_configs_train_one_step(root, cifar10_root, tmp_path, name):
    model, _cfg = smoke_train(root, name, cifar10_root, tmp_path)
    assert model.input_shape == (3, 32, 32)
    check_snn(model, "qcfs")


@pytest.mark.parametrize("arch", ["vgg16", "resnet18"])
def test_cifar10_qffs_2bit_configs_fine_tune_from_full_precision(root, cifar10_root, tmp_path, arch):
    _fp, _ = smoke_train(root, f"cifar10_{arch}_fp", cifar10_root, tmp_path)
    fp_path = tmp_path / f"cifar10_{arch}_fp.pt"
    model, _ = smoke_train(
        root, f"cifar10_{arch}_qffs2bit", cifar10_root, tmp_path, f"train.init_from={fp_path}"
    )
    thetas = [float(m.threshold.detach()) for m in model.ann.modules() if hasattr(m, "levels")]
    assert thetas and all(t != 8.0 for t in thetas)  # initialised from the ReLU activations
    assert {m.levels for m in model.ann.modules() if hasattr(m, "levels")} == {3}
    snn = check_snn(model, "qffs")
    assert {n.z_max for n in snn.neurons} == {3}


def test_cifar10dvs_vggsnn_tet_trains_one_step(root, cifar10dvs_root, tmp_path):
    model, cfg = smoke_train(root, "cifar10dvs_vggsnn_tet", cifar10dvs_root, tmp_path)
    assert model.input_shape == (2, 48, 48) and model.input["steps"] == 10
    snn = check_snn(model)
    assert not any(type(m).__name__.startswith("BatchNorm") for m in snn.layers)  # folded
    assert (cfg.train.optimizer, cfg.train.lr, cfg.train.momentum) == ("sgd", 0.1, 0.9)  # SEENN's
    assert cfg.data.dvs_augment == "one_of" and model.input["antialias"] is True

    overrides = [f"model.weights={tmp_path / 'cifar10dvs_vggsnn_tet.pt'}", f"source.root={cifar10dvs_root}"]
    pipe = build_pipeline(
        load_pipeline(root / "pipelines" / "cifar10dvs_replay.yaml", [*overrides, "sinks=[]"])
    )
    assert pipe.encoder.antialias is True  # resized at run time as in training


def test_cifar10dvs_split_is_fixed_per_class(cifar10dvs_root):
    dataset = open_tonic_dataset("cifar10dvs", cifar10dvs_root, "test")
    assert len(dataset) == 1000
    parts = {split: dataset_split("cifar10dvs", dataset, split) for split in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [800, 100, 100]
    assert sorted(i for part in parts.values() for i in part) == list(range(1000))  # disjoint and complete
    for split, lo in (("val", 800), ("test", 900)):
        assert sorted(dataset.targets[i] for i in parts[split]) == sorted(list(range(10)) * 10)
        assert all(
            lo <= int(dataset.data[i].rsplit("_", 1)[1].split(".")[0]) < lo + 100 for i in parts[split]
        )
    assert [dataset.targets[i] for i in parts["test"][:10]] == list(range(10))  # round robin


def test_missing_data_sets_say_what_to_do(tmp_path):
    from streamsnn.lab.datasets import cifar10_arrays

    with pytest.raises(DatasetError, match=r"CIFAR-10 not found; set data\.download: true"):
        cifar10_arrays(tmp_path, "train")
    with pytest.raises(DatasetError, match="CIFAR10DVS not found in tonic's layout"):
        open_tonic_dataset("cifar10dvs", tmp_path, "test")
    broken = write_cifar10(tmp_path / "b")
    (broken / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x04garbage")
    with pytest.raises(DatasetError, match="test_batch: not a readable CIFAR-10 batch"):
        cifar10_arrays(broken, "test")


@pytest.mark.parametrize("name", ["digits_frames", "digits_frames_2bit", "digits_dvs"])
def test_digits_configs_train_one_step(root, tmp_path, name):
    out = tmp_path / f"{name}.pt"
    cfg = load_train_config(root / "configs" / f"{name}.yaml", ["train.max_steps=1", "train.epochs=1"])
    assert train(cfg, output=out, progress=False)["train_steps"] == 1
    check_snn(load_checkpoint(str(out)))


def test_every_config_has_a_training_test(root):
    covered = {
        "cifar10_vgg16_qcfs",
        "cifar10_resnet18_qcfs",
        "cifar10_vgg16_fp",
        "cifar10_resnet18_fp",
        "cifar10_vgg16_qffs2bit",
        "cifar10_resnet18_qffs2bit",
        "cifar10dvs_vggsnn_tet",
        "digits_frames",
        "digits_frames_2bit",
        "digits_dvs",
        "digits_frames_policy",  # SEENN-II: tests/policies/test_policy_net.py
        "digits_dvs_policy",
    }
    assert {p.stem for p in (root / "configs").glob("*.yaml")} == covered


def test_mixed_precision_training_step_on_cpu(root, tmp_path):
    """``--amp`` (bf16 autocast on CPU, fp16 with a gradient scaler on CUDA) trains and saves."""
    out = tmp_path / "amp.pt"
    cfg = load_train_config(root / "configs" / "digits_frames.yaml", ["train.max_steps=2", "train.amp=true"])
    result = train(cfg, output=out, progress=False)
    assert result["train_steps"] == 2
    model = load_checkpoint(str(out))
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in model.ann.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step(root, tmp_path):
    cfg = load_train_config(
        root / "configs" / "digits_frames.yaml", ["train.max_steps=2", "train.device=cuda"]
    )
    assert train(cfg, output=tmp_path / "cuda.pt", progress=False)["train_steps"] == 2
