"""Small synthetic inputs of the prepare stage (embed output folders, a DatasetDict) for tests and demos.

The vectors are random (a local ``np.random.default_rng(seed)``); the images are the
ones given (e.g. real Fashion-MNIST read by :func:`read_idx_images`) or random noise.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.common import schema
from components.common.schema import DatasetColumns as D
from components.common.schema import EmbedColumns as E


def read_idx_images(path: str | Path, count: int) -> np.ndarray:
    """The first ``count`` images of a gzipped IDX3 file (Fashion-MNIST), shape (count, 28, 28)."""
    with gzip.open(path, "rb") as f:
        header = f.read(16)
        n, rows, cols = (int.from_bytes(header[i : i + 4], "big") for i in (4, 8, 12))
        count = min(count, n)
        data = f.read(count * rows * cols)
    return np.frombuffer(data, dtype=np.uint8).reshape(count, rows, cols)


def image_ids(split: str, count: int) -> list[str]:
    return [f"{split}-{i:05d}" for i in range(count)]


def embed_table(
    split: str,
    count: int,
    dim: int = 16,
    seed: int = 0,
    model_version: str = "v-test",
    newest: datetime = datetime(2024, 3, 1, tzinfo=UTC),
    spacing: timedelta = timedelta(minutes=7),
) -> pa.Table:
    """``count`` embed rows of one split, timestamps ``spacing`` apart ending at ``newest``."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(schema.NUM_CLASSES), size=count).astype(np.float32)
    ts = [newest - spacing * (count - 1 - i) for i in range(count)]
    return pa.table(
        {
            E.IMAGE_ID: image_ids(split, count),
            E.SPLIT: [split] * count,
            E.LABEL: rng.integers(0, schema.NUM_CLASSES, count),
            E.PREDICTION: probs.argmax(axis=1).astype(np.int64),
            E.PREDICTION_SCORE: probs.max(axis=1),
            E.PROBABILITIES: list(probs),
            E.EMBEDDING: list(rng.normal(size=(count, dim)).astype(np.float32)),
            E.PREDICTION_TS: ts,
            E.DEGRADATION: [schema.DEGRADATION_NONE] * count,
            E.MODEL_VERSION: [model_version] * count,
            E.BRIGHTNESS: rng.random(count, dtype=np.float32),
            E.CONTRAST: rng.random(count, dtype=np.float32),
            E.SHARPNESS: rng.random(count, dtype=np.float32),
        },
        schema=schema.EMBED_ARROW_SCHEMA,
    )


def write_embed_dir(folder: str | Path, table: pa.Table, failures: pa.Table | None = None) -> Path:
    """An embed output folder holding ``table`` (and an empty or given failures file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / schema.EMBED_FILE)
    if failures is None:
        failures = pa.table({E.IMAGE_ID: pa.array([], pa.string()), E.SPLIT: pa.array([], pa.string())})
    pq.write_table(failures, folder / schema.EMBED_FAILURES_FILE)
    return folder


def write_dataset(
    folder: str | Path, counts: dict[str, int], images: np.ndarray | None = None, seed: int = 0
) -> Path:
    """A DatasetDict folder with ``counts[split]`` rows per split and the image IDs of :func:`image_ids`."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(seed)
    total = sum(counts.values())
    if images is None:
        images = rng.integers(0, 256, size=(total, 28, 28), dtype=np.uint8)
    features = datasets.Features(
        {
            D.IMAGE: datasets.Image(),
            D.LABEL: datasets.ClassLabel(names=list(schema.CLASS_NAMES)),
            D.PREDICTION_TS: datasets.Value("timestamp[us, tz=UTC]"),
            D.IMAGE_ID: datasets.Value("string"),
            D.URL: datasets.Value("string"),
            D.DEGRADATION: datasets.Value("string"),
        }
    )
    splits, start = {}, 0
    for split, count in counts.items():
        imgs = [Image.fromarray(images[(start + i) % len(images)]) for i in range(count)]
        start += count
        splits[split] = datasets.Dataset.from_dict(
            {
                D.IMAGE: imgs,
                D.LABEL: rng.integers(0, schema.NUM_CLASSES, count).tolist(),
                D.PREDICTION_TS: [datetime(2024, 1, 1, tzinfo=UTC)] * count,
                D.IMAGE_ID: image_ids(split, count),
                D.URL: [""] * count,
                D.DEGRADATION: [schema.DEGRADATION_NONE] * count,
            },
            features=features,
        )
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return Path(folder)


def embed_table_for(
    dataset_dir: str | Path, split: str, dim: int = 16, seed: int = 0, model_version: str = "v-test"
):
    """Embed rows for one split of a real data-stage folder: its image IDs, labels, timestamps and
    degradations, with random predictions and vectors (what the embed stage would add)."""
    import datasets

    ds = datasets.load_from_disk(str(dataset_dir))[split].with_format("arrow")
    table = embed_table(split, len(ds), dim=dim, seed=seed, model_version=model_version)
    for name, column in (
        (E.IMAGE_ID, ds[D.IMAGE_ID]),
        (E.LABEL, ds[D.LABEL].cast(pa.int64())),
        (E.PREDICTION_TS, ds[D.PREDICTION_TS].cast(schema.TIMESTAMP_TYPE)),
        (E.DEGRADATION, ds[D.DEGRADATION]),
    ):
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table
