"""Where the images come from: an IDX folder or a Hugging Face Hub data set.

A source is named by one string:

- a folder path (default: Debian's ``/usr/share/datasets/fashion-mnist``) holding
  ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``;
- ``hf:<name>`` (e.g. ``hf:zalando-datasets/fashion_mnist``): a Hub image-classification
  data set with an image and a label column, loaded with ``datasets.load_dataset``
  (Parquet / Arrow only: nothing is unpickled, no loading script is run).

Both give two parts, ``train`` (training and validation rows come from it) and
``test`` (production rows), as greyscale uint8 arrays.  Rows that cannot be used
(a label outside the 10 classes, an image of another size) are counted and kept
aside in :attr:`SourcePart.rejected`, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from components.common import schema
from components.data.idx import IdxError, read_idx_part

HUB_PREFIX = "hf:"
PARTS: tuple[str, ...] = ("train", "test")


class SourceError(ValueError):
    """A source that cannot be read or does not have the expected shape."""


@dataclass
class SourcePart:
    """One part of a source: images (N, H, W) uint8, labels (N,) int64, and where row i came from."""

    name: str  # "train" or "test": the prefix of image_id
    images: np.ndarray
    labels: np.ndarray
    index: np.ndarray  # index of each kept row in the source part
    origin: str  # file or Hub split, for messages and the data card
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (source index, reason)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Source:
    """A source read into memory: its description and its two parts."""

    description: str
    train: SourcePart
    test: SourcePart


def _keep_valid_labels(name: str, images: np.ndarray, labels: np.ndarray, origin: str) -> SourcePart:
    labels = labels.astype(np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= schema.NUM_CLASSES))
    rejected = [(int(i), f"label {int(labels[i])} outside 0..{schema.NUM_CLASSES - 1}") for i in bad]
    keep = np.setdiff1d(np.arange(len(labels)), bad)
    return SourcePart(name, images[keep], labels[keep], keep, origin, rejected)


def load_idx_folder(folder: str | Path) -> Source:
    """Read an IDX folder's train and test parts (a SourceError naming the file that is wrong)."""
    folder = Path(folder)
    parts = {}
    for part in PARTS:
        try:
            p = read_idx_part(folder, part)
        except IdxError as exc:
            raise SourceError(str(exc)) from None
        parts[part] = _keep_valid_labels(part, p.images, p.labels, str(p.images_file))
    return Source(f"IDX folder {folder}", parts["train"], parts["test"])


def _to_grey(image, where: str) -> np.ndarray:
    from PIL import Image

    if isinstance(image, np.ndarray):
        arr = image
    elif isinstance(image, Image.Image):
        arr = np.asarray(image.convert("L"))
    else:
        raise SourceError(f"{where}: image of type {type(image).__name__}; expected a PIL image or an array")
    if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
        arr = np.asarray(Image.fromarray(arr.astype(np.uint8)).convert("L"))
    if arr.ndim != 2:
        raise SourceError(f"{where}: image of shape {arr.shape}; expected a 2-D greyscale image")
    return arr.astype(np.uint8)


def hub_part(
    split,
    name: str,
    image_column: str = "image",
    label_column: str = "label",
    origin: str = "",
) -> SourcePart:
    """Map one loaded ``datasets.Dataset`` split to a :class:`SourcePart`.

    The label column must hold class indices 0..9 in Fashion-MNIST order; images of a
    size other than the first row's are kept aside.
    """
    origin = origin or f"Hub split {name}"
    for column in (image_column, label_column):
        if column not in split.column_names:
            raise SourceError(
                f"{origin}: no column {column!r}; expected an image column and a label column "
                f"(columns present: {', '.join(split.column_names)})"
            )
    features = split.features
    label_feature = features[label_column]
    num_classes = getattr(label_feature, "num_classes", None)
    if num_classes is not None and num_classes != schema.NUM_CLASSES:
        raise SourceError(
            f"{origin}: column {label_column!r} has {num_classes} classes; "
            f"expected {schema.NUM_CLASSES} in the order {', '.join(schema.CLASS_NAMES)}"
        )
    labels = np.asarray(split[label_column], dtype=np.int64)
    images: list[np.ndarray] = []
    keep: list[int] = []
    rejected: list[tuple[int, str]] = []
    shape = None
    for i, image in enumerate(tqdm(split[image_column], desc=f"read {origin}", unit="img", leave=False)):
        if not 0 <= labels[i] < schema.NUM_CLASSES:
            rejected.append((i, f"label {int(labels[i])} outside 0..{schema.NUM_CLASSES - 1}"))
            continue
        if image is None:
            rejected.append((i, "no image"))
            continue
        arr = _to_grey(image, f"{origin} row {i} column {image_column!r}")
        if shape is None:
            shape = arr.shape
        if arr.shape != shape:
            rejected.append((i, f"image {arr.shape[1]}x{arr.shape[0]}, expected {shape[1]}x{shape[0]}"))
            continue
        images.append(arr)
        keep.append(i)
    if not images:
        raise SourceError(f"{origin}: no usable rows (of {len(labels)}); expected images with labels 0..9")
    index = np.asarray(keep, dtype=np.int64)
    return SourcePart(name, np.stack(images), labels[index], index, origin, rejected)


def source_from_hub(
    dataset_dict,
    name: str = "local",
    image_column: str = "image",
    label_column: str = "label",
    train_split: str = "train",
    test_split: str = "test",
) -> Source:
    """Map an already-loaded ``datasets.DatasetDict`` (train and test splits) to a :class:`Source`."""
    parts = {}
    for part, split_name in (("train", train_split), ("test", test_split)):
        if split_name not in dataset_dict:
            raise SourceError(
                f"Hub data set {name}: no split {split_name!r}; expected it among "
                f"{', '.join(dataset_dict)} (set hub_{part}_split)"
            )
        parts[part] = hub_part(
            dataset_dict[split_name], part, image_column, label_column, f"Hub {name} split {split_name}"
        )
    return Source(f"Hugging Face Hub data set {name}", parts["train"], parts["test"])


def load_hub(name: str):
    """``datasets.load_dataset(name)``, with a clear error when it is unknown or unreachable."""
    import datasets

    try:
        loaded = datasets.load_dataset(name)
    except Exception as exc:  # any failure here means: this name cannot be used as a source
        raise SourceError(
            f"Hub data set {name!r} could not be loaded ({type(exc).__name__}: {exc}); expected the name "
            "of a reachable image-classification data set such as zalando-datasets/fashion_mnist"
        ) from exc
    if not isinstance(loaded, datasets.DatasetDict):
        raise SourceError(f"Hub data set {name!r}: loaded a {type(loaded).__name__}; expected splits")
    return loaded


def load_source(
    source: str,
    image_column: str = "image",
    label_column: str = "label",
    train_split: str = "train",
    test_split: str = "test",
) -> Source:
    """Read the source named by ``source`` (a folder, or ``hf:<name>``)."""
    if source.startswith(HUB_PREFIX):
        name = source[len(HUB_PREFIX) :]
        if not name:
            raise SourceError(
                f"source {source!r}: expected hf:<name>, e.g. hf:zalando-datasets/fashion_mnist"
            )
        return source_from_hub(load_hub(name), name, image_column, label_column, train_split, test_split)
    return load_idx_folder(source)
