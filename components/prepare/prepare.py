"""Prepare monitoring records: embed output -> one Parquet table per Arize environment.

Reads every embed output folder in chunks (``pyarrow`` record batches), so a table
larger than memory goes through.  Two passes over the embed Parquet files:

1. a scan of the light columns (split, timestamp, model version, vector length) that
   finds the newest production timestamp (the anchor of the time shift), the model
   version and the vector length most rows have;
2. the conversion, chunk by chunk: rows that cannot be used are kept aside in
   ``rejected.parquet`` with a reason, the rest are written to ``<environment>.parquet``
   and their images exported as PNG files.

See ``components/prepare/README.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common import schema, storage
from components.common.schema import EmbedColumns as E
from components.common.schema import PreparedColumns as P

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 4096
MANIFEST_FILE = "manifest.json"
IMAGES_DIR = "images"
# Arize accepts embedding vectors of 2 to 20,000 values.
MIN_VECTOR_LEN, MAX_VECTOR_LEN = 2, 20_000

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

    def manifest(self) -> dict:
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
        }

    def summary_markdown(self) -> str:
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
            f"Images exported as PNG under `{self.image_store}`.",
        ]
        if self.rejected_reasons:
            lines += ["", "| reason rows were kept aside | rows |", "|---|---:|"]
            lines += [f"| {r} | {n} |" for r, n in sorted(self.rejected_reasons.items())]
        if self.embed_failures:
            lines += ["", f"{self.embed_failures} image(s) had already failed in the embed stage."]
        return "\n".join(lines) + "\n"


def prediction_id(model_version: str, image_id: str) -> str:
    """Deterministic prediction ID: the same model version and image give the same ID."""
    digest = hashlib.sha256(f"{model_version}\x1f{image_id}".encode()).hexdigest()
    return digest[:32]


def parse_now(now: str | datetime | None) -> datetime:
    """``now`` as an aware UTC datetime; ``""``/None = the current UTC time."""
    if now is None or now == "":
        return datetime.now(UTC)
    if isinstance(now, datetime):
        value = now
    else:
        try:
            value = datetime.fromisoformat(now.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(
                f"now={now!r}: not an ISO-8601 time; expected e.g. '2026-11-28T12:00:00Z' or '' for now"
            ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


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
    arrow_schema = pq.ParquetFile(path).schema_arrow
    schema.require_columns(arrow_schema.names, E.ALL, str(path))
    for name in (E.EMBEDDING, E.PROBABILITIES):
        t = arrow_schema.field(name).type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
            raise ValueError(f"{path}: column {name} has type {t}; expected list<float32>")
    return arrow_schema


@dataclass
class _Scan:
    anchor: datetime | None = None
    anchor_environment: str = ""
    model_versions: Counter = field(default_factory=Counter)
    lengths: Counter = field(default_factory=Counter)
    rows: int = 0


def _scan(files: list[Path], chunk_rows: int) -> _Scan:
    scan = _Scan()
    newest: dict[str, datetime] = {}
    for path in files:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=list(_SCAN_COLUMNS)):
            scan.rows += batch.num_rows
            split = batch.column(E.SPLIT)
            ts = _parse_timestamps(batch.column(E.PREDICTION_TS), str(path))
            for env in schema.SPLITS:
                mask = pc.and_(pc.fill_null(pc.equal(split, env), False), pc.is_valid(ts))
                top = pc.max(pc.filter(ts, mask)).as_py()
                if top is not None and (env not in newest or top > newest[env]):
                    newest[env] = top
            scan.model_versions.update(v for v in batch.column(E.MODEL_VERSION).to_pylist() if v)
            lengths = pc.list_value_length(batch.column(E.EMBEDDING)).to_numpy(zero_copy_only=False)
            lengths = lengths[~np.isnan(lengths)] if lengths.dtype.kind == "f" else lengths
            scan.lengths.update(int(n) for n in lengths if n > 0)
    if schema.PRODUCTION in newest:
        scan.anchor, scan.anchor_environment = newest[schema.PRODUCTION], schema.PRODUCTION
    elif newest:
        env = max(newest, key=newest.get)
        scan.anchor, scan.anchor_environment = newest[env], env
    return scan


class _ImageIndex:
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
    data = (image or {}).get("bytes")
    if data is None and (image or {}).get("path"):
        data = Path(image["path"]).read_bytes()
    if data is None:
        raise ValueError("image has neither bytes nor a path")
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buf, format="PNG")
    return buf.getvalue()


def _row_reasons(
    batch: pa.RecordBatch,
    ts: pa.Array,
    vector_length: int,
    seen: set[str],
    images: _ImageIndex,
) -> list[str | None]:
    """One reason per row why it cannot be used, or None."""
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
    for col in (E.LABEL, E.PREDICTION):
        values = batch.column(col)
        bad = pc.or_(pc.less(values, 0), pc.greater_equal(values, schema.NUM_CLASSES))
        mark(
            np_bool(bad) | np_bool(pc.is_null(values)),
            lambda i, c=col, v=values: (
                f"{c} {v[i].as_py()!r} is not a class index 0..{schema.NUM_CLASSES - 1}"
            ),
        )
    score = batch.column(E.PREDICTION_SCORE).cast(pa.float64())
    mark(
        ~np_bool(pc.is_finite(score)) | np_bool(pc.is_null(score)),
        f"{E.PREDICTION_SCORE} is missing or not finite",
    )

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

    for i, image_id in enumerate(ids):
        if reasons[i] is not None:
            continue
        if image_id in seen:
            reasons[i] = f"duplicate {E.IMAGE_ID} {image_id!r} (an earlier row has it)"
        elif image_id not in images:
            reasons[i] = f"{E.IMAGE_ID} {image_id!r} is not in the data set, no image to link"
        else:
            seen.add(image_id)
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
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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


def _read_failures(folders: list[Path]) -> list[dict]:
    rows = []
    for folder in folders:
        path = folder / schema.EMBED_FAILURES_FILE if folder.is_dir() else None
        if path is None or not path.is_file():
            continue
        table = pq.read_table(path)
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


def prepare_records(
    embed_dirs: list[str | Path],
    dataset_dir: str | Path,
    output_dir: str | Path,
    image_store: str = "",
    now: str | datetime | None = "",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    image_link_base: str = "",
    image_workers: int = 8,
    progress: bool = True,
) -> PrepareResult:
    """Turn embed outputs into Arize-ready tables, one Parquet per environment.

    Args:
        embed_dirs: embed output folders (each holding ``schema.EMBED_FILE``), e.g. one per shard.
        dataset_dir: the data stage's ``DatasetDict`` folder, where the images are.
        output_dir: the prepared folder to write (created).
        image_store: where PNG files go: ``""`` = ``<output_dir>/images``, a local folder, or a
            ``gs://``/``s3://`` prefix (written through ``storage.write_bytes``).
        now: ISO-8601 time the newest production timestamp is shifted to; ``""`` = current UTC time.
        chunk_rows: rows read and written per chunk.
        image_link_base: only with ``image_store=""``: the link prefix of ``<output_dir>/images``
            (the artifact URI, e.g. ``gs://bucket/.../prepared``+``/images``); ``""`` = the local path.
    """
    from tqdm.auto import tqdm

    if chunk_rows < 1:
        raise ValueError(f"chunk_rows={chunk_rows}: expected a positive number of rows")
    if not embed_dirs:
        raise ValueError("embed_dirs is empty: expected at least one embed output folder")
    now_dt = parse_now(now)
    folders = [Path(d) for d in embed_dirs]
    files = [_embed_file(d) for d in folders]
    for path in files:
        _check_columns(path)

    scan = _scan(files, chunk_rows)
    if scan.rows == 0:
        raise ValueError(f"{', '.join(map(str, files))}: no rows; expected embed rows of at least one split")
    if scan.anchor is None:
        raise ValueError(f"{', '.join(map(str, files))}: no row has a {E.PREDICTION_TS} that can be parsed")
    if len(scan.model_versions) != 1:
        found = ", ".join(repr(v) for v in scan.model_versions) or "none"
        raise ValueError(
            f"{', '.join(map(str, files))}: column {E.MODEL_VERSION} must hold one non-empty version "
            f"(prediction IDs derive from it); found {found}"
        )
    model_version = next(iter(scan.model_versions))
    if not scan.lengths:
        raise ValueError(f"{', '.join(map(str, files))}: column {E.EMBEDDING} holds no vector")
    vector_length = scan.lengths.most_common(1)[0][0]
    if not MIN_VECTOR_LEN <= vector_length <= MAX_VECTOR_LEN:
        raise ValueError(
            f"{E.EMBEDDING}: vectors have {vector_length} values; Arize accepts {MIN_VECTOR_LEN} to {MAX_VECTOR_LEN}"
        )
    shift = now_dt - scan.anchor
    shift_scalar = pa.scalar(int(shift / timedelta(microseconds=1)), type=pa.duration("us"))

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if image_store:
        store, link_base = image_store, ""
    else:
        store = str(out / IMAGES_DIR)
        link_base = image_link_base or store
    images = _ImageIndex(dataset_dir)
    class_names = pa.array(schema.CLASS_NAMES)

    writers: dict[str, _AtomicParquet] = {}
    rejected = _AtomicParquet(out / schema.PREPARED_REJECTED_FILE, REJECTED_ARROW_SCHEMA)
    reasons_count: Counter = Counter()
    seen_rows: Counter = Counter()
    seen_ids: set[str] = set()
    failures = _read_failures(folders)
    pool = ThreadPoolExecutor(max_workers=max(1, image_workers))
    bar = tqdm(total=scan.rows, desc="prepare", unit="row", disable=not progress)
    try:
        rejected.write(pa.Table.from_pylist(failures, schema=REJECTED_ARROW_SCHEMA))
        for path in files:
            offset = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=list(E.ALL)):
                ts = _parse_timestamps(batch.column(E.PREDICTION_TS), str(path))
                reasons = _row_reasons(batch, ts, vector_length, seen_ids, images)
                bad = [i for i, r in enumerate(reasons) if r is not None]
                if bad:
                    take = pa.array(bad, type=pa.int64())
                    rejected.write(
                        pa.table(
                            {
                                E.IMAGE_ID: batch.column(E.IMAGE_ID).take(take).cast(pa.string()),
                                E.SPLIT: batch.column(E.SPLIT).take(take).cast(pa.string()),
                                "source": pa.array([str(path)] * len(bad), pa.string()),
                                "row": pa.array([offset + i for i in bad], pa.int64()),
                                "reason": pa.array([reasons[i] for i in bad], pa.string()),
                            },
                            schema=REJECTED_ARROW_SCHEMA,
                        )
                    )
                    reasons_count.update(_reason_kind(reasons[i]) for i in bad)
                good = pa.array([r is None for r in reasons])
                for env in schema.SPLITS:
                    seen_rows[env] += pc.sum(pc.equal(batch.column(E.SPLIT), env)).as_py() or 0
                    mask = pc.and_(good, pc.fill_null(pc.equal(batch.column(E.SPLIT), env), False))
                    if not pc.any(mask).as_py():
                        continue
                    rows = batch.filter(mask)
                    table = _prepared_table(
                        rows,
                        ts.filter(mask),
                        shift_scalar,
                        model_version,
                        class_names,
                        env,
                        images,
                        store,
                        link_base,
                        pool,
                    )
                    if env not in writers:
                        writers[env] = _AtomicParquet(
                            out / schema.prepared_file(env), schema.PREPARED_ARROW_SCHEMA
                        )
                    writers[env].write(table)
                offset += batch.num_rows
                bar.update(batch.num_rows)
        bar.close()
        for env in schema.SPLITS:
            if seen_rows[env] and env not in writers:
                raise ValueError(
                    f"environment {env}: all {seen_rows[env]} rows were rejected "
                    f"({', '.join(f'{r}: {n}' for r, n in reasons_count.most_common())}); "
                    f"see the reasons above, nothing usable is left to log"
                )
        for w in writers.values():
            w.commit()
        rejected.commit()
        for env in schema.SPLITS:  # a table left by an earlier run into the same folder is not ours
            if env not in writers:
                (out / schema.prepared_file(env)).unlink(missing_ok=True)
    except BaseException:
        for w in [*writers.values(), rejected]:
            w.abort()
        raise
    finally:
        pool.shutdown(wait=True)

    result = PrepareResult(
        output_dir=str(out),
        model_version=model_version,
        rows={env: writers[env].rows for env in schema.SPLITS if env in writers},
        rejected=rejected.rows,
        rejected_reasons=dict(reasons_count),
        embed_failures=len(failures),
        time_shift_seconds=shift.total_seconds(),
        anchor=scan.anchor.isoformat(),
        anchor_environment=scan.anchor_environment,
        now=now_dt.isoformat(),
        vector_length=vector_length,
        image_store=link_base or image_store,
        chunk_rows=chunk_rows,
        sources=[str(p) for p in files],
    )
    tmp = out / f".{MANIFEST_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(result.manifest(), indent=2) + "\n")
    tmp.replace(out / MANIFEST_FILE)
    print(
        "prepare: "
        + ", ".join(f"{env} {n}" for env, n in result.rows.items())
        + f" rows, {result.rejected} rejected, shift {result.time_shift_seconds:.0f} s, "
        f"model {model_version} -> {out}"
    )
    return result


def _reason_kind(reason: str) -> str:
    """A reason without its row-specific values, for counting."""
    return re.sub(r"'[^']*'|-?\d+(\.\d+)?", "…", reason)


def _prepared_table(
    rows: pa.RecordBatch,
    ts: pa.Array,
    shift: pa.Scalar,
    model_version: str,
    class_names: pa.Array,
    env: str,
    images: _ImageIndex,
    store: str,
    link_base: str,
    pool: ThreadPoolExecutor,
) -> pa.Table:
    ids = rows.column(E.IMAGE_ID).to_pylist()
    pngs = images.png_bytes(ids)
    names = [f"{_safe_name(i)}.png" for i in ids]
    targets = [storage.join(store, env, name) for name in names]
    written = list(
        pool.map(
            lambda args: storage.write_bytes(args[0], args[1], "image/png"), zip(targets, pngs, strict=True)
        )
    )
    # A store of its own: the link is what storage.write_bytes returns (an https URL or a path).
    # The default store inside the prepared folder: the link of the file under the artifact's URI
    # (storage.link_for: the same form write_bytes would return; the local path under kfp.local).
    links = [storage.link_for(storage.join(link_base, env, name)) for name in names] if link_base else written
    return pa.table(
        {
            P.PREDICTION_ID: pa.array([prediction_id(model_version, i) for i in ids], pa.string()),
            P.PREDICTION_TS: pc.add(ts, shift).cast(schema.TIMESTAMP_TYPE),
            P.PREDICTION_LABEL: class_names.take(rows.column(E.PREDICTION)),
            P.ACTUAL_LABEL: class_names.take(rows.column(E.LABEL)),
            P.PREDICTION_SCORE: rows.column(E.PREDICTION_SCORE).cast(pa.float32()),
            P.IMAGE_VECTOR: rows.column(E.EMBEDDING).cast(pa.list_(pa.float32())),
            P.IMAGE_LINK: pa.array(links, pa.string()),
            P.PROBABILITIES: rows.column(E.PROBABILITIES).cast(pa.list_(pa.float32())),
            P.IMAGE_ID: rows.column(E.IMAGE_ID).cast(pa.string()),
            P.DEGRADATION: rows.column(E.DEGRADATION).cast(pa.string()),
            P.BRIGHTNESS: rows.column(E.BRIGHTNESS).cast(pa.float32()),
            P.CONTRAST: rows.column(E.CONTRAST).cast(pa.float32()),
            P.SHARPNESS: rows.column(E.SHARPNESS).cast(pa.float32()),
        },
        schema=schema.PREPARED_ARROW_SCHEMA,
    )


def read_manifest(prepared_dir: str | Path) -> dict:
    """The manifest of a prepared folder, with a clear error when it is not one."""
    path = Path(prepared_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected the output folder of the prepare stage")
    return json.loads(path.read_text())
