import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_EVENTS = ROOT.parent / "shared" / "data" / "events"


@pytest.fixture(scope="session", autouse=True)
def digits_cache(tmp_path_factory):
    """digits-dvs recordings are cached per test session (CLI subprocesses included), never read
    from the user's cache: every run generates them once itself."""
    before = os.environ.get("STREAMSNN_CACHE")
    os.environ["STREAMSNN_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        del os.environ["STREAMSNN_CACHE"]
    else:
        os.environ["STREAMSNN_CACHE"] = before


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def relu_digits(tmp_path_factory):
    """A full-precision ReLU digits CNN (16×16 frames), trained here in a few seconds."""
    from streamsnn.config import load_train_config
    from streamsnn.lab.train import train
    from streamsnn.snn.checkpoint import load_checkpoint

    path = tmp_path_factory.mktemp("relu") / "relu.pt"
    overrides = ["train.epochs=15", "model.activation=relu"]
    train(load_train_config(ROOT / "configs" / "digits_frames.yaml", overrides), output=path, progress=False)
    return load_checkpoint(str(path))


@pytest.fixture(scope="session")
def cifar10dvs_root(tmp_path_factory):
    """CIFAR10-DVS in tonic's layout (archive + 1000 tiny AEDAT4 files written by dv-processing)."""
    from tests.datasets_layout import write_cifar10dvs

    return write_cifar10dvs(tmp_path_factory.mktemp("cifar10dvs"))
