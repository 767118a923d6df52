"""Fine-tune (cluster) or train from scratch (local) an image classifier with the HF Trainer.

The plain function :func:`train_model` does the work; ``component.py`` wraps it for KFP and
``__main__.py`` gives it a command line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from components.common import schema
from components.common.schema import DatasetColumns as C

SUMMARY_FILE = "training_summary.json"
LOCAL = "local"
CLUSTER = "cluster"
PROFILES = (LOCAL, CLUSTER)
CLUSTER_MODEL = "microsoft/resnet-50"


class ModelUnavailableError(ValueError):
    """A model name that cannot be loaded (Hub unreachable, unknown name, broken folder)."""


@dataclass(frozen=True)
class ProfileDefaults:
    model_name: str  # "" = a small ResNetConfig built from scratch
    image_size: int
    epochs: float
    batch_size: int
    learning_rate: float
    weight_decay: float
    min_crop_scale: float  # RandomResizedCrop keeps at least this share of the image


PROFILE_DEFAULTS: dict[str, ProfileDefaults] = {
    LOCAL: ProfileDefaults("", 32, 4.0, 128, 3e-3, 0.05, 1.0),
    CLUSTER: ProfileDefaults(CLUSTER_MODEL, 224, 3.0, 32, 5e-5, 0.0, 0.5),
}


@dataclass
class TrainConfig:
    """What to train and how.  Zero / empty values take the profile's default."""

    profile: str = LOCAL
    model_name: str = ""
    epochs: float = 0.0
    batch_size: int = 0
    learning_rate: float = 0.0
    max_steps: int = -1
    seed: int = 0
    image_size: int = 0
    weight_decay: float = -1.0
    min_crop_scale: float = 0.0  # 0 = profile default
    threads: int = 0  # torch CPU threads; 0 = half the cores (see default_threads)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile {self.profile!r}: expected one of {', '.join(PROFILES)}")
        d = PROFILE_DEFAULTS[self.profile]
        self.model_name = self.model_name or d.model_name
        self.epochs = float(self.epochs or d.epochs)
        self.batch_size = int(self.batch_size or d.batch_size)
        self.learning_rate = float(self.learning_rate or d.learning_rate)
        self.image_size = int(self.image_size or d.image_size)
        if self.weight_decay < 0:
            self.weight_decay = d.weight_decay
        self.min_crop_scale = float(self.min_crop_scale or d.min_crop_scale)
        if not 0 < self.min_crop_scale <= 1:
            raise ValueError(f"min_crop_scale {self.min_crop_scale}: expected a value in (0, 1]")
        if self.epochs <= 0:
            raise ValueError(f"epochs {self.epochs}: give a positive number (0 = profile default)")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size {self.batch_size}: give a positive number (0 = profile default)")
        if not (0 < self.learning_rate < 1):
            raise ValueError(f"learning_rate {self.learning_rate}: expected a value in (0, 1)")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps {self.max_steps}: give -1 (train whole epochs) or a positive count")
        if self.threads < 0:
            raise ValueError(f"threads {self.threads}: give 0 (automatic) or a positive count")
        if self.image_size < 8:
            raise ValueError(f"image_size {self.image_size}: expected at least 8 pixels")


def default_threads() -> int:
    """Half the CPU cores (at least one).

    Measured on the 2-core development machine shared with other jobs: one intra-op thread
    trained the local ResNet 6x faster than two, because two OpenMP threads stall whenever the
    other core is busy.  Data loading also runs on the same cores.
    """
    return max(1, (os.cpu_count() or 2) // 2)


# ----------------------------------------------------------------------------------------- data


def open_dataset_dict(dataset_dir: str | Path, splits: tuple[str, ...] | list[str]):
    """``datasets.load_from_disk`` with errors that name the folder, and the split when one is empty."""
    import datasets

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.exists():
        raise ValueError(f"data set folder {dataset_dir} does not exist")
    try:
        dd = datasets.load_from_disk(str(dataset_dir))
    except Exception as e:  # noqa: BLE001 - datasets raises several types for folders it cannot read
        for split in splits:  # an empty split saved with zero shards cannot be loaded at all
            state = dataset_dir / split / "state.json"
            if state.is_file() and not json.loads(state.read_text()).get("_data_files"):
                raise ValueError(f"{dataset_dir}: split {split!r} is empty (saved with no data files)") from e
        raise ValueError(
            f"{dataset_dir}: not a DatasetDict saved with save_to_disk ({type(e).__name__}: {e})"
        ) from e
    if not isinstance(dd, datasets.DatasetDict):
        raise ValueError(
            f"{dataset_dir}: holds one Dataset; expected a DatasetDict with splits {', '.join(splits)}"
        )
    return dd


def load_splits(dataset_dir: str | Path, splits: tuple[str, ...] = (schema.TRAINING, schema.VALIDATION)):
    """Load the data stage's folder and check the splits, columns and labels train needs."""
    dataset_dir = Path(dataset_dir)
    dd = open_dataset_dict(dataset_dir, splits)
    out = {}
    for split in splits:
        if split not in dd:
            raise ValueError(
                f"{dataset_dir}: split {split!r} is missing; found {', '.join(dd.keys()) or 'none'}"
            )
        ds = dd[split]
        schema.require_columns(ds.column_names, (C.IMAGE, C.LABEL), f"{dataset_dir} split {split!r}")
        if len(ds) == 0:
            raise ValueError(f"{dataset_dir}: split {split!r} is empty; train needs labelled rows in it")
        check_labels(ds, f"{dataset_dir} split {split!r}")
        out[split] = ds
    return out


def check_labels(ds, where: str, num_classes: int = schema.NUM_CLASSES) -> np.ndarray:
    """Labels as int64; a ValueError naming the first rows whose label is outside 0..num_classes-1."""
    labels = np.asarray(ds.data.column(C.LABEL).to_numpy(zero_copy_only=False))
    if ds._indices is not None:  # a selected / shuffled view
        labels = np.asarray(ds.with_format("numpy", columns=[C.LABEL])[C.LABEL])
    labels = labels.astype(np.int64, copy=False)
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        first = ", ".join(f"row {i} = {labels[i]}" for i in bad[:5])
        raise ValueError(
            f"{where}: {bad.size} label(s) outside 0..{num_classes - 1} ({first}); "
            f"column {C.LABEL!r} must hold class indices of {schema.CLASS_NAMES}"
        )
    return labels


# ---------------------------------------------------------------------------------------- model


def id_label_maps() -> tuple[dict[int, str], dict[str, int]]:
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
        num_labels=schema.NUM_CLASSES,
        id2label=id2label,
        label2id=label2id,
    )


def build_model_and_processor(config: TrainConfig):
    """(model, image processor) for the configuration; clear errors when a name cannot be loaded."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from components.train.preprocess import local_image_processor

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
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(labels, predictions, labels=list(range(schema.NUM_CLASSES))).tolist()


def weights_version(folder: Path) -> str:
    """A short sha256 of the saved weights: the model version every later stage carries."""
    h = hashlib.sha256()
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        raise ValueError(f"{folder}: no weights file (*.safetensors / *.bin) to version")
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    model_dir: Path
    model_version: str
    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    summary: dict


def _with_transforms(ds, tf):
    from components.train.preprocess import pil_to_rgb_tensor

    def apply(batch):
        return {
            "pixel_values": [tf(pil_to_rgb_tensor(img)) for img in batch[C.IMAGE]],
            "labels": batch[C.LABEL],
        }

    return ds.select_columns([C.IMAGE, C.LABEL]).with_transform(apply)


def train_model(
    dataset_dir: str | Path,
    output_dir: str | Path,
    config: TrainConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    keep_checkpoints: bool = False,
) -> TrainResult:
    """Train on ``training``, evaluate on ``validation`` each epoch, keep the best, save to ``output_dir``.

    Resumes from the last checkpoint in ``checkpoint_dir`` (default: a sibling
    ``<output_dir>.checkpoints``) when it holds one.  The model folder is written to a temporary
    sibling and renamed when complete.
    """
    import torch
    from transformers import Trainer, TrainingArguments, set_seed
    from transformers.trainer_utils import get_last_checkpoint

    from components.train.preprocess import ImageGeometry, collate, eval_transform, train_transform

    config = config or TrainConfig()
    output_dir = Path(output_dir)
    checkpoint_dir = (
        Path(checkpoint_dir) if checkpoint_dir else output_dir.with_name(output_dir.name + ".checkpoints")
    )
    splits = load_splits(dataset_dir)
    set_seed(config.seed)
    if not torch.cuda.is_available():
        torch.set_num_threads(config.threads or default_threads())
    model, processor = build_model_and_processor(config)
    model = model.to(memory_format=torch.channels_last)
    geometry = ImageGeometry.from_processor(processor)
    train_ds = _with_transforms(splits[schema.TRAINING], train_transform(geometry, config.min_crop_scale))
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
    last = get_last_checkpoint(str(checkpoint_dir)) if checkpoint_dir.is_dir() else None
    if last:
        print(f"train: resuming from checkpoint {last}")
    started = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=last)
    train_time = time.perf_counter() - started
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]

    pred = trainer.predict(val_ds)
    val_pred = np.argmax(pred.predictions, axis=-1)
    val_labels = pred.label_ids
    metrics = classification_metrics(val_pred, val_labels)
    metrics.update(
        {
            "loss": float(pred.metrics.get("test_loss", float("nan"))),
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
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        trainer.model.config.id2label, trainer.model.config.label2id = id_label_maps()
        trainer.save_model(str(tmp))
        processor.save_pretrained(str(tmp))
        version = weights_version(tmp)
        summary = {
            "model_version": version,
            "profile": config.profile,
            "model_name": config.model_name or "local-resnet (ResNetConfig, built from scratch)",
            "image_size": geometry.crop_size,
            "class_names": list(schema.CLASS_NAMES),
            "config": asdict(config),
            "metrics": metrics,
            "confusion_matrix": matrix,
            "loss_history": losses,
            "device": "cuda" if cuda else "cpu",
            "precision": "bf16" if bf16 else ("fp16" if cuda else "fp32"),
            "torch_threads": torch.get_num_threads(),
        }
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        if output_dir.exists():
            shutil.rmtree(output_dir) if output_dir.is_dir() else output_dir.unlink()
        tmp.rename(output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not keep_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    print(
        f"train: {config.profile} profile, {len(train_ds)} training rows, {metrics['epochs']:.2f} epochs in "
        f"{train_time:.1f} s -> validation accuracy {metrics['accuracy']:.4f}, F1 macro {metrics['f1_macro']:.4f}, "
        f"model_version {version}, saved to {output_dir}"
    )
    return TrainResult(output_dir, version, metrics, matrix, summary)


def load_summary(model_dir: str | Path) -> dict:
    """The ``training_summary.json`` of a model folder (a ValueError naming what is missing)."""
    path = Path(model_dir) / SUMMARY_FILE
    if not path.is_file():
        raise ValueError(
            f"{model_dir}: no {SUMMARY_FILE}; expected a model folder written by the train stage"
        )
    summary = json.loads(path.read_text())
    if not summary.get("model_version"):
        raise ValueError(f"{path}: no 'model_version' key")
    return summary
