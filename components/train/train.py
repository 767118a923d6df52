"""Fine-tune (cluster) or train from scratch (local) an image classifier with the HF Trainer.

The plain function :func:`train_model` does the work; ``component.py`` wraps it for KFP and
``__main__.py`` gives it a command line.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from components.common import schema
from components.common.dataset_folder import dataset_fingerprint, load_splits, undecodable_images
from components.common.device import require_cuda
from components.common.files import remove_stale_temporaries, replace_dir, tmp_sibling, write_text_atomic
from components.common.model_folder import weights_version, write_summary
from components.common.schema import DatasetColumns as C
from components.common.threads import default_threads
from components.train.config import CLUSTER, LOCAL, TrainConfig

TRAIN_SPLITS = (schema.TRAINING, schema.VALIDATION)
TRAIN_COLUMNS = (C.IMAGE, C.LABEL)
RESUME_RECORD = "resume_record.json"  # beside the checkpoints: the data and settings they are trained with


class ModelUnavailableError(ValueError):
    """A model name that cannot be loaded (Hub unreachable, unknown name, broken folder)."""


class UndecodableImagesError(ValueError):
    """Rows of the training or validation split whose image does not decode."""


# ----------------------------------------------------------------------------------------- data


def load_training_splits(dataset_dir: str | Path) -> dict:
    """The training and validation splits of the data stage's folder, checked for what train needs."""
    return load_splits(dataset_dir, TRAIN_SPLITS, TRAIN_COLUMNS, "train needs labelled rows in it")


def check_images_decode(splits: dict, dataset_dir: str | Path, show: int = 5) -> None:
    """Fail before training when an image of a split does not decode, naming the split, rows and ids.

    train keeps nothing aside: the training data is the data stage's output, and a row that does
    not decode means the folder is damaged; training on what is left would give a model version
    whose data nobody chose. (embed, by contrast, lists such rows in its failures file and goes on.)
    """
    bad = [f for split, ds in splits.items() for f in undecodable_images(ds, split)]
    if not bad:
        return
    shown = "; ".join(
        f"split {f['split']!r} row {f['row']}"
        + (f" (image_id {f['image_id']})" if f["image_id"] is not None else "")
        + f": {str(f['error']).splitlines()[0][:160]}"
        for f in bad[:show]
    )
    more = f"; and {len(bad) - show} more" if len(bad) > show else ""
    raise UndecodableImagesError(
        f"{dataset_dir}: {len(bad)} image(s) do not decode: {shown}{more}. Rebuild the data set with "
        "the data stage (or remove those rows); train does not skip rows."
    )


@dataclass
class ExtraRows:
    """The labelled rows of ``extra_training_uri`` that join the training split, and what was left out."""

    uri: str
    rows: object | None  # a datasets.Dataset of (image, label), or None when no row is labelled
    per_split: dict[str, int]  # labelled rows taken, per split of the folder
    unlabelled: int  # rows left out: no label yet (schema.NO_LABEL)
    fingerprint: str


def load_extra_rows(uri: str, work_dir: Path) -> ExtraRows:
    """The labelled rows of every split of the data-stage folder at ``uri`` (a bucket prefix is copied to ``work_dir``).

    Rows whose label is ``schema.NO_LABEL`` (-1, no label yet: an ingested batch before its actuals)
    are left out and counted; any other label outside the classes is an error naming the split and
    rows (:func:`~components.common.dataset_folder.check_labels`).
    """
    import datasets

    from components.common import storage
    from components.common.dataset_folder import check_labels, open_dataset_dict

    folder = Path(uri)
    if storage.is_remote(uri):
        folder = work_dir / "extra_training"
        copied = storage.download_prefix(uri, folder)
        if not copied.files:
            raise FileNotFoundError(f"extra_training_uri {uri}: no files under that prefix")
    dd = open_dataset_dict(folder, ())
    parts, per_split, unlabelled = [], {}, 0
    for split in sorted(dd.keys()):
        ds = dd[split]
        where = f"extra_training_uri {uri} split {split!r}"
        schema.require_columns(ds.column_names, TRAIN_COLUMNS, where)
        labels = check_labels(ds, where, allow_no_label=True)
        keep = np.flatnonzero(labels != schema.NO_LABEL)
        unlabelled += int(len(labels) - len(keep))
        per_split[split] = int(len(keep))
        if len(keep):
            parts.append(ds.select_columns(list(TRAIN_COLUMNS)).select(keep.tolist()))
    rows = None
    if parts:
        features = datasets.Features(
            {C.IMAGE: datasets.Image(), C.LABEL: datasets.ClassLabel(names=list(schema.CLASS_NAMES))}
        )
        rows = datasets.concatenate_datasets([p.cast(features) for p in parts])
    return ExtraRows(uri, rows, per_split, unlabelled, dataset_fingerprint(folder, sorted(dd.keys())))


def with_extra_rows(training, extra: ExtraRows | None):
    """The training split with the extra labelled rows appended (cast to its features)."""
    import datasets

    if extra is None or extra.rows is None:
        return training
    base = training.select_columns(list(TRAIN_COLUMNS))
    return datasets.concatenate_datasets([base, extra.rows.cast(base.features)])  # type: ignore[attr-defined]


def collate(examples: list[dict]) -> dict:
    """Data collator for the Trainer: stacks ``pixel_values`` (channels-last) and ``labels``.

    Channels-last made the local ResNet train 1.6x faster on the development CPU.
    """
    import torch

    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]).contiguous(
            memory_format=torch.channels_last
        ),
        "labels": torch.tensor([int(e["labels"]) for e in examples], dtype=torch.long),
    }


# ---------------------------------------------------------------------------------------- model


def id_label_maps() -> tuple[dict[int, str], dict[str, int]]:
    """``id2label`` and ``label2id`` of the 10 classes, for the model configuration."""
    id2label = dict(enumerate(schema.CLASS_NAMES))
    return id2label, {v: k for k, v in id2label.items()}


def local_resnet_config(image_size: int = 32):
    """The small ResNet of the local profile (about 1.2 M parameters), built from scratch."""
    from transformers import ResNetConfig

    id2label, label2id = id_label_maps()
    return ResNetConfig(
        num_channels=3,
        embedding_size=32,
        hidden_sizes=[32, 64, 128, 256],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        hidden_act="relu",
        # the number of labels is len(id2label) (PreTrainedConfig.num_labels is derived from it)
        id2label=id2label,
        label2id=label2id,
    )


def build_model_and_processor(config: TrainConfig):
    """(model, image processor) for the configuration; clear errors when a name cannot be loaded."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from components.common.preprocess import local_image_processor

    if not config.model_name:
        model = AutoModelForImageClassification.from_config(local_resnet_config(config.image_size))
        return model, local_image_processor(config.image_size)
    id2label, label2id = id_label_maps()
    name = config.model_name
    try:
        processor = AutoImageProcessor.from_pretrained(name)
        model = AutoModelForImageClassification.from_pretrained(
            name,
            num_labels=schema.NUM_CLASSES,
            id2label=id2label,
            label2id=label2id,
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise ModelUnavailableError(
            f"model {name!r} could not be loaded from a local folder or the Hugging Face Hub"
            f"{' (HF_HUB_OFFLINE is set)' if offline else ''}: {type(e).__name__}: {str(e).splitlines()[0]}. "
            f"Without Hub access use profile={LOCAL!r} with model_name='' (a small ResNet built from "
            "scratch), or pass a folder that holds a saved model and its image processor."
        ) from e
    return model, processor


# -------------------------------------------------------------------------------------- metrics


def classification_metrics(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Accuracy and F1 (weighted and macro) of class predictions."""
    from sklearn.metrics import accuracy_score, f1_score

    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "f1_weighted": float(f1_score(labels, predictions, average="weighted", zero_division=0)),
        "f1_macro": float(f1_score(labels, predictions, average="macro", zero_division=0)),
    }


def compute_metrics(eval_pred) -> dict[str, float]:
    """``Trainer`` hook: logits -> accuracy, F1 weighted, F1 macro."""
    logits, labels = eval_pred.predictions, eval_pred.label_ids
    if isinstance(logits, tuple):
        logits = logits[0]
    return classification_metrics(np.argmax(logits, axis=-1), labels)


def confusion(predictions: np.ndarray, labels: np.ndarray) -> list[list[int]]:
    """The 10x10 confusion matrix: rows are the actual classes, columns the predicted ones."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(labels, predictions, labels=list(range(schema.NUM_CLASSES))).tolist()


# --------------------------------------------------------------------------------------- resume


def resume_record(
    dataset_dir: str | Path,
    config: TrainConfig,
    augmentations: tuple[str, ...] = (),
    extra: ExtraRows | None = None,
) -> dict:
    """What a checkpoint folder records when training starts: the data set's fingerprint and the settings.

    ``data``: :func:`~components.common.dataset_folder.dataset_fingerprint` of the training and
    validation splits (state.json fingerprints and data file names and sizes, no times);
    ``settings``: :meth:`TrainConfig.resume_settings` (everything that changes the weights).
    """
    data = dataset_fingerprint(dataset_dir, TRAIN_SPLITS)
    settings = config.resume_settings()
    if extra is not None:  # the extra rows are data too; kept out of the record when there are none
        data = f"{data}+{extra.fingerprint}"
    if augmentations or config.augment:  # what augment=auto resolved to
        settings["augmentations"] = list(augmentations)
    return json.loads(json.dumps({"data": data, "settings": settings}))


def _differences(recorded: dict, wanted: dict) -> list[str]:
    out = []
    if recorded.get("data") != wanted["data"]:
        out.append(f"data set fingerprint {recorded.get('data')} -> {wanted['data']}")
    old = recorded.get("settings") or {}
    for key, value in wanted["settings"].items():
        if old.get(key, "<not recorded>") != value:
            out.append(f"{key} {old.get(key, '<not recorded>')!r} -> {value!r}")
    return out


def prepare_checkpoints(checkpoint_dir: Path, record: dict) -> tuple[str | None, str | None]:
    """Decide whether to resume: (checkpoint to resume from, why a fresh start) - one of them is None.

    Resumes from the last ``checkpoint-<step>`` only when the folder's :data:`RESUME_RECORD` equals
    ``record`` (same data, same settings). Otherwise the old checkpoints are removed and the
    reason is returned. Either way the record is (re)written, so a run killed from here on can
    be resumed by a rerun with the same data and settings.
    """
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
    reason = None
    if last:
        path = checkpoint_dir / RESUME_RECORD
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = None
        if not isinstance(recorded, dict):
            reason = f"no readable {RESUME_RECORD} beside it (data and settings unknown)"
        elif diff := _differences(recorded, record):
            reason = "it was trained with other data or settings: " + ", ".join(diff)
        if reason:
            reason = f"not resuming {last}: {reason}; starting fresh"
            for old in checkpoint_dir.glob("checkpoint-*"):
                shutil.rmtree(old, ignore_errors=True)
            last = None
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(checkpoint_dir / RESUME_RECORD, json.dumps(record, indent=2))
    return last, reason


# ---------------------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What :func:`train_model` wrote: the model folder, its version, validation metrics, summary."""

    model_dir: Path
    model_version: str
    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    summary: dict


def _with_transforms(ds, tf):
    from components.common.preprocess import pil_to_rgb_tensor

    def apply(batch):
        return {
            "pixel_values": [tf(pil_to_rgb_tensor(img)) for img in batch[C.IMAGE]],
            "labels": batch[C.LABEL],
        }

    return ds.select_columns([C.IMAGE, C.LABEL]).with_transform(apply)


def train_model(
    dataset_dir: str | Path, output_dir: str | Path, config: TrainConfig | None = None
) -> TrainResult:
    """Train on ``training``, evaluate on ``validation`` each epoch, keep the best, save to ``output_dir``.

    Resumes from the last checkpoint in ``config.checkpoints`` (default: a sibling
    ``<output_dir>.checkpoints``) when it holds one trained on the same data set with the same
    settings (:func:`prepare_checkpoints`); otherwise starts fresh and says why (log and summary,
    key ``start``). Removes that folder after a successful run unless ``config.keep_checkpoints``.
    Every image of both splits is decoded first: one that does not decode fails the run at once
    (:class:`UndecodableImagesError`, naming split, row and image id). The model folder is written
    to a temporary sibling ``.<name>.tmp-<pid>`` and moved into place when complete
    (:func:`~components.common.files.replace_dir`); such siblings left by killed runs are removed.

    With ``profile=cluster`` it first checks that CUDA is there and fails at once when it is not
    (:func:`components.common.device.require_cuda`), unless ``config.allow_cpu``.
    """
    config = config or TrainConfig()
    if config.profile == CLUSTER:
        require_cuda("train", f"profile={CLUSTER}", config.allow_cpu)
    from components.common.explanation import resolve_augment

    output_dir = Path(output_dir)
    checkpoint_dir = (
        Path(config.checkpoints)
        if config.checkpoints
        else output_dir.with_name(output_dir.name + ".checkpoints")
    )
    for stale in remove_stale_temporaries(output_dir.parent, names=[output_dir.name]):
        print(f"train: removed {stale}, left by a run that was killed")
    splits = load_training_splits(dataset_dir)
    check_images_decode(splits, dataset_dir)
    augmentations, augment_reasons = resolve_augment(config.augment, config.drift_uri)
    for reason in augment_reasons:
        print(f"train: augmentation {reason}")
    work = Path(tempfile.mkdtemp(prefix="train-extra-"))  # a bucket's extra rows are copied here
    try:
        return _train(
            config, dataset_dir, output_dir, checkpoint_dir, splits, augmentations, augment_reasons, work
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _train(
    config: TrainConfig,
    dataset_dir: str | Path,
    output_dir: Path,
    checkpoint_dir: Path,
    splits: dict,
    augmentations: tuple[str, ...],
    augment_reasons: list[str],
    work: Path,
) -> TrainResult:
    """The body of :func:`train_model` once the splits are checked and the augmentations resolved."""
    import torch
    from transformers import PreTrainedModel, Trainer, TrainingArguments, set_seed

    from components.common.preprocess import ImageGeometry, eval_transform, train_transform

    extra = None
    training = splits[schema.TRAINING]
    if config.extra_training_uri:
        extra = load_extra_rows(config.extra_training_uri, work)
        if extra.rows is not None:
            check_images_decode({"extra": extra.rows}, config.extra_training_uri)
        training = with_extra_rows(training, extra)
        print(
            f"train: extra training rows from {config.extra_training_uri}: "
            f"{sum(extra.per_split.values())} labelled joined the training split, "
            f"{extra.unlabelled} without a label yet left out"
        )
    set_seed(config.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(config.threads or default_threads())
    model, processor = build_model_and_processor(config)
    model = model.to(memory_format=torch.channels_last)
    geometry = ImageGeometry.from_processor(processor)
    train_ds = _with_transforms(training, train_transform(geometry, config.min_crop_scale, augmentations))
    val_ds = _with_transforms(splits[schema.VALIDATION], eval_transform(geometry))

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    by_epoch = config.max_steps < 0
    steps_per_epoch = math.ceil(len(train_ds) / config.batch_size)
    args = TrainingArguments(
        output_dir=str(checkpoint_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(config.batch_size, 256),
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        lr_scheduler_type="cosine" if not config.model_name else "linear",
        warmup_steps=0.05 if not config.model_name else 0.0,
        eval_strategy="epoch" if by_epoch else "no",
        save_strategy="epoch" if by_epoch else "no",
        save_total_limit=2,
        load_best_model_at_end=by_epoch,
        metric_for_best_model="accuracy",
        greater_is_better=True,
        logging_steps=max(1, min(50, steps_per_epoch // 4)),
        remove_unused_columns=False,
        # one worker decodes and augments on the other core while the main process trains
        dataloader_num_workers=1 if (os.cpu_count() or 1) > 1 else 0,
        dataloader_persistent_workers=(os.cpu_count() or 1) > 1,
        dataloader_pin_memory=cuda,
        bf16=bf16,
        fp16=cuda and not bf16,
        report_to="none",
        seed=config.seed,
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        data_collator=collate,
        compute_metrics=compute_metrics,
    )
    last, fresh_reason = prepare_checkpoints(
        checkpoint_dir, resume_record(dataset_dir, config, augmentations, extra)
    )
    if last:
        print(f"train: resuming from checkpoint {last} (same data set and settings)")
    elif fresh_reason:
        print(f"train: {fresh_reason}")
    started = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=last)
    train_time = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    pred = trainer.predict(val_ds)
    val_pred = np.argmax(pred.predictions, axis=-1)
    val_labels = pred.label_ids
    assert isinstance(val_labels, np.ndarray), "the validation split has one label column"
    metrics = classification_metrics(val_pred, val_labels)
    metrics.update(
        {
            "loss": float((pred.metrics or {}).get("test_loss", float("nan"))),
            "train_loss": float(train_out.training_loss),
            "epochs": float(trainer.state.epoch or 0.0),
            "train_time_s": float(train_time),
            "train_rows": float(len(train_ds)),
            "validation_rows": float(len(val_ds)),
            "steps": float(trainer.state.global_step),
        }
    )
    matrix = confusion(val_pred, val_labels)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(output_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        trained = trainer.model
        assert isinstance(trained, PreTrainedModel), "an AutoModelForImageClassification model"
        trained.config.id2label, trained.config.label2id = id_label_maps()
        trainer.save_model(str(tmp))
        processor.save_pretrained(str(tmp))
        version = weights_version(tmp)
        summary = {
            "model_version": version,
            "profile": config.profile,
            "model_name": config.model_name or "local-resnet (ResNetConfig, built from scratch)",
            "image_size": geometry.crop_size,
            "class_names": list(schema.CLASS_NAMES),
            "config": config.trained_with(),
            "metrics": metrics,
            "confusion_matrix": matrix,
            "loss_history": losses,
            "augmentations": list(augmentations),
            "augment_reasons": augment_reasons,
            "extra_training": None
            if extra is None
            else {
                "uri": extra.uri,
                "labelled_rows": extra.per_split,
                "unlabelled_rows_left_out": extra.unlabelled,
            },
            "device": "cuda" if cuda else "cpu",
            "precision": "bf16" if bf16 else ("fp16" if cuda else "fp32"),
            "torch_threads": torch.get_num_threads(),
            "start": {
                "resumed_from": Path(last).name if last else None,
                "fresh_start_reason": fresh_reason,
            },
        }
        write_summary(tmp, summary)
        replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not config.keep_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    print(
        f"train: {config.profile} profile, {len(train_ds)} training rows, {metrics['epochs']:.2f} epochs in "
        f"{train_time:.1f} s -> validation accuracy {metrics['accuracy']:.4f}, F1 macro {metrics['f1_macro']:.4f}, "
        f"model_version {version}, saved to {output_dir}"
    )
    return TrainResult(output_dir, version, metrics, matrix, summary)
