"""The ingest stage's parameters: one typed Config, the source of its command line and component.

A light module (stdlib and ``components.common`` only): compiling a pipeline or ``--help`` does
not import pyarrow, Pillow or datasets.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.common.config import param

# What source_uri holds.
KIND_AUTO = "auto"
KIND_IMAGES = "images"  # a folder or bucket prefix of image files
KIND_MANIFEST = "manifest"  # a CSV / JSON Lines / Parquet file, one row per prediction
KIND_DATASET = "dataset"  # a data-stage folder (DatasetDict saved with save_to_disk), copied unchanged
SOURCE_KINDS: tuple[str, ...] = (KIND_AUTO, KIND_IMAGES, KIND_MANIFEST, KIND_DATASET)

# Where a row's time comes from when the manifest has no timestamp column (or there is no manifest).
TIME_MTIME = "mtime"  # the image object's modification time
TIME_NOW = "now"  # the time of the ingest run
TIME_NONE = "none"  # refuse: a timestamp is required
TIME_FALLBACKS: tuple[str, ...] = (TIME_MTIME, TIME_NOW, TIME_NONE)


@dataclass(frozen=True)
class IngestConfig:
    """Where a production batch is and how its manifest is read (output paths are arguments)."""

    source_uri: str = param(
        help="the production batch: a folder or bucket prefix of image files (PNG, JPEG, WebP), "
        "a manifest (.csv, .jsonl, .parquet; local, gs://, s3://, minio://), or a data-stage folder"
    )
    source_kind: str = param(
        KIND_AUTO,
        "what source_uri is: 'auto' (a .csv/.jsonl/.json/.ndjson/.parquet file is a manifest; a folder "
        "with dataset_dict.json is a data-stage folder; a folder with manifest.csv|jsonl|parquet is read "
        "through that manifest; any other folder is a folder of images), or images, manifest, dataset",
        choices=SOURCE_KINDS,
    )
    location_column: str = param(
        "image_uri",
        "manifest column with each image's location: a path relative to the manifest, an absolute "
        "path, gs://, s3://, minio://, or http(s)://",
    )
    timestamp_column: str = param(
        "timestamp",
        "manifest column with the prediction time: ISO 8601 (no offset = UTC) or Unix seconds; "
        "when the manifest has no such column, time_fallback applies",
    )
    prediction_id_column: str = param(
        "prediction_id",
        "manifest column with the serving system's prediction id (optional; it becomes image_id; "
        "without it image_id is a hash of the location)",
    )
    label_column: str = param(
        "label",
        "manifest column with the actual label, a class name or index (optional; empty = no label "
        "yet, stored as -1)",
    )
    served_label_column: str = param(
        "prediction_label",
        "manifest column with the class the serving system predicted, name or index (optional)",
    )
    served_score_column: str = param(
        "prediction_score",
        "manifest column with the score the serving system gave its prediction, in [0, 1] (optional)",
    )
    max_image_bytes: int = param(
        20_000_000, "image files larger than this many bytes are kept aside as too_large"
    )
    max_image_side: int = param(
        1024,
        "images whose longer side exceeds this many pixels are shrunk to it (aspect kept); 0 = keep "
        "every image at its size",
    )
    time_fallback: str = param(
        TIME_MTIME,
        "the time of rows without a timestamp column: 'mtime' (the image object's modification time), "
        "'now' (the ingest run's time) or 'none' (refuse the batch)",
        choices=TIME_FALLBACKS,
    )
    read_workers: int = param(8, "threads reading and converting images", component=False)
    chunk_rows: int = param(512, "rows converted and written per chunk (bounds memory)", component=False)

    def __post_init__(self) -> None:
        if not self.source_uri.strip():
            raise ValueError(
                "source_uri is empty: give the folder, manifest or data-stage folder of the batch"
            )
        if self.source_kind not in SOURCE_KINDS:
            raise ValueError(f"source_kind={self.source_kind!r}: expected one of {', '.join(SOURCE_KINDS)}")
        if self.time_fallback not in TIME_FALLBACKS:
            raise ValueError(
                f"time_fallback={self.time_fallback!r}: expected one of {', '.join(TIME_FALLBACKS)}"
            )
        if not self.location_column.strip():
            raise ValueError("location_column is empty: name the manifest column with the image locations")
        if self.max_image_bytes < 1:
            raise ValueError(f"max_image_bytes={self.max_image_bytes}: expected a positive number of bytes")
        if self.max_image_side < 0:
            raise ValueError(f"max_image_side={self.max_image_side}: expected 0 (keep sizes) or more pixels")
        if self.read_workers < 1:
            raise ValueError(f"read_workers={self.read_workers}: expected at least 1")
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows={self.chunk_rows}: expected a positive number of rows")
