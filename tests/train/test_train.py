"""A short real training run, the model folder it writes, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
from safetensors.torch import load_file
from transformers import AutoImageProcessor, AutoModelForImageClassification

from components.common import schema
from components.common.files import TRAINING_SUMMARY_FILE as SUMMARY_FILE
from components.common.model_folder import check_model_folder, load_summary, weights_version
from components.common.schema import DatasetColumns as C
from components.train.config import TrainConfig
from components.train.train import load_training_splits as load_splits
from components.train.train import train_model


@pytest.fixture(scope="module")
def short_run(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("train-out") / "model"
    cfg = TrainConfig(max_steps=40, batch_size=32, learning_rate=3e-3, seed=0, threads=1)
    return train_model(small_dataset, out, cfg)


def test_loss_falls(short_run):
    losses = short_run.summary["loss_history"]
    assert len(losses) >= 6
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])
    assert first > 1.8  # about ln(10) at the start
    assert last < first - 0.4, losses


def test_model_folder_is_complete(short_run):
    folder = short_run.model_dir
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", SUMMARY_FILE):
        assert (folder / name).is_file(), name
    summary = json.loads((folder / SUMMARY_FILE).read_text())
    assert summary["model_version"] == short_run.model_version == weights_version(folder)
    assert len(summary["model_version"]) == 16
    assert load_summary(folder) == summary
    check_model_folder(folder)  # what embed checks before loading
    assert summary["metrics"]["accuracy"] == short_run.metrics["accuracy"]
    assert summary["metrics"]["steps"] == 40
    assert summary["class_names"] == list(schema.CLASS_NAMES)
    # the confusion matrix counts every validation row, and the accuracy is its diagonal's share
    matrix = np.asarray(short_run.confusion_matrix)
    assert matrix.sum() == 100
    assert summary["metrics"]["accuracy"] == np.trace(matrix) / 100
    # the summary records the resolved configuration, not the run-only checkpoint settings
    assert summary["config"]["batch_size"] == 32 and summary["config"]["image_size"] == 32
    assert "checkpoints" not in summary["config"] and "keep_checkpoints" not in summary["config"]
    processor = AutoImageProcessor.from_pretrained(folder)
    assert processor.size["shortest_edge"] == 32
    model = AutoModelForImageClassification.from_pretrained(folder)
    assert model.config.id2label[0] == schema.CLASS_NAMES[0] and model.config.num_labels == 10
    assert load_file(folder / "model.safetensors")  # weights readable
    # no temporary siblings or checkpoints left behind
    assert sorted(p.name for p in folder.parent.iterdir()) == ["model"]


def _save(dd: datasets.DatasetDict, path):
    dd.save_to_disk(str(path))
    return path


def test_dataset_without_label(small_dataset, tmp_path):
    dd = datasets.load_from_disk(str(small_dataset))
    bad = _save(datasets.DatasetDict({k: v.remove_columns(C.LABEL) for k, v in dd.items()}), tmp_path / "d")
    with pytest.raises(ValueError, match=r"split 'training'.*missing column\(s\) label"):
        load_splits(bad)


def test_dataset_without_image(small_dataset, tmp_path):
    dd = datasets.load_from_disk(str(small_dataset))
    bad = _save(datasets.DatasetDict({k: v.remove_columns(C.IMAGE) for k, v in dd.items()}), tmp_path / "d")
    with pytest.raises(ValueError, match=r"missing column\(s\) image"):
        load_splits(bad)


def test_labels_out_of_range(small_dataset, tmp_path):
    dd = datasets.load_from_disk(str(small_dataset))
    val = dd[schema.VALIDATION].cast_column(C.LABEL, datasets.Value("int64"))
    val = val.map(lambda r, i: {C.LABEL: 12 if i == 7 else r[C.LABEL]}, with_indices=True)
    dd[schema.VALIDATION] = val
    bad = _save(dd, tmp_path / "d")
    with pytest.raises(ValueError, match=r"split 'validation'.*1 label\(s\) outside 0..9 \(row 7 = 12\)"):
        load_splits(bad)


@pytest.mark.parametrize("shards", [None, 1])  # datasets writes no file for 0 rows unless told 1 shard
def test_empty_split(small_dataset, tmp_path, shards):
    dd = datasets.load_from_disk(str(small_dataset))
    dd[schema.TRAINING] = dd[schema.TRAINING].select([])
    dd.save_to_disk(str(tmp_path / "d"), num_shards={k: shards or 1 for k in dd} if shards else None)
    with pytest.raises(ValueError, match="split 'training' is empty"):
        load_splits(tmp_path / "d")


def test_missing_split_and_folder(small_dataset, tmp_path):
    dd = datasets.load_from_disk(str(small_dataset))
    bad = _save(datasets.DatasetDict({schema.TRAINING: dd[schema.TRAINING]}), tmp_path / "d")
    with pytest.raises(ValueError, match="split 'validation' is missing"):
        load_splits(bad)
    with pytest.raises(ValueError, match="does not exist"):
        load_splits(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a DatasetDict"):
        load_splits(tmp_path / "empty")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"profile": "laptop"}, "profile 'laptop'"),
        ({"epochs": -1}, "epochs"),
        ({"max_steps": 0}, "max_steps 0"),
        ({"learning_rate": 2.0}, "learning_rate"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_profile_defaults():
    local = TrainConfig()
    assert (local.model_name, local.image_size, local.epochs, local.batch_size) == ("", 32, 4.0, 128)
    assert (local.learning_rate, local.weight_decay, local.min_crop_scale) == (3e-3, 0.05, 1.0)
    cluster = TrainConfig(profile="cluster")
    assert cluster.model_name == "microsoft/resnet-50" and cluster.image_size == 224
    assert (cluster.batch_size, cluster.learning_rate, cluster.weight_decay) == (32, 5e-5, 0.0)
    # a value given wins over the profile's default; 0 (or -1 for weight_decay) takes the default
    given = TrainConfig(profile="cluster", batch_size=8, weight_decay=0.1, epochs=0.5)
    assert (given.batch_size, given.weight_decay, given.epochs, given.learning_rate) == (8, 0.1, 0.5, 5e-5)


def test_command_line_builds_the_config():
    from components.common.config import config_from_args
    from components.train.__main__ import parser

    args = parser().parse_args(
        ["--dataset", "d", "--output", "m", "--profile", "cluster", "--max-steps", "5", "--keep-checkpoints"]
    )
    config = config_from_args(TrainConfig, args)
    assert (config.profile, config.max_steps, config.keep_checkpoints) == ("cluster", 5, True)
    assert (config.batch_size, config.checkpoints) == (32, "")
    with pytest.raises(SystemExit):
        parser().parse_args(["--dataset", "d", "--output", "m", "--profile", "laptop"])


def test_unreachable_hub_model_names_the_local_profile(tmp_path):
    code = (
        "from components.train.train import TrainConfig, build_model_and_processor\n"
        "build_model_and_processor(TrainConfig(profile='cluster', model_name='fashion-drift-tests/not-cached'))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()[-1]
    assert err.startswith("components.train.train.ModelUnavailableError")
    assert "'fashion-drift-tests/not-cached' could not be loaded" in err
    assert "HF_HUB_OFFLINE is set" in err and "profile='local'" in err


def test_resumes_from_last_checkpoint(small_dataset, tmp_path, capsys):
    """A finished run's kept checkpoints resume a rerun with the same data and settings (nothing left to do).

    Other settings (here: more epochs, which change the learning-rate schedule) start fresh: see
    tests/train/test_reliability.py.
    """
    ckpt = tmp_path / "ckpt"
    # 3 steps per epoch on 300 rows
    cfg = dict(epochs=1, batch_size=100, learning_rate=3e-3, threads=1, checkpoints=str(ckpt))
    first = train_model(small_dataset, tmp_path / "m1", TrainConfig(keep_checkpoints=True, **cfg))
    assert first.metrics["steps"] == 3 and (ckpt / "checkpoint-3").is_dir()
    capsys.readouterr()
    second = train_model(small_dataset, tmp_path / "m2", TrainConfig(**cfg))
    assert "resuming from checkpoint" in capsys.readouterr().out
    assert second.metrics["steps"] == 3 and second.summary["start"]["resumed_from"] == "checkpoint-3"
    assert not ckpt.exists()  # removed after a successful run


def test_command_line(small_dataset, tmp_path, capsys):
    from components.train.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "Profile defaults" in capsys.readouterr().out
    assert (
        main(
            [
                "--dataset",
                str(small_dataset),
                "--output",
                str(tmp_path / "m"),
                "--max-steps",
                "2",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(out)["steps"] == 2
