"""Prepare monitoring records: embed output -> one Parquet table per Arize environment.

Reads every embed output folder in chunks (``pyarrow`` record batches), so a table larger than
memory goes through. :func:`prepare_records` runs four named steps:

1. **scan** (:func:`scan_embeds`): a pass over the light columns (split, timestamp, model version,
   vector length);
2. **validate** (:func:`validate_scan`): one model version, the vector length most rows have, the
   newest production timestamp (the anchor of the time shift): a :class:`Plan`;
3. **export** (:func:`export_rows`): the conversion, chunk by chunk: rows that cannot be used are
   kept aside in ``rejected.parquet`` with a reason, the rest go to ``<environment>.parquet`` and
   their images (PNG bytes) to ``images-<environment>.parquet`` (still hidden temporary files); with
   an ``image_store`` each image is also uploaded there, in parallel, and linked from the row;
4. **write** (:func:`write_prepared`): the tables renamed into place, then ``manifest.json``.

The artifact is a handful of files whatever the row count (the KFP launcher moves an artifact's files
one request at a time): without an image store no per-image file is written and ``image_link`` is
null (Arize logs the embedding vector without a link; the drift report reads the images from the
artifact).

Production rows without a label yet (``label`` = ``schema.NO_LABEL``) get a null ``actual_label``
(Arize logs the prediction alone; its validation refuses that outside production, and so does
prepare). When an embed file carries what the serving system logged (``EmbedColumns.SERVED``), every
table gets ``schema.PREPARED_SERVED_ARROW_SCHEMA``: ``prediction_label`` / ``prediction_score`` are the
served ones where a row has a served label, embed's own prediction stays beside them in
``model_prediction_label`` / ``model_prediction_score``, ``prediction_source`` says which, a given
prediction id replaces the derived one (recorded in the manifest, which arize checks), and the
disagreement between served and model predictions is reported.

See ``components/prepare/README.md``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common import files, schema, storage
from components.common.parquet import iter_parquet, open_parquet
from components.common.schema import EmbedColumns as E
from components.common.schema import PreparedColumns as P
from components.prepare.config import PrepareConfig, parse_now

__all__ = [
    "EmbedInputs",
    "EmbedScan",
    "Exported",
    "ImageIndex",
    "ImageTarget",
    "Plan",
    "PrepareConfig",
    "PrepareResult",
    "PreparedTables",
    "export_rows",
    "open_embeds",
    "parse_now",
    "prepare_records",
    "read_manifest",
    "scan_embeds",
    "validate_scan",
    "write_prepared",
]

log = logging.getLogger(__name__)

# Arize accepts embedding vectors of 2 to 20,000 values.
MIN_VECTOR_LEN, MAX_VECTOR_LEN = 2, 20_000
# Arize accepts prediction IDs of 1 to 512 characters (arize.constants.ml.MAX_PREDICTION_ID_LEN).
MAX_PREDICTION_ID_LEN = 512
# Most frequent (served, model) class pairs of disagreement listed in the summary and the manifest.
TOP_DISAGREEMENTS = 10

REJECTED_ARROW_SCHEMA = pa.schema(
    [
        (E.IMAGE_ID, pa.string()),
        (E.SPLIT, pa.string()),
        ("source", pa.string()),  # embed Parquet file the row came from
        ("row", pa.int64()),  # row number inside that file (-1: from the embed failures file)
        ("reason", pa.string()),
    ]
)

_SCAN_COLUMNS = (E.SPLIT, E.PREDICTION_TS, E.MODEL_VERSION, E.EMBEDDING)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class PrepareResult:
    """What a prepare run wrote; also the content of ``manifest.json``."""

    output_dir: str
    model_version: str
    rows: dict[str, int]
    rejected: int
    rejected_reasons: dict[str, int]
    embed_failures: int
    time_shift_seconds: float
    anchor: str  # the newest production timestamp before the shift (ISO 8601)
    anchor_environment: str
    now: str
    vector_length: int
    image_store: str
    chunk_rows: int
    sources: list[str] = field(default_factory=list)
    # env -> {"labelled": rows, "unlabelled": rows (actual_label null: no label yet)}
    labels: dict[str, dict[str, int]] = field(default_factory=dict)
    # what served_summary() returns; {} when no embed input carries served predictions
    served: dict = field(default_factory=dict)
    # env -> {"rows": n, "sha256": digest}: the rows whose prediction_id was given, not derived (arize checks)
    given_prediction_ids: dict[str, dict] = field(default_factory=dict)
    # the kind of image_link logged: {"kind": url|signed|public|uri|none, "expiry_seconds", "expires", "text"}
    image_links: dict = field(default_factory=dict)
    # env -> rows of its images file (schema.prepared_images_file): the images inside the artifact
    images: dict[str, int] = field(default_factory=dict)

    def manifest(self) -> dict:
        """The content of ``manifest.json``."""
        return {
            "model_version": self.model_version,
            "rows": self.rows,
            "rejected": self.rejected,
            "rejected_reasons": self.rejected_reasons,
            "embed_failures": self.embed_failures,
            "time_shift_seconds": self.time_shift_seconds,
            "anchor": self.anchor,
            "anchor_environment": self.anchor_environment,
            "now": self.now,
            "vector_length": self.vector_length,
            "image_store": self.image_store,
            "chunk_rows": self.chunk_rows,
            "sources": self.sources,
            "files": {env: schema.prepared_file(env) for env in self.rows},
            "image_files": {env: schema.prepared_images_file(env) for env in self.images},
            "labels": self.labels,
            "served_predictions": self.served,
            "given_prediction_ids": self.given_prediction_ids,
            "image_links": self.image_links,
        }

    def summary_markdown(self) -> str:
        """The Markdown summary the KFP UI shows: rows per environment, rows kept aside, time shift."""
        lines = [
            "# Prepared monitoring records",
            "",
            f"Model version `{self.model_version}`, embedding vectors of {self.vector_length} values.",
            "",
            "| environment | rows |",
            "|---|---:|",
            *(f"| {env} | {n} |" for env, n in self.rows.items()),
            f"| rejected (kept aside in `{schema.PREPARED_REJECTED_FILE}`) | {self.rejected} |",
            "",
            f"Timestamps shifted by {timedelta(seconds=self.time_shift_seconds)} "
            f"({self.time_shift_seconds:.0f} s): the newest {self.anchor_environment} timestamp "
            f"{self.anchor} is now {self.now}.",
            "",
            "Images (PNG) inside the artifact, one file per environment: "
            + ", ".join(f"`{schema.prepared_images_file(env)}`" for env in self.images)
            + "."
            + (
                f" Each image also written under `{self.image_store}` (the links Arize opens)."
                if self.image_store
                else f" No image store (`image_store=''`): `{P.IMAGE_LINK}` is null, Arize logs the "
                "embedding vector without a link; give image_store to get links."
            ),
        ]
        if self.image_links:
            lines += ["", f"Image links (`{P.IMAGE_LINK}`): {self.image_links['text']}."]
        if self.rejected_reasons:
            lines += ["", "| reason rows were kept aside | rows |", "|---|---:|"]
            lines += [f"| {r} | {n} |" for r, n in sorted(self.rejected_reasons.items())]
        if self.embed_failures:
            lines += ["", f"{self.embed_failures} image(s) had already failed in the embed stage."]
        unlabelled = {env: n["unlabelled"] for env, n in self.labels.items() if n.get("unlabelled")}
        if unlabelled:
            lines += [
                "",
                "Rows without a label yet (logged to Arize with the prediction only, "
                f"`{P.ACTUAL_LABEL}` null): "
                + ", ".join(
                    f"{env} {n} of {self.labels[env]['labelled'] + n}" for env, n in unlabelled.items()
                )
                + ".",
            ]
        if self.served:
            lines += ["", "## Served predictions", "", served_sentence(self.served)]
            if self.served.get("without_score"):
                lines += [
                    "",
                    f"{self.served['without_score']} row(s) have a served label without a score: "
                    f"their `{P.PREDICTION_SCORE}` is null.",
                ]
            if self.served.get("top_disagreements"):
                lines += ["", "| served | registered model | rows |", "|---|---|---:|"]
                lines += [
                    f"| {d['served']} | {d['model']} | {d['rows']} |"
                    for d in self.served["top_disagreements"]
                ]
        given = sum(g["rows"] for g in self.given_prediction_ids.values())
        if given:
            lines += [
                "",
                f"{given} row(s) keep the prediction id the serving system gave (the others derive it "
                "from the model version and the image id).",
            ]
        return "\n".join(lines) + "\n"


def served_sentence(served: dict) -> str:
    """One sentence on how often the served and the registered model's predictions differ."""
    rows, disagree = int(served.get("rows", 0)), int(served.get("disagree", 0))
    if not rows:
        return "No row has a served prediction: every prediction is the registered model's."
    if not disagree:
        return f"Served and registered model agree on all {rows} rows with a served prediction."
    return (
        f"Served and registered model disagree on {disagree / rows:.1%} of rows ({disagree} of {rows} "
        "with a served prediction): serving may run another model."
    )


def prepare_records(
    embed_dirs: list[str | Path],
    dataset_dir: str | Path,
    output_dir: str | Path,
    config: PrepareConfig | None = None,
    *,
    progress: bool = True,
) -> PrepareResult:
    """Turn embed outputs into Arize-ready tables, one Parquet per environment.

    Args:
        embed_dirs: embed output folders (each holding ``schema.EMBED_FILE``), e.g. one per shard.
        dataset_dir: the data stage's ``DatasetDict`` folder, where the images are.
        output_dir: the prepared folder to write (created).
        config: image store, ``now``, chunk size, image threads (:class:`PrepareConfig`);
            None = the defaults.
        progress: show a progress bar.
    """
    config = config or PrepareConfig()
    now = parse_now(config.now)
    inputs = open_embeds(embed_dirs)
    plan = validate_scan(scan_embeds(inputs, config.chunk_rows), inputs, now)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for path in files.remove_stale_temporaries(out, recursive=True):
        log.info("removed %s, left by a run that was killed", path)
    target = ImageTarget.for_config(config)
    images = ImageIndex(dataset_dir)
    with PreparedTables(out, plan.arrow_schema) as tables:
        exported = export_rows(inputs, plan, images, target, tables, config, progress)
        return write_prepared(tables, exported, plan, inputs, target, config)


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class EmbedInputs:
    """The embed output folders and the Parquet file of each, its columns checked."""

    folders: list[Path]
    files: list[Path]
    served: list[tuple[str, ...]] = field(default_factory=list)  # per file: its EmbedColumns.SERVED columns

    @property
    def any_served(self) -> bool:
        """Whether any file carries served columns: then every table gets the served schema."""
        return any(self.served)

    def names(self) -> str:
        """The files, comma-separated, for messages."""
        return ", ".join(map(str, self.files))


def open_embeds(embed_dirs: list[str | Path]) -> EmbedInputs:
    """Find each folder's embed file and check its columns; a clear error when one is missing or wrong."""
    if not embed_dirs:
        raise ValueError("embed_dirs is empty: expected at least one embed output folder")
    folders = [Path(d) for d in embed_dirs]
    found = [_embed_file(d) for d in folders]
    served = [tuple(c for c in E.SERVED if c in _check_columns(path).names) for path in found]
    return EmbedInputs(folders, found, served)


def _embed_file(folder: str | Path) -> Path:
    path = Path(folder)
    if path.is_dir():
        path = path / schema.EMBED_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: embed output not found; expected a folder holding {schema.EMBED_FILE}"
        )
    return path


def _parse_timestamps(column: pa.Array, where: str) -> pa.Array:
    """Timestamps as timestamp[us, UTC]; values that cannot be parsed become null."""
    t = column.type
    if pa.types.is_timestamp(t):
        if t.tz is None:
            column = pc.assume_timezone(column, "UTC")
        return column.cast(schema.TIMESTAMP_TYPE)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        import pandas as pd

        parsed = pd.to_datetime(pd.Series(column.to_pylist(), dtype=object), errors="coerce", utc=True)
        return pa.array(parsed, type=schema.TIMESTAMP_TYPE, from_pandas=True)
    raise ValueError(
        f"{where}: column {E.PREDICTION_TS} has type {t}; expected timestamp[us, UTC] (or ISO-8601 strings)"
    )


def _check_columns(path: Path) -> pa.Schema:
    arrow_schema = open_parquet(path).schema_arrow
    schema.require_columns(arrow_schema.names, E.ALL, str(path))
    for name in (E.EMBEDDING, E.PROBABILITIES):
        t = arrow_schema.field(name).type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise ValueError(f"{path}: column {name} has type {t}; expected list<float32>")
    expected = {E.GIVEN_PREDICTION_ID: "string", E.SERVED_LABEL: "int64", E.SERVED_SCORE: "float32"}
    checks = {
        E.GIVEN_PREDICTION_ID: lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
        E.SERVED_LABEL: pa.types.is_integer,
        E.SERVED_SCORE: pa.types.is_floating,
    }
    for name, ok in checks.items():
        if name in arrow_schema.names and not (
            ok(arrow_schema.field(name).type) or pa.types.is_null(arrow_schema.field(name).type)
        ):
            raise ValueError(
                f"{path}: column {name} has type {arrow_schema.field(name).type}; expected {expected[name]}"
            )
    return arrow_schema


# ---------------------------------------------------------------- 1. scan


@dataclass(frozen=True)
class EmbedScan:
    """What the first pass over the embed files found."""

    rows: int
    newest: dict[str, datetime]  # the newest parseable timestamp of each split
    model_versions: Counter  # non-empty model version -> rows
    lengths: Counter  # vector length (> 0) -> rows


def scan_embeds(inputs: EmbedInputs, chunk_rows: int) -> EmbedScan:
    """Read the light columns (split, timestamp, model version, vector length) chunk by chunk."""
    rows = 0
    newest: dict[str, datetime] = {}
    versions: Counter = Counter()
    lengths: Counter = Counter()
    for path in inputs.files:
        for batch in iter_parquet(path, batch_size=chunk_rows, columns=list(_SCAN_COLUMNS)):
            rows += batch.num_rows
            split = batch.column(E.SPLIT)
            ts = _parse_timestamps(batch.column(E.PREDICTION_TS), str(path))
            for env in schema.SPLITS:
                mask = pc.and_(pc.fill_null(pc.equal(split, env), False), pc.is_valid(ts))
                top = pc.max(pc.filter(ts, mask)).as_py()
                if top is not None and (env not in newest or top > newest[env]):
                    newest[env] = top
            versions.update(v for v in batch.column(E.MODEL_VERSION).to_pylist() if v)
            n = pc.list_value_length(batch.column(E.EMBEDDING)).to_numpy(zero_copy_only=False)
            n = n[~np.isnan(n)] if n.dtype.kind == "f" else n
            lengths.update(int(k) for k in n if k > 0)
    return EmbedScan(rows, newest, versions, lengths)


# ---------------------------------------------------------------- 2. validate


@dataclass(frozen=True)
class Plan:
    """What the conversion needs, checked: the model version, the vector length, the time shift."""

    model_version: str
    vector_length: int
    anchor: datetime  # the newest timestamp of anchor_environment, before the shift
    anchor_environment: str
    now: datetime  # where the anchor is shifted to
    rows: int  # rows in the embed files
    served: bool = False  # an embed file carries served predictions: PREPARED_SERVED_ARROW_SCHEMA

    @property
    def arrow_schema(self) -> pa.Schema:
        """The schema of every prepared table of the run."""
        return schema.PREPARED_SERVED_ARROW_SCHEMA if self.served else schema.PREPARED_ARROW_SCHEMA

    @property
    def shift(self) -> timedelta:
        """The one offset added to every timestamp."""
        return self.now - self.anchor


def validate_scan(scan: EmbedScan, inputs: EmbedInputs, now: datetime) -> Plan:
    """Check what the scan found (rows, a timestamp, one model version, a vector length Arize accepts)."""
    where = inputs.names()
    if scan.rows == 0:
        raise ValueError(f"{where}: no rows; expected embed rows of at least one split")
    if schema.PRODUCTION in scan.newest:
        anchor_environment = schema.PRODUCTION
    elif scan.newest:
        anchor_environment = max(scan.newest, key=lambda env: scan.newest[env])
    else:
        raise ValueError(f"{where}: no row has a {E.PREDICTION_TS} that can be parsed")
    if len(scan.model_versions) != 1:
        found = ", ".join(repr(v) for v in scan.model_versions) or "none"
        raise ValueError(
            f"{where}: column {E.MODEL_VERSION} must hold one non-empty version "
            f"(prediction IDs derive from it); found {found}"
        )
    if not scan.lengths:
        raise ValueError(f"{where}: column {E.EMBEDDING} holds no vector")
    vector_length = scan.lengths.most_common(1)[0][0]
    if not MIN_VECTOR_LEN <= vector_length <= MAX_VECTOR_LEN:
        raise ValueError(
            f"{E.EMBEDDING}: vectors have {vector_length} values; Arize accepts {MIN_VECTOR_LEN} to {MAX_VECTOR_LEN}"
        )
    return Plan(
        model_version=next(iter(scan.model_versions)),
        vector_length=vector_length,
        anchor=scan.newest[anchor_environment],
        anchor_environment=anchor_environment,
        now=now,
        rows=scan.rows,
        served=inputs.any_served,
    )


# ---------------------------------------------------------------- 3. export


@dataclass(frozen=True)
class ImageTarget:
    """Where the per-image files go (only with an image store) and how rows link to them.

    ``store=""``: no per-image file is written and every ``image_link`` is null; the images are in
    the artifact's ``images-<environment>.parquet`` files either way.
    """

    store: str  # a folder or a gs:// / s3:// / minio:// prefix; "" = none (image_link null)
    # how records link to the images (storage.record_link); None: the plain link, as write_bytes gives it
    links: storage.StorageConfig | None = None

    @classmethod
    def for_config(cls, config: PrepareConfig) -> ImageTarget:
        """The target of ``config.image_store``, linked in the style of ``config.storage_config()``."""
        return cls.for_store(config.image_store, config.storage_config(), config.links)

    @classmethod
    def for_store(
        cls, image_store: str, links: storage.StorageConfig | None = None, asked_links: str = ""
    ) -> ImageTarget:
        """``image_store`` linked in the style ``links.links`` (url, signed, public, uri).

        Checked here, before any file is read: signed links need a bucket, public ones a
        ``link_base``; ``asked_links`` (the run's own ``links`` setting) without an image store is
        refused (there is nothing to link). A style from the environment alone is then ignored.
        """
        if not image_store:
            if asked_links:
                raise ValueError(
                    f"links={asked_links}: there is no image store to link (image_store=''): the images "
                    f"travel inside the prepared artifact ({schema.PREPARED_IMAGES_FILE_TEMPLATE}) and "
                    f"{P.IMAGE_LINK} is null; give image_store=<folder or gs://, s3://, minio:// prefix> "
                    "to get links, or leave links=''"
                )
            return cls("")
        style = links.links if links is not None else "url"
        target = cls(image_store, links if style != "url" else None)
        if style == "signed" and not storage.is_remote(image_store):
            raise ValueError(
                f"links=signed: the images are linked as {image_store}, not in a gs://, s3:// or minio:// "
                "store; give image_store=<bucket prefix>, or links=public with link_base, or links=url"
            )
        if style == "public" and links is not None and not links.link_base:
            raise ValueError(
                "links=public needs link_base: the public http(s) URL that serves the image store "
                f"(or env {storage.ENV_LINK_BASE})"
            )
        return target

    @property
    def writes(self) -> bool:
        """Whether images are written one file each to a store (and rows carry links)."""
        return bool(self.store)

    def link_kind(self) -> storage.LinkKind:
        """The kind of link the records carry (style ``none`` without an image store)."""
        if not self.writes:
            return storage.LinkKind("none")
        return storage.link_kind(self.links) if self.links is not None else storage.LinkKind("url")

    def link(self, env: str, name: str, written: str) -> str:
        """The link a record carries for the image ``name`` of ``env``, ``written`` by write_bytes."""
        if self.links is not None:
            return storage.record_link(storage.join(self.store, env, name), self.links, store=self.store)
        return written  # what storage.write_bytes returns (an https URL or a path)

    @property
    def shown(self) -> str:
        """Where the per-image files are, as the manifest and the summary name it ("" = none)."""
        return self.store


class ImageIndex:
    """image_id -> image bytes, from the data stage's DatasetDict (memory-mapped, read on demand)."""

    def __init__(self, dataset_dir: str | Path):
        import datasets

        path = Path(dataset_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: data set not found; expected a DatasetDict.save_to_disk folder")
        dd = datasets.load_from_disk(str(path))
        if not isinstance(dd, datasets.DatasetDict):
            raise ValueError(f"{path}: expected a DatasetDict with splits {', '.join(schema.SPLITS)}")
        self._splits = {}
        self._where: dict[str, tuple[str, int]] = {}
        for split, ds in dd.items():
            schema.require_columns(
                ds.column_names,
                (schema.DatasetColumns.IMAGE, schema.DatasetColumns.IMAGE_ID),
                f"{path}[{split}]",
            )
            arrow = ds.with_format("arrow")
            self._splits[split] = arrow
            ids = arrow[schema.DatasetColumns.IMAGE_ID].to_pylist()
            for i, image_id in enumerate(ids):
                self._where.setdefault(image_id, (split, i))

    def __contains__(self, image_id: str) -> bool:
        return image_id in self._where

    def png_bytes(self, image_ids: list[str]) -> list[bytes]:
        """PNG bytes of each image, in the order given."""
        by_split: dict[str, list[tuple[int, int]]] = {}
        for pos, image_id in enumerate(image_ids):
            split, idx = self._where[image_id]
            by_split.setdefault(split, []).append((pos, idx))
        out: list[bytes] = [b""] * len(image_ids)
        for split, items in by_split.items():
            table = self._splits[split][[idx for _, idx in items]]
            images = table.column(schema.DatasetColumns.IMAGE).to_pylist()
            for (pos, _), image in zip(items, images, strict=True):
                out[pos] = _to_png(image)
        return out


def _to_png(image: dict | None) -> bytes:
    entry = image or {}
    data = entry.get("bytes")
    if data is None and entry.get("path"):
        data = Path(entry["path"]).read_bytes()
    if data is None:
        raise ValueError("image has neither bytes nor a path")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, format="PNG")
    return buf.getvalue()


def row_prediction_ids(batch: pa.RecordBatch, model_version: str) -> tuple[list[str], list[bool]]:
    """Each row's prediction ID and whether it was given: the served id when present, else derived.

    A given id is the row's non-empty ``EmbedColumns.GIVEN_PREDICTION_ID``; otherwise
    ``schema.prediction_id(model_version, image_id)``. The flag is True only where the ID is not the
    derived one (the rule arize checks the manifest's record of given IDs with).
    """
    image_ids = batch.column(E.IMAGE_ID).to_pylist()
    given: list = (
        batch.column(E.GIVEN_PREDICTION_ID).to_pylist()
        if E.GIVEN_PREDICTION_ID in batch.schema.names
        else [None] * len(image_ids)
    )
    derived = [schema.prediction_id(model_version, str(i)) for i in image_ids]
    ids = [g if g else d for g, d in zip(given, derived, strict=True)]
    return ids, [i != d for i, d in zip(ids, derived, strict=True)]


def _row_reasons(
    batch: pa.RecordBatch,
    ts: pa.Array,
    vector_length: int,
    seen: set[str],
    images: ImageIndex,
    prediction_ids: list[str] | None = None,
    seen_predictions: set[str] | None = None,
) -> list[str | None]:
    """One reason per row why it cannot be used, or None.

    ``prediction_ids`` (with ``seen_predictions``, the IDs of the rows kept before): a row whose ID an
    earlier row has, or longer than Arize takes, is kept aside.
    """
    n = batch.num_rows
    reasons: list[str | None] = [None] * n

    def mark(mask: np.ndarray, reason) -> None:
        for i in np.flatnonzero(mask):
            if reasons[i] is None:
                reasons[i] = reason(i) if callable(reason) else reason

    def np_bool(arr: pa.Array) -> np.ndarray:
        return np.asarray(pc.fill_null(arr, True).to_numpy(zero_copy_only=False), dtype=bool)

    ids = batch.column(E.IMAGE_ID).to_pylist()
    mark(np.array([not i for i in ids], dtype=bool), f"{E.IMAGE_ID} is empty")
    split = batch.column(E.SPLIT)
    mark(
        ~np_bool(pc.is_in(split, pa.array(schema.SPLITS))) | ~np_bool(pc.is_valid(split)),
        lambda i: f"{E.SPLIT} {split[i].as_py()!r} is not one of {', '.join(schema.SPLITS)}",
    )
    raw_ts = batch.column(E.PREDICTION_TS)
    mark(np_bool(pc.is_null(ts)), lambda i: f"{E.PREDICTION_TS} {raw_ts[i].as_py()!r} cannot be parsed")
    labels = batch.column(E.LABEL)
    no_label = np_bool(pc.equal(labels, schema.NO_LABEL)) & ~np_bool(pc.is_null(labels))
    in_production = np.asarray(
        pc.fill_null(pc.equal(split, schema.PRODUCTION), False).to_numpy(zero_copy_only=False), dtype=bool
    )
    mark(
        no_label & ~in_production,
        lambda i: (
            f"{E.LABEL} {schema.NO_LABEL} (no label yet) in {split[i].as_py()!r}: only production rows may "
            f"lack a label; expected a class index 0..{schema.NUM_CLASSES - 1}"
        ),
    )
    for col in (E.LABEL, E.PREDICTION):
        values = batch.column(col)
        bad = np_bool(pc.or_(pc.less(values, 0), pc.greater_equal(values, schema.NUM_CLASSES)))
        if col == E.LABEL:
            bad &= ~no_label  # -1 in production: no label yet (else marked above)
        mark(
            bad | np_bool(pc.is_null(values)),
            lambda i, c=col, v=values: (
                f"{c} {v[i].as_py()!r} is not a class index 0..{schema.NUM_CLASSES - 1}"
            ),
        )
    if E.SERVED_LABEL in batch.schema.names:
        served = batch.column(E.SERVED_LABEL)
        bad = pc.and_(
            pc.is_valid(served),
            pc.or_(pc.less(served, 0), pc.greater_equal(served, schema.NUM_CLASSES)),
        )
        mark(
            np_bool(pc.fill_null(bad, False)),
            lambda i: (
                f"{E.SERVED_LABEL} {served[i].as_py()!r} is not a class index 0..{schema.NUM_CLASSES - 1}"
            ),
        )
    if E.SERVED_SCORE in batch.schema.names:
        served_score = batch.column(E.SERVED_SCORE).cast(pa.float64())
        out_of_range = pc.or_(
            pc.invert(pc.is_finite(served_score)),
            pc.or_(pc.less(served_score, 0.0), pc.greater(served_score, 1.0)),
        )
        mark(
            np_bool(pc.fill_null(out_of_range, False)),
            lambda i: f"{E.SERVED_SCORE} {served_score[i].as_py()!r} is not a number in [0, 1]",
        )
    score = batch.column(E.PREDICTION_SCORE).cast(pa.float64())
    mark(
        ~np_bool(pc.is_finite(score)) | np_bool(pc.is_null(score)),
        f"{E.PREDICTION_SCORE} is missing or not finite",
    )

    probs = batch.column(E.PROBABILITIES)
    n_probs = pc.fill_null(pc.list_value_length(probs), 0).to_numpy(zero_copy_only=False)
    mark(
        n_probs != schema.NUM_CLASSES,
        lambda i: (
            f"{E.PROBABILITIES} has {n_probs[i]} values; expected {schema.NUM_CLASSES}, one per class "
            "(a model of another class list?)"
        ),
    )
    flat_probs = pc.list_flatten(probs).cast(pa.float64())
    if len(flat_probs):
        parents = pc.list_parent_indices(probs).to_numpy(zero_copy_only=False)
        finite = np_bool(pc.is_finite(flat_probs)) & ~np_bool(pc.is_null(flat_probs))
        bad_rows = np.zeros(n, dtype=bool)
        bad_rows[np.unique(parents[~finite])] = True
        mark(bad_rows, f"{E.PROBABILITIES} holds NaN or infinite values")

    emb = batch.column(E.EMBEDDING)
    lengths = pc.fill_null(pc.list_value_length(emb), 0).to_numpy(zero_copy_only=False)
    mark(
        lengths != vector_length,
        lambda i: f"{E.EMBEDDING} has {lengths[i]} values; expected {vector_length} like most rows",
    )
    flat = pc.list_flatten(emb).cast(pa.float64())
    if len(flat):
        parents = pc.list_parent_indices(emb).to_numpy(zero_copy_only=False)
        finite = np_bool(pc.is_finite(flat)) & ~np_bool(pc.is_null(flat))
        bad_rows = np.zeros(n, dtype=bool)
        bad_rows[np.unique(parents[~finite])] = True
        mark(bad_rows, f"{E.EMBEDDING} holds NaN or infinite values")

    if prediction_ids is not None:
        mark(
            np.array([len(p) > MAX_PREDICTION_ID_LEN for p in prediction_ids], dtype=bool),
            lambda i: (
                f"given {P.PREDICTION_ID} has {len(prediction_ids[i])} characters; Arize takes at most "
                f"{MAX_PREDICTION_ID_LEN}"
            ),
        )
    pids = seen_predictions if seen_predictions is not None else set()
    for i, image_id in enumerate(ids):
        if reasons[i] is not None:
            continue
        if image_id in seen:
            reasons[i] = f"duplicate {E.IMAGE_ID} {image_id!r} (an earlier row has it)"
        elif prediction_ids is not None and prediction_ids[i] in pids:
            reasons[i] = f"duplicate {P.PREDICTION_ID} {prediction_ids[i]!r} (an earlier row has it)"
        elif image_id not in images:
            reasons[i] = f"{E.IMAGE_ID} {image_id!r} is not in the data set, no image to link"
        else:
            seen.add(image_id)
            if prediction_ids is not None:
                pids.add(prediction_ids[i])
    return reasons


def _safe_name(image_id: str) -> str:
    name = _SAFE_NAME.sub("_", image_id)
    if name != image_id:  # keep names unique when characters were replaced
        name += "-" + hashlib.sha256(image_id.encode()).hexdigest()[:8]
    return name


class _AtomicParquet:
    """A Parquet file written into a hidden temporary sibling, renamed by :meth:`commit`."""

    def __init__(self, path: Path, arrow_schema: pa.Schema):
        self.path = path
        self.tmp = files.tmp_sibling(path)
        self.writer = pq.ParquetWriter(self.tmp, arrow_schema)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self.writer.write_table(table)
            self.rows += table.num_rows

    def commit(self) -> None:
        self.writer.close()
        self.tmp.replace(self.path)

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


class PreparedTables:
    """The tables of one prepared folder (and their images files), in hidden temporary files until :meth:`commit`.

    Used as a context manager: an error inside the block removes every temporary file, so nothing
    is written half.
    """

    def __init__(self, out: Path, arrow_schema: pa.Schema = schema.PREPARED_ARROW_SCHEMA):
        self.out = out
        self.arrow_schema = arrow_schema
        self.environments: dict[str, _AtomicParquet] = {}
        self.images: dict[str, _AtomicParquet] = {}
        self.rejected = _AtomicParquet(out / schema.PREPARED_REJECTED_FILE, REJECTED_ARROW_SCHEMA)

    def __enter__(self) -> PreparedTables:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def write(self, env: str, table: pa.Table, images: pa.Table | None = None) -> None:
        """Append prepared rows to the table of ``env``, and their images (same rows) to its images file."""
        if env not in self.environments:
            self.environments[env] = _AtomicParquet(self.out / schema.prepared_file(env), self.arrow_schema)
            self.images[env] = _AtomicParquet(
                self.out / schema.prepared_images_file(env), schema.PREPARED_IMAGES_ARROW_SCHEMA
            )
        self.environments[env].write(table)
        if images is not None:
            self.images[env].write(images)

    def reject(self, table: pa.Table) -> None:
        """Append rows kept aside (``REJECTED_ARROW_SCHEMA``)."""
        self.rejected.write(table)

    def rows(self) -> dict[str, int]:
        """Rows written per environment, in ``schema.SPLITS`` order."""
        return {env: self.environments[env].rows for env in schema.SPLITS if env in self.environments}

    def image_rows(self) -> dict[str, int]:
        """Images written per environment, in ``schema.SPLITS`` order."""
        return {env: self.images[env].rows for env in schema.SPLITS if env in self.images}

    def commit(self) -> None:
        """Rename every file into place; remove an environment's files left by an earlier run."""
        for w in [*self.environments.values(), *self.images.values()]:
            w.commit()
        self.rejected.commit()
        for env in schema.SPLITS:  # files left by an earlier run into the same folder are not ours
            if env not in self.environments:
                (self.out / schema.prepared_file(env)).unlink(missing_ok=True)
                (self.out / schema.prepared_images_file(env)).unlink(missing_ok=True)

    def abort(self) -> None:
        """Remove every temporary file."""
        for w in [*self.environments.values(), *self.images.values(), self.rejected]:
            w.abort()


@dataclass
class Exported:
    """What the conversion saw: rows read per split, why rows were kept aside, embed failures."""

    rows_read: Counter = field(default_factory=Counter)  # split -> rows in the embed files
    reasons: Counter = field(default_factory=Counter)  # reason kind -> rows kept aside
    embed_failures: int = 0  # rows of the embed failures files (kept aside too)
    stats: RowStats = field(default_factory=lambda: RowStats())  # the kept rows' labels, served, given IDs
    started: datetime | None = None  # when the export began: signed links made from then expire from then


@dataclass
class RowStats:
    """Counts over the rows written: labels, served predictions and their disagreement, given IDs."""

    labelled: Counter = field(default_factory=Counter)  # env -> rows with an actual label
    unlabelled: Counter = field(default_factory=Counter)  # env -> rows without (actual_label null)
    served: Counter = field(default_factory=Counter)  # env -> rows with a served label
    disagree: Counter = field(
        default_factory=Counter
    )  # env -> of those, rows where the model predicts another
    pairs: Counter = field(default_factory=Counter)  # (served class, model class) -> rows, disagreeing only
    by_class: Counter = field(default_factory=Counter)  # served class -> rows with a served prediction
    by_class_disagree: Counter = field(default_factory=Counter)  # served class -> of those, disagreeing
    without_score: int = 0  # served label without a served score: prediction_score null
    given: Counter = field(default_factory=Counter)  # env -> rows whose prediction_id was given
    given_digest: dict[str, Any] = field(default_factory=dict)  # env -> running sha256 of the given IDs

    def add(
        self, env: str, label: np.ndarray, model: np.ndarray, served: np.ndarray | None, ids, given
    ) -> None:
        """Count one converted chunk of ``env`` (labels, model and served predictions as class indices)."""
        has_label = label != schema.NO_LABEL
        self.labelled[env] += int(has_label.sum())
        self.unlabelled[env] += int((~has_label).sum())
        if served is not None:
            valid = served >= 0
            differ = valid & (served != model)
            self.served[env] += int(valid.sum())
            self.disagree[env] += int(differ.sum())
            for s, m in zip(served[differ].tolist(), model[differ].tolist(), strict=True):
                self.pairs[(schema.CLASS_NAMES[s], schema.CLASS_NAMES[m])] += 1
            self.by_class.update(schema.CLASS_NAMES[s] for s in served[valid].tolist())
            self.by_class_disagree.update(schema.CLASS_NAMES[s] for s in served[differ].tolist())
        digest = self.given_digest.setdefault(env, hashlib.sha256())
        for pid, was_given in zip(ids, given, strict=True):
            if was_given:
                self.given[env] += 1
                digest.update(pid.encode() + b"\n")

    def labels(self) -> dict[str, dict[str, int]]:
        """Labelled and unlabelled rows of each environment, for the manifest."""
        envs = [e for e in schema.SPLITS if e in self.labelled or e in self.unlabelled]
        return {e: {"labelled": self.labelled[e], "unlabelled": self.unlabelled[e]} for e in envs}

    def served_summary(self) -> dict:
        """The served-prediction figures of the manifest: rows, disagreement (count, rate), top pairs."""
        rows, disagree = sum(self.served.values()), sum(self.disagree.values())
        top = sorted(self.pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DISAGREEMENTS]
        return {
            "rows": rows,
            "disagree": disagree,
            "disagreement_rate": disagree / rows if rows else 0.0,
            "without_score": self.without_score,
            "by_environment": {
                env: {
                    "rows": self.served[env],
                    "disagree": self.disagree[env],
                    "disagreement_rate": self.disagree[env] / self.served[env] if self.served[env] else 0.0,
                }
                for env in schema.SPLITS
                if self.served[env]
            },
            "by_served_class": {
                name: {"rows": self.by_class[name], "disagree": self.by_class_disagree[name]}
                for name in schema.CLASS_NAMES
                if self.by_class[name]
            },
            "top_disagreements": [{"served": s, "model": m, "rows": n} for (s, m), n in top],
            "sentence": served_sentence({"rows": rows, "disagree": disagree}),
        }

    def given_ids(self) -> dict[str, dict]:
        """Per environment: the rows whose prediction_id was given and the sha256 of those IDs in table order."""
        return {
            env: {"rows": n, "sha256": self.given_digest[env].hexdigest()}
            for env, n in self.given.items()
            if n
        }


def _read_failures(folders: list[Path]) -> list[dict]:
    rows = []
    for folder in folders:
        path = folder / schema.EMBED_FAILURES_FILE if folder.is_dir() else None
        if path is None or not path.is_file():
            continue
        table = open_parquet(path).read()
        reason_col = next((c for c in ("reason", "error") if c in table.column_names), None)
        for i in range(table.num_rows):
            row = {c: table.column(c)[i].as_py() for c in table.column_names}
            rows.append(
                {
                    E.IMAGE_ID: str(row.get(E.IMAGE_ID) or ""),
                    E.SPLIT: str(row.get(E.SPLIT) or ""),
                    "source": str(path),
                    "row": -1,
                    "reason": "failed in the embed stage"
                    + (f": {row[reason_col]}" if reason_col and row.get(reason_col) else ""),
                }
            )
    return rows


def export_rows(
    inputs: EmbedInputs,
    plan: Plan,
    images: ImageIndex,
    target: ImageTarget,
    tables: PreparedTables,
    config: PrepareConfig,
    progress: bool = True,
) -> Exported:
    """Convert the embed rows chunk by chunk into ``tables``, each kept row's image into its images file.

    With an image store (``target.writes``) each image is also uploaded there, ``config.image_workers``
    at a time, and the row links to it. Rows that cannot be used (and the embed stage's failures) go
    to the rejected table with a reason.
    """
    from tqdm.auto import tqdm

    failures = _read_failures(inputs.folders)
    exported = Exported(embed_failures=len(failures), started=datetime.now(UTC))
    tables.reject(pa.Table.from_pylist(failures, schema=REJECTED_ARROW_SCHEMA))
    convert = _Converter(plan, images, target, exported.stats)
    seen_ids: set[str] = set()
    seen_predictions: set[str] = set()
    # The first failed write cancels the queued ones; the images already in the (shared) store are
    # named in the error (a rerun writes the same names). No store: nothing is uploaded.
    uploader = (
        storage.Uploader(config.image_workers, content_type="image/png", cleanup=False)
        if target.writes
        else contextlib.nullcontext(None)
    )
    with (
        uploader as pool,
        tqdm(total=plan.rows, desc="prepare", unit="row", disable=not progress) as bar,
    ):
        for path in inputs.files:
            offset = 0
            served_here = inputs.served[inputs.files.index(path)] if inputs.served else ()
            batches = iter_parquet(path, batch_size=config.chunk_rows, columns=[*E.ALL, *served_here])
            for batch in batches:
                ts = _parse_timestamps(batch.column(E.PREDICTION_TS), str(path))
                pids, _ = row_prediction_ids(batch, plan.model_version)
                reasons = _row_reasons(
                    batch, ts, plan.vector_length, seen_ids, images, pids, seen_predictions
                )
                bad = [i for i, r in enumerate(reasons) if r is not None]
                if bad:
                    tables.reject(_rejected_table(batch, bad, reasons, path, offset))
                    exported.reasons.update(_reason_kind(r) for r in reasons if r is not None)
                good = pa.array([r is None for r in reasons])
                for env in schema.SPLITS:
                    in_env = pc.fill_null(pc.equal(batch.column(E.SPLIT), env), False)
                    exported.rows_read[env] += pc.sum(in_env).as_py() or 0
                    mask = pc.and_(good, in_env)
                    if pc.any(mask).as_py():
                        tables.write(env, *convert(batch.filter(mask), ts.filter(mask), env, pool))
                offset += batch.num_rows
                bar.update(batch.num_rows)
    return exported


def _rejected_table(
    batch: pa.RecordBatch, bad: list[int], reasons: list[str | None], path: Path, offset: int
) -> pa.Table:
    take = pa.array(bad, type=pa.int64())
    return pa.table(
        {
            E.IMAGE_ID: batch.column(E.IMAGE_ID).take(take).cast(pa.string()),
            E.SPLIT: batch.column(E.SPLIT).take(take).cast(pa.string()),
            "source": pa.array([str(path)] * len(bad), pa.string()),
            "row": pa.array([offset + i for i in bad], pa.int64()),
            "reason": pa.array([reasons[i] for i in bad], pa.string()),
        },
        schema=REJECTED_ARROW_SCHEMA,
    )


def _reason_kind(reason: str) -> str:
    """A reason without its row-specific values, for counting."""
    return re.sub(r"'[^']*'|-?\d+(\.\d+)?", "…", reason)


class _Converter:
    """Kept embed rows of one environment -> prepared rows and their images (uploaded to a store if any)."""

    def __init__(self, plan: Plan, images: ImageIndex, target: ImageTarget, stats: RowStats | None = None):
        self.plan = plan
        self.images = images
        self.target = target
        self.stats = stats if stats is not None else RowStats()
        self.shift = pa.scalar(int(plan.shift / timedelta(microseconds=1)), type=pa.duration("us"))
        self.class_names = pa.array(schema.CLASS_NAMES)

    def __call__(
        self, rows: pa.RecordBatch, ts: pa.Array, env: str, pool: storage.Uploader | None
    ) -> tuple[pa.Table, pa.Table]:
        """The prepared rows (``plan.arrow_schema``) and their images (``PREPARED_IMAGES_ARROW_SCHEMA``)."""
        ids = rows.column(E.IMAGE_ID).to_pylist()
        prediction_ids, given = row_prediction_ids(rows, self.plan.model_version)
        pngs = self.images.png_bytes(ids)
        links = self._upload(ids, pngs, env, pool)
        images = pa.table(
            {
                schema.PreparedImageColumns.PREDICTION_ID: pa.array(prediction_ids, pa.string()),
                schema.PreparedImageColumns.IMAGE_ID: pa.array(ids, pa.string()),
                schema.PreparedImageColumns.IMAGE: pa.array(pngs, pa.binary()),
            },
            schema=schema.PREPARED_IMAGES_ARROW_SCHEMA,
        )
        label = rows.column(E.LABEL).cast(pa.int64())
        has_label = pc.not_equal(label, schema.NO_LABEL)
        model_label = self.class_names.take(rows.column(E.PREDICTION))
        model_score = rows.column(E.PREDICTION_SCORE).cast(pa.float32())
        served_label = (
            rows.column(E.SERVED_LABEL).cast(pa.int64())
            if E.SERVED_LABEL in rows.schema.names
            else pa.nulls(rows.num_rows, pa.int64())
        )
        served_score = (
            rows.column(E.SERVED_SCORE).cast(pa.float32())
            if E.SERVED_SCORE in rows.schema.names
            else pa.nulls(rows.num_rows, pa.float32())
        )
        is_served = pc.is_valid(served_label)
        self.stats.without_score += int(pc.sum(pc.and_(is_served, pc.is_null(served_score))).as_py() or 0)
        self.stats.add(
            env,
            label.to_numpy(zero_copy_only=False),
            rows.column(E.PREDICTION).cast(pa.int64()).to_numpy(zero_copy_only=False),
            served_label.fill_null(-1).to_numpy(zero_copy_only=False) if self.plan.served else None,
            prediction_ids,
            given,
        )
        columns: dict[str, pa.Array] = {
            P.PREDICTION_ID: pa.array(prediction_ids, pa.string()),
            P.PREDICTION_TS: pc.add(ts, self.shift).cast(schema.TIMESTAMP_TYPE),
            # the served prediction where there is one (score null when none was logged), else the model's
            P.PREDICTION_LABEL: pc.if_else(is_served, self.class_names.take(served_label), model_label),
            # null: no label yet (production only; the Arize SDK logs the prediction alone)
            P.ACTUAL_LABEL: pc.if_else(
                has_label, self.class_names.take(pc.if_else(has_label, label, 0)), None
            ),
            P.PREDICTION_SCORE: pc.if_else(is_served, served_score, model_score),
            P.MODEL_PREDICTION_LABEL: model_label,
            P.MODEL_PREDICTION_SCORE: model_score,
            P.PREDICTION_SOURCE: pc.if_else(is_served, schema.PREDICTION_SERVED, schema.PREDICTION_MODEL),
        }
        arrow_schema = self.plan.arrow_schema
        table = pa.table(
            {
                **{name: columns[name] for name in columns if name in arrow_schema.names},
                P.IMAGE_VECTOR: rows.column(E.EMBEDDING).cast(pa.list_(pa.float32())),
                P.IMAGE_LINK: links,
                P.PROBABILITIES: rows.column(E.PROBABILITIES).cast(pa.list_(pa.float32())),
                P.IMAGE_ID: rows.column(E.IMAGE_ID).cast(pa.string()),
                P.DEGRADATION: rows.column(E.DEGRADATION).cast(pa.string()),
                P.BRIGHTNESS: rows.column(E.BRIGHTNESS).cast(pa.float32()),
                P.CONTRAST: rows.column(E.CONTRAST).cast(pa.float32()),
                P.SHARPNESS: rows.column(E.SHARPNESS).cast(pa.float32()),
            },
            schema=arrow_schema,
        )
        return table, images

    def _upload(self, ids: list[str], pngs: list[bytes], env: str, pool: storage.Uploader | None) -> pa.Array:
        """Upload each PNG to the image store (in parallel); its link, one per row (null without a store)."""
        if pool is None or not self.target.writes:
            return pa.nulls(len(ids), pa.string())
        names = [f"{_safe_name(i)}.png" for i in ids]
        targets = [storage.join(self.target.store, env, name) for name in names]
        written = pool.upload(zip(targets, pngs, strict=True))
        return pa.array(
            [self.target.link(env, name, w) for name, w in zip(names, written, strict=True)], pa.string()
        )


# ---------------------------------------------------------------- 4. write


def write_prepared(
    tables: PreparedTables,
    exported: Exported,
    plan: Plan,
    inputs: EmbedInputs,
    target: ImageTarget,
    config: PrepareConfig,
) -> PrepareResult:
    """Check that no environment lost every row, rename the tables into place, write ``manifest.json``."""
    written = tables.rows()
    for env in schema.SPLITS:
        if exported.rows_read[env] and env not in written:
            raise ValueError(
                f"environment {env}: all {exported.rows_read[env]} rows were rejected, nothing usable is "
                f"left to log; rows kept aside by reason: {_reasons_text(exported.reasons)}"
            )
    tables.commit()
    result = PrepareResult(
        output_dir=str(tables.out),
        model_version=plan.model_version,
        rows=written,
        rejected=tables.rejected.rows,
        rejected_reasons=dict(exported.reasons),
        embed_failures=exported.embed_failures,
        time_shift_seconds=plan.shift.total_seconds(),
        anchor=plan.anchor.isoformat(),
        anchor_environment=plan.anchor_environment,
        now=plan.now.isoformat(),
        vector_length=plan.vector_length,
        image_store=target.shown,
        chunk_rows=config.chunk_rows,
        sources=[str(p) for p in inputs.files],
        labels=exported.stats.labels(),
        served=exported.stats.served_summary() if plan.served else {},
        given_prediction_ids=exported.stats.given_ids(),
        image_links=_links_manifest(target, exported.started),
        images=tables.image_rows(),
    )
    files.write_text_atomic(tables.out / files.MANIFEST_FILE, json.dumps(result.manifest(), indent=2) + "\n")
    print(
        "prepare: "
        + ", ".join(f"{env} {n}" for env, n in result.rows.items())
        + f" rows, {result.rejected} rejected"
        + (f" ({_reasons_text(exported.reasons)})" if exported.reasons else "")
        + f", shift {result.time_shift_seconds:.0f} s, "
        f"model {plan.model_version} -> {tables.out}"
    )
    unlabelled = sum(n["unlabelled"] for n in result.labels.values())
    if unlabelled:
        print(f"prepare: {unlabelled} row(s) without a label yet: {P.ACTUAL_LABEL} null")
    if result.served:
        print("prepare: " + result.served["sentence"])
    return result


def _links_manifest(target: ImageTarget, started: datetime | None) -> dict:
    """What kind of image_link was logged and, for signed links, when the first ones stop working."""
    kind = target.link_kind()
    if kind.style == "none":
        return {
            "kind": "none",
            "expiry_seconds": 0,
            "expires": "",
            "base": "",
            "text": (
                "null: no image store was given (image_store=''), so no per-image file exists to link; "
                f"the images are inside the artifact ({schema.PREPARED_IMAGES_FILE_TEMPLATE}) and Arize "
                "logs the embedding vector without a link"
            ),
        }
    expires = started + timedelta(seconds=kind.expiry_seconds) if kind.expiry_seconds and started else None
    return {
        "kind": kind.style,
        "expiry_seconds": kind.expiry_seconds,
        "expires": expires.isoformat(timespec="seconds") if expires else "",
        "base": kind.base,
        "text": kind.describe(started),
    }


def _reasons_text(reasons: Counter) -> str:
    """``reason: rows; ...``, the most frequent first."""
    return "; ".join(f"{r}: {n}" for r, n in reasons.most_common())


def read_manifest(prepared_dir: str | Path) -> dict:
    """The manifest of a prepared folder, with a clear error when it is not one."""
    path = Path(prepared_dir) / files.MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected the output folder of the prepare stage")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"{path}: not JSON ({exc}); expected the manifest the prepare stage writes"
        ) from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: holds {type(manifest).__name__}; expected the manifest object of prepare")
    return manifest
