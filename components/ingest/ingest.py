"""A production batch as it arrives -> the data-stage layout the rest of the pipeline reads.

:func:`ingest_batch` reads ``config.source_uri`` (see :mod:`components.ingest.sources` for what it may
be) and writes:

- ``output_dir``: a ``datasets.DatasetDict`` folder as ``save_to_disk`` lays it out, with one split
  ``production`` whose columns are ``schema.DatasetColumns`` (image as greyscale PNG bytes, ``label``
  a ClassLabel with ``schema.NO_LABEL`` = -1 for "no label yet", ``prediction_ts`` UTC, ``image_id``,
  ``url`` = the image's location, ``degradation`` = ``schema.DEGRADATION_UNKNOWN``), then
  ``schema.ServedColumns`` (prediction id, served label and score; null where the manifest has
  none), then every other manifest column as a string column (JSON for non-text values);
- ``rejected_path``: a Parquet file, one row per row kept aside: ``row`` (0-based, in manifest or
  listing order), ``location``, ``reason`` (``sources.REASONS``), ``detail``, ``record`` (the
  manifest row as JSON);

A data-stage folder is copied unchanged (its ``rejected`` file is empty).

Memory is bounded: rows are read, converted (``read_workers`` threads) and written
``chunk_rows`` at a time, into Arrow shard files of at most :data:`SHARD_BYTES`; only a set of
8-byte hashes of the ids seen (for duplicates) grows with the batch, by 8 bytes a row.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from components.common import files, schema, storage
from components.common.schema import DatasetColumns as C
from components.common.schema import ServedColumns as S
from components.common.storage import StorageConfig
from components.ingest import sources
from components.ingest.config import (
    KIND_DATASET,
    KIND_IMAGES,
    TIME_MTIME,
    TIME_NONE,
    TIME_NOW,
    IngestConfig,
)
from components.ingest.decode import to_greyscale_png
from components.ingest.sources import Rejected

SHARD_BYTES = 500 * 1024 * 1024  # Arrow bytes per shard file (datasets' own default max_shard_size)
EXTRA_PREFIX = "manifest_"  # an extra manifest column named like a contract column is renamed so
DESCRIPTION = "A production batch ingested from image files and a prediction log (components.ingest)"

REJECTED_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("location", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("record", pa.string()),
    ]
)

_CLASS_INDEX = {name.casefold(): i for i, name in enumerate(schema.CLASS_NAMES)}


class NoUsableRows(ValueError):  # noqa: N818 - reads as the condition it reports
    """A batch in which no row could be ingested; the message gives the top reasons with counts."""


@dataclass
class IngestResult:
    """What one ingest run read, wrote and kept aside."""

    source_uri: str
    kind: str
    detected: str
    manifest: str = ""
    time_source: str = ""
    rows_seen: int = 0
    rows_written: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    labelled: int = 0
    served: int = 0
    with_prediction_id: int = 0
    formats: Counter[str] = field(default_factory=Counter)
    modes: Counter[str] = field(default_factory=Counter)
    resized: int = 0
    reencoded: int = 0
    min_side: int = 0
    max_side: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    extra_columns: tuple[str, ...] = ()
    renamed: dict[str, str] = field(default_factory=dict)
    shards: int = 0
    output_bytes: int = 0
    seconds: float = 0.0
    splits: tuple[str, ...] = (schema.PRODUCTION,)

    @property
    def rows_rejected(self) -> int:
        """Rows kept aside, all reasons together."""
        return sum(self.rejected.values())

    @property
    def images_per_second(self) -> float:
        """Rows handled (written or kept aside) per second of the run."""
        return self.rows_seen / self.seconds if self.seconds else 0.0

    def metadata(self) -> dict[str, Any]:
        """The batch artifact's metadata (KFP shows it beside the artifact)."""
        return {
            "source_uri": self.source_uri,
            "source_kind": self.kind,
            "time_source": self.time_source,
            "rows": self.rows_written,
            "rejected": self.rows_rejected,
            "labelled": self.labelled,
            "served_predictions": self.served,
        }

    def summary_line(self) -> str:
        """The one line printed at the end of a run."""
        reasons = ", ".join(f"{r} {n}" for r, n in self.rejected.most_common()) or "none"
        return (
            f"ingest: {self.rows_written} rows written from {self.source_uri} ({self.kind}), "
            f"{self.rows_rejected} kept aside ({reasons}), time from {self.time_source}, "
            f"{self.seconds:.1f} s ({self.images_per_second:.0f} rows/s)"
        )

    def summary_markdown(self) -> str:
        """The run's Markdown summary (the KFP ``summary`` artifact)."""
        lines = [
            "# Ingest",
            "",
            f"- source: `{self.source_uri}`, read as **{self.kind}** ({self.detected})",
        ]
        if self.manifest:
            lines.append(f"- manifest: `{self.manifest}`")
        lines += [
            f"- time of each row: **{self.time_source}**",
            f"- rows: {self.rows_seen} read, **{self.rows_written} written**, {self.rows_rejected} kept aside",
        ]
        if self.kind == KIND_DATASET:
            lines.append(f"- a data-stage folder, copied unchanged (splits {', '.join(self.splits)})")
            return "\n".join(lines) + "\n"
        lines += [
            f"- labels: {self.labelled} rows labelled, {self.rows_written - self.labelled} without a label yet "
            f"(label {schema.NO_LABEL})",
            f"- served predictions: {self.served} rows carry the serving system's label; "
            f"{self.with_prediction_id} rows carry a prediction id",
        ]
        if self.first_ts and self.last_ts:
            lines.append(f"- times: {self.first_ts.isoformat()} to {self.last_ts.isoformat()}")
        if self.formats:
            fmts = ", ".join(f"{k} {v}" for k, v in self.formats.most_common())
            modes = ", ".join(f"{k} {v}" for k, v in self.modes.most_common())
            lines += [
                f"- images: {fmts}; input modes {modes}",
                f"- sides from {self.min_side} to {self.max_side} px; {self.resized} shrunk to the size limit, "
                f"{self.reencoded} encoded again as greyscale PNG",
            ]
        if self.extra_columns:
            lines.append(f"- extra columns kept: {', '.join(f'`{c}`' for c in self.extra_columns)}")
        for old, new in self.renamed.items():
            lines.append(f"- manifest column `{old}` is named like a contract column: kept as `{new}`")
        lines.append(
            f"- written: {self.shards} shard(s), {self.output_bytes / 1e6:.1f} MB, in {self.seconds:.1f} s"
        )
        if self.rejected:
            lines += ["", "## Rows kept aside", "", "| reason | rows |", "|---|---:|"]
            lines += [f"| {r} | {n} |" for r, n in self.rejected.most_common()]
        return "\n".join(lines) + "\n"


# ---- one row --------------------------------------------------------------------------------------
@dataclass
class _Row:
    """A row that passed the cheap checks, waiting for its image to be read."""

    row: int
    location: str
    record: dict[str, Any] | None
    ts: datetime | None  # None: take the object's modification time
    image_id: str
    label: int
    prediction_id: str | None
    served_label: int | None
    served_score: float | None
    extras: dict[str, str | None]
    size: int | None = None  # from a listing


@dataclass
class _Done:
    """A row whose image was read and converted."""

    row: _Row
    png: bytes
    ts: datetime
    width: int
    height: int
    fmt: str
    mode: str
    resized: bool
    reencoded: bool


@dataclass
class _Aside:
    """A row kept aside."""

    row: int
    location: str
    reason: str
    detail: str
    record: dict[str, Any] | None


def _blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def parse_timestamp(value: Any) -> datetime:
    """ISO 8601 (no offset = UTC), a datetime, or Unix seconds (ms above 1e11, µs above 1e14)."""
    if _blank(value):
        raise Rejected(sources.BAD_TIMESTAMP, "the timestamp is empty")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
        except ValueError:
            try:
                return files.parse_utc(text, "timestamp")
            except ValueError:
                raise Rejected(
                    sources.BAD_TIMESTAMP,
                    f"{value!r}: expected ISO 8601 (2026-11-28T12:00:00Z) or Unix seconds",
                ) from None
    if number is None or not math.isfinite(number):
        raise Rejected(sources.BAD_TIMESTAMP, f"{value!r}: expected ISO 8601 or Unix seconds")
    if abs(number) >= 1e14:
        number /= 1e6
    elif abs(number) >= 1e11:
        number /= 1e3
    try:
        return datetime.fromtimestamp(number, UTC)
    except (OverflowError, OSError, ValueError):
        raise Rejected(sources.BAD_TIMESTAMP, f"{value!r}: out of range") from None


def parse_label(value: Any, reason: str = sources.UNKNOWN_LABEL) -> int | None:
    """A class name (any case) or index -> the index; blank -> None; anything else -> :class:`Rejected`."""
    if _blank(value):
        return None
    index: int | None = None
    if isinstance(value, bool):
        index = None
    elif isinstance(value, int):
        index = value
    elif isinstance(value, float) and value.is_integer():
        index = int(value)
    else:
        text = str(value).strip()
        index = _CLASS_INDEX.get(text.casefold())
        if index is None and text.lstrip("-").isdigit():
            index = int(text)
    if index is None or not 0 <= index < schema.NUM_CLASSES:
        raise Rejected(reason, f"{value!r}: expected a class name of {schema.CLASS_NAMES} or an index 0..9")
    return index


def parse_score(value: Any) -> float | None:
    """A served score in [0, 1]; blank -> None; anything else -> :class:`Rejected` (bad_score)."""
    if _blank(value):
        return None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise Rejected(sources.BAD_SCORE, f"{value!r}: expected a number in [0, 1]") from None
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise Rejected(sources.BAD_SCORE, f"{value!r}: expected a number in [0, 1]")
    return score


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.hex()
    return json.dumps(value, default=str, ensure_ascii=False)


def _hash_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


class _Seen:
    """The ids already ingested, as 8-byte hashes: a sorted array (8 bytes a row) and a small recent set."""

    MERGE = 65_536  # recent hashes held in a set before they join the sorted array

    def __init__(self) -> None:
        self._sorted = np.empty(0, np.uint64)
        self._recent: set[int] = set()

    def add(self, key: str) -> bool:
        """True when ``key`` is new."""
        h = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")
        if h in self._recent:
            return False
        i = int(np.searchsorted(self._sorted, np.uint64(h)))
        if i < self._sorted.size and int(self._sorted[i]) == h:
            return False
        self._recent.add(h)
        if len(self._recent) >= self.MERGE:
            merged = np.concatenate([self._sorted, np.fromiter(self._recent, np.uint64, len(self._recent))])
            merged.sort()
            self._sorted = merged
            self._recent = set()
        return True


# ---- the run -------------------------------------------------------------------------------------
def ingest_batch(
    config: IngestConfig,
    output_dir: str | Path,
    rejected_path: str | Path,
    *,
    storage_config: StorageConfig | None = None,
    quiet: bool = False,
) -> IngestResult:
    """Ingest ``config.source_uri`` into ``output_dir`` (see the module docstring).

    Raises :class:`NoUsableRows` (a ValueError) when no row could be used, after writing
    ``rejected_path``; a ValueError naming the file and column for a manifest without its
    location column; FileNotFoundError for a source that does not exist.
    """
    start = time.perf_counter()
    output_dir, rejected_path = Path(output_dir), Path(rejected_path)
    source = sources.detect_kind(config.source_uri, config.source_kind, storage_config)
    result = IngestResult(source_uri=config.source_uri, kind=source.kind, detected=source.detected)
    if source.kind == KIND_DATASET:
        _copy_dataset(source.uri, output_dir, result, storage_config)
        _write_rejected(rejected_path, [])
        result.seconds = time.perf_counter() - start
        return result
    now = datetime.now(UTC)
    if source.kind == KIND_IMAGES:
        rows, extras, total = _image_rows(source.uri, config, result, now, storage_config)
        _run(rows, extras, total, config, output_dir, rejected_path, result, storage_config, quiet)
    else:
        result.manifest = source.uri
        with sources.open_manifest(source.uri, storage_config) as manifest:
            rows, extras = _manifest_rows(manifest, config, result, now)
            _run(
                rows, extras, manifest.rows, config, output_dir, rejected_path, result, storage_config, quiet
            )
    result.seconds = time.perf_counter() - start
    return result


def _copy_dataset(uri: str, output_dir: Path, result: IngestResult, config: StorageConfig | None) -> None:
    from components.common.batches import dataset_splits
    from components.common.dataset_folder import open_dataset_dict

    tmp = files.tmp_sibling(output_dir)
    try:
        copied = storage.download_prefix(uri, tmp, config=config)
        if not copied.files:
            raise FileNotFoundError(f"source_uri={uri!r}: the data-stage folder is missing or empty")
        result.splits = dataset_splits(tmp, f"source_uri={uri!r}")
        dd = open_dataset_dict(tmp, result.splits)
        result.rows_seen = result.rows_written = len(dd[schema.PRODUCTION])
        result.output_bytes = copied.bytes
        result.time_source = f"the folder's {C.PREDICTION_TS!r} column"
        del dd
        files.replace_dir(tmp, output_dir)
    finally:
        if tmp.exists():
            import shutil

            shutil.rmtree(tmp)


def _image_rows(
    folder: str,
    config: IngestConfig,
    result: IngestResult,
    now: datetime,
    storage_config: StorageConfig | None,
) -> tuple[Iterator[_Row | _Aside], tuple[str, ...], int | None]:
    if config.time_fallback == TIME_NONE:
        raise ValueError(
            f"source_uri={folder!r}: a folder of images without a manifest has no prediction times, and "
            "time_fallback='none'; add a manifest (manifest.csv|jsonl|parquet) or pass time_fallback=mtime|now"
        )
    result.time_source = (
        "each image file's modification time (no manifest: when the file was written, not when it was served)"
        if config.time_fallback == TIME_MTIME
        else f"the ingest run's time {now.isoformat()} (no manifest)"
    )

    def rows() -> Iterator[_Row | _Aside]:
        for i, f in enumerate(sources.list_files(folder, storage_config)):
            if not f.relative.lower().endswith(sources.IMAGE_SUFFIXES):
                yield _Aside(
                    i,
                    f.location,
                    sources.NOT_AN_IMAGE,
                    f"{f.relative}: not {'/'.join(sources.IMAGE_SUFFIXES)}",
                    None,
                )
                continue
            ts = (f.mtime or now) if config.time_fallback == TIME_MTIME else now
            yield _Row(
                i, f.location, None, ts, _hash_id(f.location), schema.NO_LABEL, None, None, None, {}, f.size
            )

    return rows(), (), None


def _manifest_rows(
    manifest: sources.Manifest, config: IngestConfig, result: IngestResult, now: datetime
) -> tuple[Iterator[_Row | _Aside], tuple[str, ...]]:
    cols = set(manifest.columns)
    if config.location_column not in cols:
        raise ValueError(
            f"manifest {manifest.uri}: no column {config.location_column!r} (location_column); "
            f"its columns are {', '.join(manifest.columns) or 'none'}"
        )
    ts_col = config.timestamp_column if config.timestamp_column in cols else None
    if ts_col is not None:
        result.time_source = f"the manifest's column {ts_col!r}"
    elif config.time_fallback == TIME_NONE:
        raise ValueError(
            f"manifest {manifest.uri}: no column {config.timestamp_column!r} (timestamp_column) and "
            f"time_fallback='none'; its columns are {', '.join(manifest.columns)}"
        )
    elif config.time_fallback == TIME_MTIME:
        result.time_source = (
            f"each image object's modification time (the manifest has no {config.timestamp_column!r} column)"
        )
    else:
        result.time_source = f"the ingest run's time {now.isoformat()} (the manifest has no {config.timestamp_column!r} column)"
    mapped = {
        config.location_column,
        config.timestamp_column,
        config.prediction_id_column,
        config.label_column,
        config.served_label_column,
        config.served_score_column,
    }
    reserved = set(C.ALL) | set(S.ALL)
    extras: dict[str, str] = {}
    for name in manifest.columns:
        if name in mapped:
            continue
        out = name
        while out in reserved or out in extras.values():
            out = EXTRA_PREFIX + out
        if out != name:
            result.renamed[name] = out
        extras[name] = out
    result.extra_columns = tuple(extras.values())
    id_col = config.prediction_id_column if config.prediction_id_column in cols else None
    label_col = config.label_column if config.label_column in cols else None
    served_col = config.served_label_column if config.served_label_column in cols else None
    score_col = config.served_score_column if config.served_score_column in cols else None
    base = sources.manifest_folder(manifest.uri)
    seen = _Seen()

    def rows() -> Iterator[_Row | _Aside]:
        for i, record in sources.read_manifest(manifest, config.chunk_rows):
            if isinstance(record, Rejected):
                yield _Aside(i, "", record.reason, record.detail, None)
                continue
            raw_location = record.get(config.location_column)
            location = "" if _blank(raw_location) else str(raw_location).strip()
            try:
                location = sources.resolve_location(raw_location, base)
                ts = (
                    parse_timestamp(record.get(ts_col))
                    if ts_col
                    else (now if config.time_fallback == TIME_NOW else None)
                )
                label = parse_label(record.get(label_col)) if label_col else None
                served = (
                    parse_label(record.get(served_col), sources.UNKNOWN_SERVED_LABEL) if served_col else None
                )
                score = parse_score(record.get(score_col)) if score_col else None
                pid = (
                    None
                    if not id_col or _blank(record.get(id_col))
                    else str(_text(record.get(id_col))).strip()
                )
                if pid is not None:
                    if not seen.add("id\0" + pid):
                        raise Rejected(
                            sources.DUPLICATE_ID, f"prediction id {pid!r} already ingested from this batch"
                        )
                    image_id = pid
                else:
                    image_id = _hash_id(location)
                    if not seen.add("id\0" + image_id):
                        if ts is None:
                            raise Rejected(
                                sources.DUPLICATE_ID,
                                f"{location} again, and no prediction id or timestamp tells the rows apart",
                            )
                        image_id = _hash_id(f"{location}\n{ts.isoformat()}")
                        if not seen.add("id\0" + image_id):
                            raise Rejected(
                                sources.DUPLICATE_ID, f"{location} at {ts.isoformat()} already ingested"
                            )
            except Rejected as exc:
                yield _Aside(i, location, exc.reason, exc.detail, record)
                continue
            yield _Row(
                i,
                location,
                record,
                ts,
                image_id,
                schema.NO_LABEL if label is None else label,
                pid,
                served,
                score,
                {out: _text(record.get(name)) for name, out in extras.items()},
            )

    return rows(), tuple(extras.values())


def _convert(row: _Row, config: IngestConfig, storage_config: StorageConfig | None) -> _Done | _Aside:
    """Read and convert one row's image (runs in a worker thread)."""
    try:
        ts = row.ts
        if ts is None:  # the manifest has no time: the object's modification time
            stat = (
                sources.object_stat(row.location, storage_config)
                if not row.location.startswith(sources.URL_SCHEMES)
                else None
            )
            if stat is None:
                raise Rejected(
                    sources.MISSING
                    if not row.location.startswith(sources.URL_SCHEMES)
                    else sources.BAD_TIMESTAMP,
                    f"{row.location}: no such object"
                    if not row.location.startswith(sources.URL_SCHEMES)
                    else f"{row.location}: an http(s) link has no modification time; give a timestamp column",
                )
            if stat[1] is None:
                raise Rejected(sources.BAD_TIMESTAMP, f"{row.location}: the store gives no modification time")
            row.size, ts = stat[0], stat[1]
        data = sources.read_object(row.location, config.max_image_bytes, storage_config, row.size)
        image = to_greyscale_png(data, config.max_image_side)
        del data
    except Rejected as exc:
        return _Aside(row.row, row.location, exc.reason, exc.detail, row.record)
    except Exception as exc:  # noqa: BLE001 - one bad object must not stop the batch; the reason is kept
        return _Aside(row.row, row.location, sources.READ_ERROR, f"{type(exc).__name__}: {exc}", row.record)
    return _Done(
        row,
        image.png,
        ts,
        image.width,
        image.height,
        image.source_format,
        image.source_mode,
        image.resized,
        image.reencoded,
    )


def features(extra_columns: Iterable[str]) -> Any:
    """The ``datasets.Features`` of an ingested production split."""
    import datasets

    feats = {
        C.IMAGE: datasets.Image(),
        C.LABEL: datasets.ClassLabel(names=list(schema.CLASS_NAMES)),
        C.PREDICTION_TS: datasets.Value(str(schema.TIMESTAMP_TYPE)),
        C.IMAGE_ID: datasets.Value("string"),
        C.URL: datasets.Value("string"),
        C.DEGRADATION: datasets.Value("string"),
        S.PREDICTION_ID: datasets.Value("string"),
        S.SERVED_LABEL: datasets.Value("int64"),
        S.SERVED_SCORE: datasets.Value("float32"),
    }
    feats.update({name: datasets.Value("string") for name in extra_columns})
    return datasets.Features(feats)


def _table(done: list[_Done], extras: tuple[str, ...], arrow_schema: pa.Schema) -> pa.Table:
    n = len(done)
    image = pa.StructArray.from_arrays(
        [pa.array([d.png for d in done], pa.binary()), pa.array([None] * n, pa.string())],
        names=["bytes", "path"],
    )
    columns: dict[str, pa.Array] = {
        C.IMAGE: image,
        C.LABEL: pa.array([d.row.label for d in done], pa.int64()),
        C.PREDICTION_TS: pa.array([d.ts for d in done], schema.TIMESTAMP_TYPE),
        C.IMAGE_ID: pa.array([d.row.image_id for d in done], pa.string()),
        C.URL: pa.array([d.row.location for d in done], pa.string()),
        C.DEGRADATION: pa.array([schema.DEGRADATION_UNKNOWN] * n, pa.string()),
        S.PREDICTION_ID: pa.array([d.row.prediction_id for d in done], pa.string()),
        S.SERVED_LABEL: pa.array([d.row.served_label for d in done], pa.int64()),
        S.SERVED_SCORE: pa.array([d.row.served_score for d in done], pa.float32()),
    }
    for name in extras:
        columns[name] = pa.array([d.row.extras.get(name) for d in done], pa.string())
    return pa.table([columns[f.name] for f in arrow_schema], schema=arrow_schema)


class _ShardWriter:
    """Arrow shard files of at most :data:`SHARD_BYTES`, written a chunk at a time."""

    def __init__(self, folder: Path, feats: Any) -> None:
        self.folder = folder
        self.feats = feats
        self.parts: list[Path] = []
        self._writer: Any = None
        self._bytes = 0
        self.total_bytes = 0

    def write(self, table: pa.Table) -> None:
        from datasets.arrow_writer import ArrowWriter

        if self._writer is None or self._bytes + table.nbytes > SHARD_BYTES:
            self._close()
            path = self.folder / f"part-{len(self.parts):05d}.arrow"
            self.parts.append(path)
            self._writer = ArrowWriter(features=self.feats, path=str(path))
            self._bytes = 0
        self._writer.write_table(table)
        self._bytes += table.nbytes
        self.total_bytes += table.nbytes

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.finalize()
            self._writer.close()
            self._writer = None

    def finish(self, output_dir: Path, fingerprint: str) -> None:
        """Lay the shards out as ``DatasetDict.save_to_disk`` does, then move the folder into place."""
        import datasets

        self._close()
        layout = self.folder / "layout"
        empty = datasets.Dataset(
            self.feats.arrow_schema.empty_table(),
            info=datasets.DatasetInfo(description=DESCRIPTION, features=self.feats),
            split=datasets.NamedSplit(schema.PRODUCTION),
            fingerprint=fingerprint,
        )
        # datasets writes dataset_dict.json, state.json and dataset_info.json (no data files for 0 rows);
        # the shards already written are then named as it names them and listed in state.json.
        from datasets.utils.tqdm import (
            are_progress_bars_disabled,
            disable_progress_bars,
            enable_progress_bars,
        )

        was_disabled = are_progress_bars_disabled()
        disable_progress_bars()  # its bar would count the 0 rows of the empty split
        try:
            datasets.DatasetDict({schema.PRODUCTION: empty}).save_to_disk(str(layout))
        finally:
            if not was_disabled:
                enable_progress_bars()
        split_dir = layout / schema.PRODUCTION
        names = [f"data-{i:05d}-of-{len(self.parts):05d}.arrow" for i in range(len(self.parts))]
        for part, name in zip(self.parts, names, strict=True):
            part.rename(split_dir / name)
        state_file = split_dir / "state.json"
        state = json.loads(state_file.read_text(encoding="utf-8"))
        state["_data_files"] = [{"filename": name} for name in names]
        state_file.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
        files.replace_dir(layout, output_dir)


def _write_rejected(path: Path, asides: list[_Aside], writer: Any = None) -> None:
    table = pa.table(
        {
            "row": pa.array([a.row for a in asides], pa.int64()),
            "location": pa.array([a.location for a in asides], pa.string()),
            "reason": pa.array([a.reason for a in asides], pa.string()),
            "detail": pa.array([a.detail for a in asides], pa.string()),
            "record": pa.array(
                [
                    None if a.record is None else json.dumps(a.record, default=str, ensure_ascii=False)
                    for a in asides
                ],
                pa.string(),
            ),
        },
        schema=REJECTED_SCHEMA,
    )
    if writer is not None:
        writer.write_table(table)
    else:
        files.write_with_atomic(path, lambda tmp: pq.write_table(table, tmp))


def _chunks(rows: Iterator[_Row | _Aside], size: int) -> Iterator[list[_Row | _Aside]]:
    chunk: list[_Row | _Aside] = []
    for r in rows:
        chunk.append(r)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _run(
    rows: Iterator[_Row | _Aside],
    extras: tuple[str, ...],
    total: int | None,
    config: IngestConfig,
    output_dir: Path,
    rejected_path: Path,
    result: IngestResult,
    storage_config: StorageConfig | None,
    quiet: bool,
) -> None:
    feats = features(extras)
    arrow_schema = feats.arrow_schema
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    rejected_path.parent.mkdir(parents=True, exist_ok=True)
    work = files.tmp_sibling(output_dir, "ingest")
    work.mkdir(parents=True, exist_ok=True)
    shards = _ShardWriter(work, feats)
    digest = hashlib.sha256(json.dumps([config.source_uri, repr(config)]).encode())
    try:
        with (
            files.atomic_path(rejected_path) as rejected_tmp,
            pq.ParquetWriter(rejected_tmp, REJECTED_SCHEMA) as rejected_writer,
            ThreadPoolExecutor(config.read_workers, thread_name_prefix="ingest") as pool,
            tqdm(total=total, desc="ingest", unit="row", disable=quiet, mininterval=1.0) as bar,
        ):
            for chunk in _chunks(rows, config.chunk_rows):
                pending = [r for r in chunk if isinstance(r, _Row)]
                converted = iter(pool.map(lambda r: _convert(r, config, storage_config), pending))
                done: list[_Done] = []
                asides: list[_Aside] = []
                for r in chunk:
                    out = next(converted) if isinstance(r, _Row) else r
                    if isinstance(out, _Done):
                        done.append(out)
                    else:
                        asides.append(out)
                for a in asides:
                    result.rejected[a.reason] += 1
                if asides:
                    _write_rejected(rejected_path, asides, rejected_writer)
                if done:
                    _account(done, result)
                    for d in done:
                        digest.update(d.row.image_id.encode())
                    shards.write(_table(done, extras, arrow_schema))
                result.rows_seen += len(chunk)
                bar.update(len(chunk))
                del done, asides, chunk, pending
        if result.rows_written == 0:
            raise NoUsableRows(_no_rows_message(result, rejected_path))
        result.shards = len(shards.parts)
        result.output_bytes = shards.total_bytes
        shards.finish(output_dir, digest.hexdigest()[:16])
    finally:
        if shards._writer is not None:
            shards._close()
        if work.exists():
            import shutil

            shutil.rmtree(work)


def _account(done: list[_Done], result: IngestResult) -> None:
    for d in done:
        result.rows_written += 1
        result.labelled += d.row.label != schema.NO_LABEL
        result.served += d.row.served_label is not None
        result.with_prediction_id += d.row.prediction_id is not None
        result.formats[d.fmt] += 1
        result.modes[d.mode] += 1
        result.resized += d.resized
        result.reencoded += d.reencoded
        small, large = min(d.width, d.height), max(d.width, d.height)
        result.min_side = small if result.rows_written == 1 else min(result.min_side, small)
        result.max_side = max(result.max_side, large)
        result.first_ts = d.ts if result.first_ts is None else min(result.first_ts, d.ts)
        result.last_ts = d.ts if result.last_ts is None else max(result.last_ts, d.ts)


def _no_rows_message(result: IngestResult, rejected_path: Path) -> str:
    if result.rows_seen == 0:
        return f"source_uri={result.source_uri!r}: the batch is empty ({result.detected}); no rows to ingest"
    top = ", ".join(f"{reason} {n}" for reason, n in result.rejected.most_common(5))
    return (
        f"source_uri={result.source_uri!r}: no usable row among {result.rows_seen} ({top}); "
        f"every row is listed with its reason in {rejected_path}"
    )
