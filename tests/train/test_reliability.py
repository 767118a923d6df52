"""train under faults and bad input: stale checkpoints, undecodable images, killed runs, the command line.

The resume cases train for real (300 rows, batch 100: 3 steps an epoch, a checkpoint after each
epoch). A run "killed after its first checkpoint" is made by keeping the checkpoints of a
2-epoch run and deleting the second one: what is left is exactly what a run stopped between
epoch 1 and epoch 2 leaves (``checkpoint-3`` and the record written when training started).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import datasets
import pytest
import torch

from components.common import schema
from components.common.dataset_folder import dataset_fingerprint, undecodable_images
from components.common.model_folder import load_summary
from components.common.schema import DatasetColumns as C
from components.train.config import TrainConfig
from components.train.train import (
    RESUME_RECORD,
    TRAIN_SPLITS,
    UndecodableImagesError,
    prepare_checkpoints,
    resume_record,
    train_model,
)

EPOCH_RUN = dict(epochs=2, batch_size=100, threads=1, keep_checkpoints=True)


def _dead_pid() -> int:
    """The PID of a process that has exited (a killed run's)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _kill_after_first_checkpoint(ckpt):
    """Leave what a run stopped after epoch 1 of 2 leaves: checkpoint-3 and the record."""
    shutil.rmtree(ckpt / "checkpoint-6")
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint-3", RESUME_RECORD]


@pytest.fixture(scope="module")
def stopped_run(small_dataset, tmp_path_factory):
    """A 2-epoch run whose checkpoints are kept, then cut back to the state after its first epoch."""
    root = tmp_path_factory.mktemp("resume")
    ckpt = root / "ckpt"
    first = train_model(
        small_dataset, root / "model", TrainConfig(learning_rate=3e-3, checkpoints=str(ckpt), **EPOCH_RUN)
    )
    assert (
        first.metrics["steps"] == 6 and (ckpt / "checkpoint-3").is_dir() and (ckpt / "checkpoint-6").is_dir()
    )
    return root, ckpt, first


def test_first_run_records_its_data_and_settings(small_dataset, stopped_run):
    _, ckpt, first = stopped_run
    assert first.summary["start"] == {"resumed_from": None, "fresh_start_reason": None}
    record = json.loads((ckpt / RESUME_RECORD).read_text())
    assert record == resume_record(small_dataset, TrainConfig(learning_rate=3e-3, **EPOCH_RUN))
    assert record["settings"]["learning_rate"] == 3e-3 and "threads" not in record["settings"]


def test_rerun_with_the_same_settings_resumes(small_dataset, stopped_run, capsys):
    root, ckpt, _ = stopped_run
    _kill_after_first_checkpoint(ckpt)
    capsys.readouterr()
    cfg = TrainConfig(learning_rate=3e-3, checkpoints=str(ckpt), **{**EPOCH_RUN, "threads": 2})
    second = train_model(small_dataset, root / "model", cfg)
    assert "train: resuming from checkpoint" in capsys.readouterr().out
    assert second.summary["start"] == {"resumed_from": "checkpoint-3", "fresh_start_reason": None}
    # 3 steps were left to do: the loss history holds only the resumed part's logs
    assert second.metrics["steps"] == 6 and second.metrics["epochs"] == 2.0


def test_rerun_with_another_learning_rate_starts_fresh(small_dataset, stopped_run, capsys):
    root, ckpt, _ = stopped_run
    if (ckpt / "checkpoint-6").exists():
        _kill_after_first_checkpoint(ckpt)
    capsys.readouterr()
    cfg = TrainConfig(learning_rate=1e-3, checkpoints=str(ckpt), **EPOCH_RUN)
    third = train_model(small_dataset, root / "model", cfg)
    out = capsys.readouterr().out
    assert "resuming from checkpoint" not in out
    assert "not resuming" in out and "learning_rate 0.003 -> 0.001; starting fresh" in out
    start = load_summary(root / "model")["start"]
    assert start["resumed_from"] is None and "learning_rate 0.003 -> 0.001" in start["fresh_start_reason"]
    assert load_summary(root / "model")["config"]["learning_rate"] == 1e-3
    assert third.metrics["steps"] == 6  # all 6 steps trained again, none taken over
    # the record now describes the new settings: a rerun with them resumes
    assert json.loads((ckpt / RESUME_RECORD).read_text())["settings"]["learning_rate"] == 1e-3


def _checkpoint_folder(tmp_path, record):
    ckpt = tmp_path / "ckpt"
    (ckpt / "checkpoint-3").mkdir(parents=True)
    if record is not None:
        (ckpt / RESUME_RECORD).write_text(json.dumps(record))
    return ckpt


def test_another_data_set_starts_fresh(small_dataset, tmp_path):
    record = resume_record(small_dataset, TrainConfig())
    other = tmp_path / "other"
    dd = datasets.load_from_disk(str(small_dataset))
    dd[schema.TRAINING] = dd[schema.TRAINING].select(range(250))
    dd.save_to_disk(str(other))
    ckpt = _checkpoint_folder(tmp_path, record)
    last, reason = prepare_checkpoints(ckpt, resume_record(other, TrainConfig()))
    assert last is None and "data set fingerprint" in reason and "starting fresh" in reason
    assert not (ckpt / "checkpoint-3").exists()  # the stale checkpoint is gone
    assert json.loads((ckpt / RESUME_RECORD).read_text())["data"] == dataset_fingerprint(other, TRAIN_SPLITS)


def test_checkpoints_without_a_record_start_fresh(tmp_path, small_dataset):
    ckpt = _checkpoint_folder(tmp_path, None)  # written by an older version, or the record was lost
    last, reason = prepare_checkpoints(ckpt, resume_record(small_dataset, TrainConfig()))
    assert last is None and f"no readable {RESUME_RECORD}" in reason


def test_same_data_and_settings_resume(tmp_path, small_dataset):
    record = resume_record(small_dataset, TrainConfig(threads=1))
    ckpt = _checkpoint_folder(tmp_path, record)
    # threads do not change the weights: a rerun with other threads still resumes
    last, reason = prepare_checkpoints(ckpt, resume_record(small_dataset, TrainConfig(threads=2)))
    assert last == str(ckpt / "checkpoint-3") and reason is None


def test_fingerprint_ignores_times_but_not_content(small_dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)  # new modification times, as a KFP retry's download
    assert dataset_fingerprint(copy, TRAIN_SPLITS) == dataset_fingerprint(small_dataset, TRAIN_SPLITS)
    dd = datasets.load_from_disk(str(small_dataset))
    dd[schema.VALIDATION] = dd[schema.VALIDATION].select(range(99))
    dd.save_to_disk(str(tmp_path / "fewer"))
    assert dataset_fingerprint(tmp_path / "fewer", TRAIN_SPLITS) != dataset_fingerprint(
        small_dataset, TRAIN_SPLITS
    )


# ----------------------------------------------------------------------------- undecodable images


def _with_broken_images(src, dst, split, rows):
    dd = datasets.load_from_disk(str(src))
    ds = dd[split].cast_column(C.IMAGE, datasets.Image(decode=False))

    def spoil(r, i):
        if i in rows:
            return {C.IMAGE: {"bytes": b"\x89PNG not an image", "path": None}}
        return {C.IMAGE: r[C.IMAGE]}

    dd[split] = ds.map(spoil, with_indices=True).cast_column(C.IMAGE, datasets.Image())
    dd.save_to_disk(str(dst))
    return dst


def test_undecodable_training_image_names_split_row_and_id(small_dataset, tmp_path):
    data = _with_broken_images(small_dataset, tmp_path / "d", schema.TRAINING, {17, 250})
    ids = datasets.load_from_disk(str(data))[schema.TRAINING][C.IMAGE_ID]
    with pytest.raises(UndecodableImagesError) as err:
        train_model(data, tmp_path / "model", TrainConfig(max_steps=1, threads=1))
    message = str(err.value)
    assert "2 image(s) do not decode" in message
    assert f"split 'training' row 17 (image_id {ids[17]})" in message
    assert f"split 'training' row 250 (image_id {ids[250]})" in message
    assert "Rebuild the data set" in message
    assert not (tmp_path / "model").exists() and not (tmp_path / "model.checkpoints").exists()


def test_undecodable_images_lists_rows_like_embeds_failures(small_dataset, tmp_path):
    data = _with_broken_images(small_dataset, tmp_path / "d", schema.VALIDATION, {0, 99})
    ds = datasets.load_from_disk(str(data))[schema.VALIDATION]
    found = undecodable_images(ds, schema.VALIDATION, batch_rows=32)  # rows across batches
    ids = ds.data.column(C.IMAGE_ID).to_pylist()
    assert [(f["split"], f["row"], f["image_id"]) for f in found] == [
        ("validation", 0, ids[0]),
        ("validation", 99, ids[99]),
    ]
    assert all(f["error"] for f in found)
    assert undecodable_images(datasets.load_from_disk(str(small_dataset))[schema.TRAINING], "training") == []


# ---------------------------------------------------------------------------------- killed runs


def test_temporaries_of_killed_runs_are_removed_and_the_output_replaced(small_dataset, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("the previous model")
    pid = _dead_pid()
    stale_tmp = tmp_path / f".model.tmp-{pid}"
    stale_old = tmp_path / f".model.old-{pid}"
    for stale in (stale_tmp, stale_old):
        stale.mkdir()
        (stale / "config.json").write_text("{}")
    other = tmp_path / f".other.tmp-{pid}"  # not this output's: left alone
    other.mkdir()
    train_model(small_dataset, out, TrainConfig(max_steps=1, batch_size=16, threads=1))
    assert "left by a run that was killed" in capsys.readouterr().out
    assert not stale_tmp.exists() and not stale_old.exists() and other.exists()
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".other.tmp-{pid}", "model"]


def test_old_output_survives_until_the_new_one_is_in_place(small_dataset, tmp_path, monkeypatch):
    """At the moment the new folder moves in, the old one still exists (renamed aside), never deleted first."""
    import pathlib

    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("the previous model")
    seen = []
    real_rename = pathlib.Path.rename

    def rename(self, target):
        if pathlib.Path(target) == out:
            seen.append([p.name for p in tmp_path.iterdir() if (p / "old.txt").exists()])
        return real_rename(self, target)

    monkeypatch.setattr(pathlib.Path, "rename", rename)
    train_model(small_dataset, out, TrainConfig(max_steps=1, batch_size=16, threads=1))
    assert len(seen) == 1 and len(seen[0]) == 1 and seen[0][0].startswith(".model.old-")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


# --------------------------------------------------------------------------------- command line


def _cli(args, tmp_path):
    env_code = "import sys; from components.train.__main__ import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", env_code, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )


def _one_error_line(proc):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr and lines[-1].startswith("error: "), proc.stderr
    return lines[-1]


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "does not exist"),
        (["--learning-rate", "2"], "learning_rate 2.0: expected a value in (0, 1)"),
    ],
)
def test_command_line_errors_are_one_line(tmp_path, extra, message):
    proc = _cli(["--dataset", str(tmp_path / "nowhere"), "--output", str(tmp_path / "m"), *extra], tmp_path)
    assert message in _one_error_line(proc)


def _main_error_line(args, capsys):
    """``main`` in this process (faster than a fresh interpreter): 2 and one ``error:`` line."""
    from components.train.__main__ import main

    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_command_line_undecodable_image_is_one_line(small_dataset, tmp_path, capsys):
    data = _with_broken_images(small_dataset, tmp_path / "d", schema.VALIDATION, {5})
    line = _main_error_line(
        ["--dataset", str(data), "--output", str(tmp_path / "m"), "--threads", "1"], capsys
    )
    assert "split 'validation' row 5" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_command_line_cluster_without_cuda_is_one_line(tmp_path, capsys):
    line = _main_error_line(
        ["--dataset", str(tmp_path), "--output", str(tmp_path / "m"), "--profile", "cluster"], capsys
    )
    assert "expects a GPU" in line
