"""Data-set replay through tonic's own classes, on CIFAR10-DVS written in tonic's real layout."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from streamsnn.config import ConfigError, load_pipeline
from streamsnn.runtime import build_pipeline
from streamsnn.runtime.report import build_report, report_table
from streamsnn.sources.event_datasets import (
    DatasetError,
    EventDatasetSource,
    EventDatasetSourceConfig,
    cifar10dvs_number,
)
from tests.datasets_layout import partial_copy

SMOKE = ["data.download=false", "data.limit=4", "train.max_steps=1", "train.epochs=1", "train.batch_size=2"]


def streamsnn(*args, cwd):
    done = subprocess.run(
        [sys.executable, "-m", "streamsnn.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_cifar10dvs_replays_end_to_end_through_the_shipped_pipeline(root, cifar10dvs_root, tmp_path):
    """A user with the data set under data/ and the trained checkpoint runs the pipeline unchanged
    (here: one training step, and only the first 6 test recordings)."""
    (tmp_path / "data").symlink_to(cifar10dvs_root)
    sets = [x for s in SMOKE for x in ("--set", s)]
    streamsnn("train", root / "configs" / "cifar10dvs_vggsnn_tet.yaml", *sets, "--no-progress", cwd=tmp_path)
    assert (tmp_path / "runs" / "train" / "cifar10dvs_vggsnn_tet.pt").exists()
    pipeline = root / "pipelines" / "cifar10dvs_replay.yaml"
    streamsnn("run", pipeline, "--set", "source.limit=6", "--no-progress", cwd=tmp_path)
    report = json.loads((tmp_path / "runs" / "cifar10dvs_replay" / "report.json").read_text())
    assert report["samples"] == report["labelled"] == 6 and report["source"] == "cifar10dvs"
    assert 1 <= report["mean_steps"] <= report["max_steps"] <= 10
    lines = [
        json.loads(x)
        for x in (tmp_path / "runs" / "cifar10dvs_replay" / "predictions.jsonl").read_text().splitlines()
    ]
    finals = [p for p in lines if p["final"]]
    assert sorted(p["label"] for p in finals) == [0, 1, 2, 3, 4, 5]  # class-balanced prefix of the test split
    assert all(p["stream"] == "cifar10dvs/test" for p in lines)


def test_a_damaged_recording_is_skipped_and_counted(cifar10dvs_root, tmp_path, caplog):
    copy = tmp_path / "copy"
    shutil.copytree(cifar10dvs_root, copy)
    damaged = copy / "CIFAR10DVS" / "automobile" / "cifar10_automobile_900.aedat4"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    source = EventDatasetSource(
        EventDatasetSourceConfig(type="cifar10dvs", root=str(copy), split="test", limit=3)
    )
    packets = list(source)
    assert [p.label for p in packets] == [0, 2]  # the automobile recording is left out...
    assert [p.sample for p in packets] == [0, 2]  # ...and its position stays unused
    assert source.stats == {"skipped_samples": 1}
    assert "cifar10_automobile_900.aedat4: not a readable AEDAT4 file (header:" in source.errors[0]
    # named by its number in the split, as the predictions number samples (not tonic's index)
    assert "skipping sample 1 of cifar10dvs/test: " in caplog.text and "automobile_900" in caplog.text
    table = report_table(build_report([], {"source_stats": source.stats}))
    assert re.search(r"\n  skipped samples +1$", table)


def test_a_partial_copy_says_which_split_is_empty_and_split_by_share_splits_it(
    root, cifar10dvs_root, tmp_path
):
    partial = partial_copy(cifar10dvs_root, tmp_path / "partial")
    with pytest.raises(
        DatasetError,
        match=r"CIFAR10-DVS split 'test' is empty: it takes recordings 900–999 of each class \(by the "
        r"number in the file name\) and .*partial/CIFAR10DVS holds 1,000 recordings, numbered 0–99\. A "
        r"partial copy of the data set is split with split_by: share .*: 80/10/10 % of the recordings",
    ):
        EventDatasetSource(EventDatasetSourceConfig(type="cifar10dvs", root=str(partial), split="test"))
    cfg = load_pipeline(root / "pipelines" / "cifar10dvs_replay.yaml", [f"source.root={partial}"])
    with pytest.raises(ConfigError, match=r"source: CIFAR10-DVS split 'test' is empty"):
        build_pipeline(cfg)

    split = {
        s: EventDatasetSource(
            EventDatasetSourceConfig(type="cifar10dvs", root=str(partial), split=s, split_by="share")
        )
        for s in ("train", "val", "test")
    }
    assert [len(split[s]) for s in ("train", "val", "test")] == [800, 100, 100]
    test = split["test"]
    numbers = [cifar10dvs_number(test.dataset.data[i]) for i in test.indices]
    assert sorted(numbers) == sorted(list(range(90, 100)) * 10)  # the last tenth of every class
    assert [test.dataset.targets[i] for i in test.indices[:10]] == list(range(10))  # still round robin
    for s in ("train", "val", "test"):  # on recordings numbered as the whole data set: the stored split
        by = {
            b: EventDatasetSource(
                EventDatasetSourceConfig(type="cifar10dvs", root=str(cifar10dvs_root), split=s, split_by=b)
            ).indices
            for b in ("number", "share")
        }
        assert by["number"] == by["share"]
    with pytest.raises(ValueError, match="split_by: share is for cifar10dvs"):
        EventDatasetSourceConfig(type="nmnist", split_by="share")


def test_missing_data_sets_say_where_and_what_to_do(root, tmp_path):
    for name in ("cifar10dvs", "nmnist", "dvs_gesture"):
        with pytest.raises(DatasetError, match=r"not found in tonic's layout.*source\.download: true"):
            EventDatasetSource(EventDatasetSourceConfig(type=name, root=str(tmp_path)))
    cfg = load_pipeline(root / "pipelines" / "cifar10dvs_replay.yaml", [f"source.root={tmp_path}"])
    with pytest.raises(ConfigError, match=r"source: .*CIFAR10DVS not found"):
        build_pipeline(cfg)


def test_offset_and_limit_select_a_range_numbered_as_in_the_split(cifar10dvs_root):
    whole = list(
        EventDatasetSource(
            EventDatasetSourceConfig(type="cifar10dvs", root=str(cifar10dvs_root), split="test", limit=5)
        )
    )
    part = list(
        EventDatasetSource(
            EventDatasetSourceConfig(
                type="cifar10dvs", root=str(cifar10dvs_root), split="test", offset=2, limit=2
            )
        )
    )
    assert [(p.sample, p.label) for p in part] == [(p.sample, p.label) for p in whole[2:4]]
    assert [p.sample for p in part] == [2, 3] and all(
        (a.data == b.data).all() for a, b in zip(part, whole[2:4], strict=True)
    )
