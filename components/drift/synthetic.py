"""Small prepared folders built from the column contract, for tests, demos and benchmarks.

Embeddings are class clusters in ``dim`` dimensions; "degraded" production rows are
moved off their cluster and get flatter softmax outputs, like rotated or blurred images.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.common import schema

C = schema.PreparedColumns


def _png(rng: np.random.Generator, label: int) -> bytes:
    from PIL import Image

    img = np.zeros((28, 28), dtype=np.uint8)
    img[4 + label : 24, 6:22] = 80 + 15 * label
    img = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def make_rows(
    rng: np.random.Generator,
    n: int,
    start: pd.Timestamp,
    span: pd.Timedelta,
    dim: int = 16,
    shift: float = 0.0,
    degradation: str = schema.DEGRADATION_NONE,
    image_dir: Path | None = None,
    prefix: str = "x",
    centres: np.ndarray | None = None,
) -> pd.DataFrame:
    """``n`` prepared rows with timestamps spread over ``[start, start + span)``."""
    k = schema.NUM_CLASSES
    if centres is None:
        centres = np.random.default_rng(12345).normal(0.0, 3.0, size=(k, dim))
    labels = rng.integers(0, k, n)
    vec = centres[labels] + rng.normal(0.0, 1.0, size=(n, dim))
    if shift:
        vec = vec + shift * np.random.default_rng(999).normal(size=dim) / np.sqrt(dim) * 3
        vec[:, : dim // 2] *= 1.0 + 0.3 * shift
    d2 = ((vec[:, None, :] - centres[None]) ** 2).sum(-1)
    logits = -d2 / (2.0 + 4.0 * shift)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    pred = p.argmax(1)
    ts = (start + pd.to_timedelta(np.sort(rng.uniform(0, span.total_seconds(), n)), unit="s")).floor("us")
    ids = [f"{prefix}-{i}" for i in range(n)]
    links = [""] * n
    if image_dir is not None:
        image_dir.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            path = image_dir / f"{ids[i]}.png"
            path.write_bytes(_png(rng, int(labels[i])))
            links[i] = str(path)
    return pd.DataFrame(
        {
            C.PREDICTION_ID: ids,
            C.PREDICTION_TS: ts,
            C.PREDICTION_LABEL: [schema.CLASS_NAMES[i] for i in pred],
            C.ACTUAL_LABEL: [schema.CLASS_NAMES[i] for i in labels],
            C.PREDICTION_SCORE: p.max(1).astype(np.float32),
            C.IMAGE_VECTOR: list(vec.astype(np.float32)),
            C.IMAGE_LINK: links,
            C.PROBABILITIES: list(p.astype(np.float32)),
            C.IMAGE_ID: ids,
            C.DEGRADATION: degradation,
            C.BRIGHTNESS: rng.uniform(0.2, 0.4, n).astype(np.float32),
            C.CONTRAST: rng.uniform(0.2, 0.4, n).astype(np.float32),
            C.SHARPNESS: rng.uniform(0.0, 1.0, n).astype(np.float32) / (1.0 + shift),
        }
    )


def write_table(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, schema=schema.PREPARED_ARROW_SCHEMA, preserve_index=False), path)
    return path


def write_prepared(
    folder: Path,
    seed: int = 0,
    dim: int = 16,
    n_train: int = 1500,
    n_validation: int = 600,
    days: int = 10,
    per_day: int = 120,
    drift_days: tuple[int, ...] = (6, 7),
    shift: float = 1.0,
    images: bool = True,
    end: pd.Timestamp | None = None,
) -> Path:
    """A prepare-stage folder: training, validation and ``days`` daily production windows."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    end = end or pd.Timestamp("2026-11-28", tz="UTC")
    start = end - pd.Timedelta(days=days)
    img_dir = folder / "images" if images else None
    write_table(
        make_rows(
            rng,
            n_train,
            start - pd.Timedelta(days=60),
            pd.Timedelta(days=30),
            dim,
            prefix="tr",
            image_dir=img_dir,
        ),
        folder / schema.prepared_file(schema.TRAINING),
    )
    write_table(
        make_rows(rng, n_validation, start - pd.Timedelta(days=30), pd.Timedelta(days=5), dim, prefix="va"),
        folder / schema.prepared_file(schema.VALIDATION),
    )
    parts = []
    for d in range(days):
        drifted = d in drift_days
        parts.append(
            make_rows(
                rng,
                per_day,
                start + pd.Timedelta(days=d),
                pd.Timedelta(hours=23),
                dim,
                shift=shift if drifted else 0.0,
                degradation=schema.DEGRADATION_BLUR if drifted else schema.DEGRADATION_NONE,
                image_dir=img_dir,
                prefix=f"p{d}",
            )
        )
    write_table(pd.concat(parts, ignore_index=True), folder / schema.prepared_file(schema.PRODUCTION))
    return folder
