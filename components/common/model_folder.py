"""The model folder: what the train stage writes and the embed stage reads.

A model folder is a ``save_pretrained`` folder with its image processor and the training summary:

- ``config.json`` (the model configuration), the weights (``model.safetensors``),
- ``preprocessor_config.json`` (the image processor: sizes, mean, std),
- ``training_summary.json`` (:data:`~components.common.files.TRAINING_SUMMARY_FILE`): at least
  ``model_version``, a short sha256 of the weights (:func:`weights_version`) that every later stage
  carries, and the metrics.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

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
