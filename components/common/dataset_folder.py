"""Opening the data stage's folder (a ``datasets.DatasetDict`` saved with ``save_to_disk``) and its splits.

train and embed both read it: :func:`load_splits` checks that the splits a stage needs are there,
non-empty, with the columns it reads and labels inside the class range, and names the folder, the
split and the first bad rows when they are not.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.common import schema
from components.common.schema import DatasetColumns as C

if TYPE_CHECKING:
    import datasets


def open_dataset_dict(dataset_dir: str | Path, splits: Sequence[str]) -> datasets.DatasetDict:
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


def load_splits(
    dataset_dir: str | Path, splits: Sequence[str], columns: Sequence[str], when_empty: str
) -> dict[str, datasets.Dataset]:
    """The ``splits`` of the folder by name, each checked: present, ``columns`` there, not empty, labels valid.

    ``when_empty`` ends the message of an empty split (what the calling stage needed its rows for).
    """
    dataset_dir = Path(dataset_dir)
    dd = open_dataset_dict(dataset_dir, splits)
    out: dict[str, datasets.Dataset] = {}
    for split in splits:
        if split not in dd:
            raise ValueError(
                f"{dataset_dir}: split {split!r} is missing; found {', '.join(dd.keys()) or 'none'}"
            )
        ds = dd[split]
        schema.require_columns(ds.column_names, tuple(columns), f"{dataset_dir} split {split!r}")
        if len(ds) == 0:
            raise ValueError(f"{dataset_dir}: split {split!r} is empty; {when_empty}")
        check_labels(ds, f"{dataset_dir} split {split!r}")
        out[split] = ds
    return out


def check_labels(ds: datasets.Dataset, where: str, num_classes: int = schema.NUM_CLASSES) -> np.ndarray:
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
