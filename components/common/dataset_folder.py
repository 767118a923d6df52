"""Opening the data stage's folder (a ``datasets.DatasetDict`` saved with ``save_to_disk``) and its splits.

train and embed both read it: :func:`load_splits` checks that the splits a stage needs are there,
non-empty, with the columns it reads and labels inside the class range, and names the folder, the
split and the first bad rows when they are not. :func:`dataset_fingerprint` identifies a folder's
splits (a train checkpoint resumes only on the data it was trained on) and
:func:`undecodable_images` lists the rows whose image does not decode.
"""

from __future__ import annotations

import hashlib
import io
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
    dataset_dir: str | Path,
    splits: Sequence[str],
    columns: Sequence[str],
    when_empty: str,
    unlabelled_splits: Sequence[str] = (),
) -> dict[str, datasets.Dataset]:
    """The ``splits`` of the folder by name, each checked: present, ``columns`` there, not empty, labels valid.

    ``when_empty`` ends the message of an empty split (what the calling stage needed its rows for).
    ``unlabelled_splits``: the splits whose rows may hold ``schema.NO_LABEL`` (-1, "no label yet",
    as the ingest stage writes for production); everywhere else every label must be a class index.
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
        check_labels(ds, f"{dataset_dir} split {split!r}", allow_no_label=split in unlabelled_splits)
        out[split] = ds
    return out


def check_labels(
    ds: datasets.Dataset, where: str, num_classes: int = schema.NUM_CLASSES, allow_no_label: bool = False
) -> np.ndarray:
    """Labels as int64; a ValueError naming the first rows whose label is outside 0..num_classes-1.

    ``allow_no_label``: ``schema.NO_LABEL`` (-1, "no label yet") is accepted too (production rows of
    an ingested batch); without it a -1 is refused with a message saying where it is allowed.
    """
    column = ds.data.column(C.LABEL)
    if ds._indices is not None:  # a selected / shuffled view
        labels = np.asarray(ds.with_format("numpy", columns=[C.LABEL])[C.LABEL])
    elif column.null_count:  # a null label is no class index either: shown as -2, never accepted
        labels = np.asarray(column.fill_null(-2).to_numpy(zero_copy_only=False))
    else:
        labels = np.asarray(column.to_numpy(zero_copy_only=False))
    labels = labels.astype(np.int64, copy=False)
    outside = (labels < 0) | (labels >= num_classes)
    if allow_no_label:
        outside &= labels != schema.NO_LABEL
    bad = np.flatnonzero(outside)
    if bad.size:
        first = ", ".join(f"row {i} = {labels[i]}" for i in bad[:5])
        allowed = f"0..{num_classes - 1}" + (
            f" or {schema.NO_LABEL} (no label yet)" if allow_no_label else ""
        )
        hint = (
            f"; {schema.NO_LABEL} (no label yet) is allowed in production rows only"
            if not allow_no_label and bool((labels[bad] == schema.NO_LABEL).any())
            else ""
        )
        raise ValueError(
            f"{where}: {bad.size} label(s) outside {allowed} ({first}); "
            f"column {C.LABEL!r} must hold class indices of {schema.CLASS_NAMES}{hint}"
        )
    return labels


def dataset_fingerprint(dataset_dir: str | Path, splits: Sequence[str]) -> str:
    """A short sha256 that identifies the ``splits`` of a ``save_to_disk`` folder.

    Per split (in the order given): its name, the ``_fingerprint`` of its ``state.json`` (the data
    stage derives it from the content; ``datasets`` from the data and the transforms applied) and
    the name and size of each data file. Modification times are left out on purpose: a KFP retry
    downloads the same artifact again (new times, same data) and must still match. Another data
    set, or the same one rebuilt with other parameters, gives another fingerprint.
    """
    dataset_dir = Path(dataset_dir)
    h = hashlib.sha256()
    for split in splits:
        folder = dataset_dir / split
        state_file = folder / "state.json"
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{dataset_dir}: split {split!r} has no readable state.json ({e})") from e
        files = [str(f.get("filename", "")) for f in state.get("_data_files") or []]
        h.update(f"split={split}\nfingerprint={state.get('_fingerprint', '')}\n".encode())
        for name in files:
            size = (folder / name).stat().st_size if (folder / name).is_file() else -1
            h.update(f"file={name} size={size}\n".encode())
    return h.hexdigest()[:16]


def undecodable_images(ds: datasets.Dataset, split: str, batch_rows: int = 4096) -> list[dict[str, object]]:
    """The rows of ``ds`` whose image does not decode (PIL, the decoder train uses), in row order.

    Each is ``{"image_id", "split", "row", "error"}``, the shape of embed's failures file
    (``image_id`` is None when the split has no such column). Reads the encoded bytes batch by batch
    (about 30 us per 28x28 PNG: 2 s for 70,000 rows on one core).
    """
    from PIL import Image

    arrow = ds.with_format("arrow")
    has_ids = C.IMAGE_ID in ds.column_names
    failures: list[dict[str, object]] = []
    for start in range(0, len(ds), batch_rows):
        table = arrow[start : start + batch_rows]
        images = table.column(C.IMAGE).combine_chunks()
        data = images.field("bytes").to_pylist()
        has_path = images.type.get_field_index("path") >= 0
        paths = images.field("path").to_pylist() if has_path else [None] * len(data)
        ids = table.column(C.IMAGE_ID).to_pylist() if has_ids else [None] * len(data)
        for i, (raw, path) in enumerate(zip(data, paths, strict=True)):
            try:
                if raw is None and not path:
                    raise ValueError("the image has neither bytes nor a path")
                with Image.open(io.BytesIO(raw) if raw is not None else path) as img:
                    img.load()
            except Exception as e:  # noqa: BLE001 - any decoder error makes this row a failure
                failures.append(
                    {
                        "image_id": ids[i],
                        "split": split,
                        "row": start + i,
                        "error": f"{type(e).__name__}: {e}",
                    }
                )
    return failures
