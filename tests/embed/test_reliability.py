"""embed under faults and bad input: a model from another setup, replaced weights, killed runs, the command line.

The model folders are real: the conftest's briefly trained model, changed with transformers
(re-headed to 5 classes, or its weights nudged and saved again).
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import torch
from transformers import AutoModelForImageClassification

from components.common import schema
from components.common.files import TRAINING_SUMMARY_FILE
from components.common.model_folder import (
    ModelFolderMismatchError,
    load_summary,
    weights_version,
    write_summary,
)
from components.embed.config import EmbedConfig
from components.embed.embed import embed_dataset

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)
FIVE = ["cat", "dog", "bird", "fish", "horse"]
VALIDATION_ONLY = EmbedConfig(splits="validation", embed_batch_size=64, threads=1)


@pytest.fixture(scope="module")
def five_class_model(model_dir, tmp_path_factory):
    """A model folder of another setup: the same network re-headed to 5 classes, an honest summary."""
    folder = tmp_path_factory.mktemp("five") / "model"
    shutil.copytree(model_dir, folder)
    model = AutoModelForImageClassification.from_pretrained(
        model_dir,
        num_labels=5,
        id2label=dict(enumerate(FIVE)),
        label2id={n: i for i, n in enumerate(FIVE)},
        ignore_mismatched_sizes=True,
    )
    model.save_pretrained(folder)
    summary = load_summary(model_dir)
    write_summary(folder, {**summary, "model_version": weights_version(folder), "class_names": FIVE})
    return folder


@pytest.fixture(scope="module")
def replaced_weights_model(model_dir, tmp_path_factory):
    """The trained folder whose weights were changed and saved again after training (summary untouched)."""
    folder = tmp_path_factory.mktemp("replaced") / "model"
    shutil.copytree(model_dir, folder)
    model = AutoModelForImageClassification.from_pretrained(model_dir)
    with torch.no_grad():
        model.get_submodule("classifier")[-1].weight.add_(0.01)
    model.save_pretrained(folder)
    return folder


def test_five_class_model_is_refused(embed_dataset_dir, five_class_model, tmp_path):
    with pytest.raises(ModelFolderMismatchError) as err:
        embed_dataset(embed_dataset_dir, five_class_model, tmp_path / "o", VALIDATION_ONLY, progress=False)
    message = str(err.value)
    assert (
        f"model folder {five_class_model}: the model has 5 classes (cat, dog, bird, fish, horse)" in message
    )
    assert "this setup's class list has 10 (T-shirt/top" in message
    assert "Train a model on this setup's data set" in message
    assert not (tmp_path / "o").exists()


def test_same_count_other_names_is_refused(embed_dataset_dir, model_dir, tmp_path):
    """10 classes named for another data set (digits): the label set, not only its size, must match."""
    folder = tmp_path / "digits"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {str(i): str(i) for i in range(10)}
    config["label2id"] = {str(i): i for i in range(10)}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFolderMismatchError, match=r"the model has 10 classes \(0, 1, 2"):
        embed_dataset(embed_dataset_dir, folder, tmp_path / "o", VALIDATION_ONLY, progress=False)


def test_replaced_weights_are_refused(embed_dataset_dir, model_dir, replaced_weights_model, tmp_path):
    claimed = load_summary(model_dir)["model_version"]
    held = weights_version(replaced_weights_model)
    assert held != claimed
    with pytest.raises(ModelFolderMismatchError) as err:
        embed_dataset(
            embed_dataset_dir, replaced_weights_model, tmp_path / "o", VALIDATION_ONLY, progress=False
        )
    message = str(err.value)
    assert (
        f"model folder {replaced_weights_model}: its {TRAINING_SUMMARY_FILE} claims model_version {claimed}"
        in message
    )
    assert f"the weights it holds hash to {held}" in message and "retrain" in message
    assert not (tmp_path / "o").exists()


def test_the_trained_folder_passes(embed_dataset_dir, model_dir, tmp_path):
    r = embed_dataset(embed_dataset_dir, model_dir, tmp_path / "o", VALIDATION_ONLY, progress=False)
    assert r.model_version == load_summary(model_dir)["model_version"] == weights_version(model_dir)


# ---------------------------------------------------------------------------------- killed runs


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_runs_are_removed(embed_dataset_dir, model_dir, tmp_path, capsys):
    pid = _dead_pid()
    stale = [tmp_path / f".out.tmp-{pid}", tmp_path / f".out.old-{pid}"]
    for folder in stale:
        folder.mkdir()
        (folder / schema.EMBED_FILE).write_bytes(b"half written")
    alive = tmp_path / f".out.tmp-{pid_of_this_test_runner()}"  # a live process's: left alone
    alive.mkdir()
    embed_dataset(embed_dataset_dir, model_dir, tmp_path / "out", VALIDATION_ONLY, progress=False)
    assert "left by a run that was killed" in capsys.readouterr().out
    assert not any(f.exists() for f in stale) and alive.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "out"]


def pid_of_this_test_runner() -> int:
    """The parent of this process: alive for the whole test, and not this process's own PID."""
    import os

    return os.getppid()


def test_old_output_survives_until_the_new_one_is_in_place(
    embed_dataset_dir, model_dir, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the previous embeddings")
    seen = []
    real_rename = pathlib.Path.rename

    def rename(self, target):
        if pathlib.Path(target) == out:
            seen.append([p.name for p in tmp_path.iterdir() if (p / "old.txt").exists()])
        return real_rename(self, target)

    monkeypatch.setattr(pathlib.Path, "rename", rename)
    embed_dataset(embed_dataset_dir, model_dir, out, VALIDATION_ONLY, progress=False)
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith(".out.old-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert pq.read_table(out / schema.EMBED_FILE).num_rows == 40


# --------------------------------------------------------------------------------- command line


def _main_error_line(args, capsys):
    from components.embed.__main__ import main

    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_command_line_five_class_model_is_one_line(embed_dataset_dir, five_class_model, tmp_path, capsys):
    args = [
        "--dataset",
        str(embed_dataset_dir),
        "--model",
        str(five_class_model),
        "--output",
        str(tmp_path / "o"),
    ]
    assert "the model has 5 classes" in _main_error_line(args, capsys)
    assert not (tmp_path / "o").exists()


def test_command_line_replaced_weights_is_one_line(
    embed_dataset_dir, replaced_weights_model, tmp_path, capsys
):
    args = [
        "--dataset",
        str(embed_dataset_dir),
        "--model",
        str(replaced_weights_model),
        "--output",
        str(tmp_path / "o"),
    ]
    assert "the weights it holds hash to" in _main_error_line(args, capsys)


@pytest.mark.parametrize(
    "which, message",
    [
        ("dataset", "does not exist"),
        ("model", "does not exist or is not a folder"),
        ("param", "shard_index 3: expected 0..1 for num_shards=2"),
    ],
)
def test_command_line_bad_input_is_one_line(embed_dataset_dir, model_dir, tmp_path, capsys, which, message):
    dataset = tmp_path / "nowhere" if which == "dataset" else embed_dataset_dir
    model = tmp_path / "nowhere" if which == "model" else model_dir
    extra = ["--shard-index", "3", "--num-shards", "2"] if which == "param" else []
    args = ["--dataset", str(dataset), "--model", str(model), "--output", str(tmp_path / "o"), *extra]
    assert message in _main_error_line(args, capsys)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_command_line_cuda_without_cuda_is_one_line(embed_dataset_dir, model_dir, tmp_path, capsys):
    args = ["--dataset", str(embed_dataset_dir), "--model", str(model_dir), "--output", str(tmp_path / "o")]
    assert "expects a GPU" in _main_error_line([*args, "--device", "cuda"], capsys)


def test_command_line_in_a_fresh_interpreter_prints_no_traceback(tmp_path):
    code = "import sys; from components.embed.__main__ import main; sys.exit(main(sys.argv[1:]))"
    args = ["--dataset", str(tmp_path / "d"), "--model", str(tmp_path / "m"), "--output", str(tmp_path / "o")]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: model folder {tmp_path / 'm'} does not exist or is not a folder"
    ]
