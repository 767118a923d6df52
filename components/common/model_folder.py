"""The model folder: what the train stage writes and the embed stage reads.

A model folder is a ``save_pretrained`` folder with its image processor and the training summary:

- ``config.json`` (the model configuration), the weights (``model.safetensors``),
- ``preprocessor_config.json`` (the image processor: sizes, mean, std),
- ``training_summary.json`` (:data:`~components.common.files.TRAINING_SUMMARY_FILE`): at least
  ``model_version``, a short sha256 of the weights (:func:`weights_version`) that every later stage
  carries, and the metrics.

:func:`verify_model_folder` is what a reader of the folder calls before trusting it: the files are
there, the model's label set is this setup's class list (:data:`components.common.schema.CLASS_NAMES`),
and the weights are the ones the training summary versions (their hash equals ``model_version``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from components.common import schema
from components.common.files import TRAINING_SUMMARY_FILE, write_text_atomic

CONFIG_FILE = "config.json"
PROCESSOR_FILE = "preprocessor_config.json"
MODEL_VERSION = "model_version"  # the key of the summary every later stage reads


def weights_files(folder: str | Path) -> list[Path]:
    """The weights files of a model folder: ``*.safetensors``, else ``*.bin``, sorted."""
    folder = Path(folder)
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))


def weights_version(folder: str | Path) -> str:
    """A short sha256 of the saved weights: the model version every later stage carries."""
    folder = Path(folder)
    h = hashlib.sha256()
    files = weights_files(folder)
    if not files:
        raise ValueError(f"{folder}: no weights file (*.safetensors / *.bin) to version")
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def write_summary(folder: str | Path, summary: dict[str, Any]) -> Path:
    """Write ``training_summary.json`` into a model folder (indented JSON, atomically)."""
    return write_text_atomic(Path(folder) / TRAINING_SUMMARY_FILE, json.dumps(summary, indent=2))


def load_summary(model_dir: str | Path) -> dict[str, Any]:
    """The ``training_summary.json`` of a model folder (a ValueError naming what is missing)."""
    path = Path(model_dir) / TRAINING_SUMMARY_FILE
    if not path.is_file():
        raise ValueError(
            f"{model_dir}: no {TRAINING_SUMMARY_FILE}; expected a model folder written by the train stage"
        )
    summary: dict[str, Any] = json.loads(path.read_text())
    if not summary.get(MODEL_VERSION):
        raise ValueError(f"{path}: no {MODEL_VERSION!r} key")
    return summary


def check_model_folder(model_dir: str | Path) -> None:
    """A ValueError naming what a model folder lacks (config, weights, processor, summary)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"model folder {model_dir} does not exist or is not a folder")
    missing = []
    if not (model_dir / CONFIG_FILE).is_file():
        missing.append(f"{CONFIG_FILE} (model configuration)")
    if not (list(model_dir.glob("*.safetensors")) or list(model_dir.glob("pytorch_model*.bin"))):
        missing.append("weights (model.safetensors)")
    if not (model_dir / PROCESSOR_FILE).is_file():
        missing.append(f"{PROCESSOR_FILE} (image processor)")
    if not (model_dir / TRAINING_SUMMARY_FILE).is_file():
        missing.append(f"{TRAINING_SUMMARY_FILE} ({MODEL_VERSION})")
    if missing:
        raise ValueError(
            f"model folder {model_dir}: missing {'; '.join(missing)}; expected the train stage's output "
            "(save_pretrained model + image processor + training summary)"
        )


class ModelFolderMismatchError(ValueError):
    """A model folder whose labels or weights are not what this setup or its training summary says."""


def model_labels(model_dir: str | Path) -> list[str]:
    """The class names of a model folder's ``config.json`` in index order (``id2label``).

    A configuration without ``id2label`` has ``num_labels`` classes named ``LABEL_<i>`` (what
    transformers assumes); one with neither is a ValueError.
    """
    path = Path(model_dir) / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"model folder {model_dir}: {CONFIG_FILE} cannot be read ({e})") from e
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        try:
            by_index = {int(k): str(v) for k, v in id2label.items()}
        except ValueError as e:
            raise ValueError(f"{path}: id2label keys must be class indices ({e})") from e
        return [by_index.get(i, f"<missing {i}>") for i in range(max(by_index) + 1)]
    if isinstance(config.get("num_labels"), int):
        return [f"LABEL_{i}" for i in range(config["num_labels"])]
    raise ValueError(f"{path}: neither id2label nor num_labels; not a classifier's configuration")


def _short(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")


def verify_model_folder(model_dir: str | Path) -> dict[str, Any]:
    """Check a model folder before it is used; returns its training summary.

    Checks, each failing with a message that names the folder, what it claims, what it holds and
    what to do:

    - the files (:func:`check_model_folder`) and the summary (:func:`load_summary`);
    - the label set: ``config.json``'s ``id2label`` (and the summary's ``class_names``, when there)
      equal :data:`components.common.schema.CLASS_NAMES` in order (a model of another setup, e.g. 5
      classes, would give probabilities that no later stage can read);
    - the weights: :func:`weights_version` of the weights equals the summary's ``model_version``
      (weights replaced after training would be sent under the old version).

    Raises:
        ModelFolderMismatchError: the labels or the weights do not match (a ValueError).
        ValueError: a file is missing or unreadable.
    """
    model_dir = Path(model_dir)
    check_model_folder(model_dir)
    summary = load_summary(model_dir)
    expected = list(schema.CLASS_NAMES)
    labels = model_labels(model_dir)
    if labels != expected:
        raise ModelFolderMismatchError(
            f"model folder {model_dir}: the model has {len(labels)} classes ({_short(labels)}) but this "
            f"setup's class list has {len(expected)} ({_short(expected)}); it was trained for another "
            "setup. Train a model on this setup's data set with the train stage and pass that folder."
        )
    claimed_names = summary.get("class_names")
    if claimed_names is not None and list(claimed_names) != expected:
        raise ModelFolderMismatchError(
            f"model folder {model_dir}: its {TRAINING_SUMMARY_FILE} lists {len(claimed_names)} classes "
            f"({_short(list(claimed_names))}) but this setup's class list has {len(expected)} "
            f"({_short(expected)}). Train a model on this setup's data set with the train stage."
        )
    held = weights_version(model_dir)
    claimed = str(summary[MODEL_VERSION])
    if held != claimed:
        raise ModelFolderMismatchError(
            f"model folder {model_dir}: its {TRAINING_SUMMARY_FILE} claims {MODEL_VERSION} {claimed}, but "
            f"the weights it holds hash to {held}: the weights were replaced or changed after training. "
            "Use the folder the train stage wrote (or retrain); do not copy weights into a model folder."
        )
    return summary
