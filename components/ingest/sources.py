"""Where a production batch's rows come from: what the source is, its manifest, its files, their bytes.

- :func:`detect_kind` says what ``source_uri`` is (a manifest, a data-stage folder, a folder of
  images) without reading more than a few object headers.
- :func:`read_manifest` streams a CSV, JSON Lines or Parquet manifest row by row (a remote manifest
  is copied to a temporary file first; it is text, about 100 bytes a row).
- :func:`list_files` streams the files under a folder or bucket prefix with their size and
  modification time, a page at a time.
- :func:`read_object` reads one image's bytes from a local path, ``gs://``, ``s3://``, ``minio://``
  (through ``components.common.storage``) or a plain ``http(s)://`` URL, refusing anything larger
  than a limit, and raises :class:`Rejected` with a reason when it cannot.
"""

from __future__ import annotations

import csv
import json
import os
import posixpath
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from components.common import storage
from components.common.storage import StorageConfig
from components.ingest.config import KIND_AUTO, KIND_DATASET, KIND_IMAGES, KIND_MANIFEST

# Why a row is kept aside (the ``reason`` column of rejected.parquet).
MISSING = "missing"  # no file or object at the location
UNREADABLE = "unreadable"  # bytes that are not a PNG, JPEG or WebP image, or a truncated one
EMPTY = "empty"  # a file of zero bytes
TOO_LARGE = "too_large"  # more bytes than max_image_bytes, or more pixels than MAX_PIXELS
READ_ERROR = "read_error"  # the store answered with an error other than "not found"
BAD_LOCATION = "bad_location"  # the location cell is empty or names no store this stage reads
BAD_TIMESTAMP = "bad_timestamp"  # the timestamp cell is empty or does not parse
UNKNOWN_LABEL = "unknown_label"  # the label is neither a class name nor a class index
UNKNOWN_SERVED_LABEL = "unknown_served_label"  # the same for the served prediction
BAD_SCORE = "bad_score"  # the served score is not a number in [0, 1]
DUPLICATE_ID = "duplicate_id"  # a prediction id (or image) already ingested from this batch
NOT_AN_IMAGE = "not_an_image"  # a file of a folder whose name does not end in an image suffix
BAD_RECORD = "bad_record"  # a manifest line that is not a record (bad JSON, too many CSV fields)
REASONS: tuple[str, ...] = (
    MISSING,
    UNREADABLE,
    EMPTY,
    TOO_LARGE,
    READ_ERROR,
    BAD_LOCATION,
    BAD_TIMESTAMP,
    UNKNOWN_LABEL,
    UNKNOWN_SERVED_LABEL,
    BAD_SCORE,
    DUPLICATE_ID,
    NOT_AN_IMAGE,
    BAD_RECORD,
)

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")
MANIFEST_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
# A folder holding one of these files (at its top) is read through it.
MANIFEST_NAMES: tuple[str, ...] = ("manifest.csv", "manifest.jsonl", "manifest.parquet")
DATASET_DICT_FILE = "dataset_dict.json"  # what DatasetDict.save_to_disk writes at the top
URL_SCHEMES = ("http://", "https://")
LIST_PAGE_SIZE = storage.LIST_PAGE_SIZE


class Rejected(Exception):  # noqa: N818 - a row's verdict, not an error of the run
    """A row that cannot be ingested: ``reason`` (one of :data:`REASONS`) and a detail for people."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Source:
    """What ``source_uri`` turned out to be: its kind and, for a manifest, the manifest's URI."""

    kind: str  # KIND_IMAGES, KIND_MANIFEST or KIND_DATASET
    uri: str  # the folder (images, dataset) or the manifest file
    detected: str  # how the kind was decided, for the summary


@dataclass(frozen=True)
class ListedFile:
    """One file under a folder: its location (absolute path or URI), size and modification time."""

    location: str
    relative: str
    size: int
    mtime: datetime | None


# ---- what the source is ------------------------------------------------------------------------
def manifest_format(uri: str) -> str | None:
    """``csv``, ``jsonl`` or ``parquet`` from the file name's suffix; None for anything else."""
    return MANIFEST_FORMATS.get(Path(urlsplit(uri).path if "://" in uri else uri).suffix.lower())


def detect_kind(uri: str, kind: str, config: StorageConfig | None) -> Source:
    """What ``uri`` holds: ``kind`` when it is not ``auto``, else detected (see IngestConfig.source_kind)."""
    uri = uri.strip()
    if not storage.is_remote(uri) and not uri.startswith(URL_SCHEMES):
        uri = str(Path(uri).expanduser().resolve())
    if kind == KIND_MANIFEST:
        if manifest_format(uri) is None:
            raise ValueError(
                f"source_uri={uri!r}: source_kind='manifest' needs a file ending in "
                f"{', '.join(MANIFEST_FORMATS)}"
            )
        return Source(KIND_MANIFEST, uri, "source_kind='manifest'")
    if kind in (KIND_IMAGES, KIND_DATASET):
        return Source(kind, uri.rstrip("/") if storage.is_remote(uri) else uri, f"source_kind={kind!r}")
    if kind != KIND_AUTO:
        raise ValueError(f"source_kind={kind!r}: expected auto, images, manifest or dataset")
    if manifest_format(uri) is not None:
        return Source(KIND_MANIFEST, uri, f"a {manifest_format(uri)} file")
    folder = uri.rstrip("/") if storage.is_remote(uri) else uri
    if storage.is_remote(folder) or uri.startswith(URL_SCHEMES):
        if uri.startswith(URL_SCHEMES):
            raise ValueError(
                f"source_uri={uri!r}: an http(s) source must be a manifest file (.csv, .jsonl, .parquet); "
                "folders are read from a local path, gs://, s3:// or minio://"
            )
    elif not Path(folder).exists():
        raise FileNotFoundError(f"source_uri={uri!r}: no such file or folder")
    elif Path(folder).is_file():
        raise ValueError(
            f"source_uri={uri!r}: a file that is not a manifest; expected a folder or a file ending in "
            f"{', '.join(MANIFEST_FORMATS)}"
        )
    if object_stat(storage.join(folder, DATASET_DICT_FILE), config) is not None:
        return Source(KIND_DATASET, folder, f"a folder with {DATASET_DICT_FILE}")
    for name in MANIFEST_NAMES:
        manifest = storage.join(folder, name)
        if object_stat(manifest, config) is not None:
            return Source(KIND_MANIFEST, manifest, f"a folder with {name}")
    return Source(KIND_IMAGES, folder, "a folder without a manifest or dataset_dict.json")


# ---- object metadata and listing ---------------------------------------------------------------
def object_stat(uri: str, config: StorageConfig | None) -> tuple[int, datetime | None] | None:
    """Size and modification time of the file or object at ``uri``; None when there is none."""
    if not storage.is_remote(uri):
        try:
            st = os.stat(uri)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not Path(uri).is_file():
            return None
        return st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)
    config = config or StorageConfig.from_env()
    scheme, bucket, key = storage.split_uri(uri)
    try:
        if scheme == "gs":
            blob = (
                storage._gcs_client(config)
                .bucket(bucket)
                .get_blob(
                    key,
                    timeout=(config.connect_timeout, config.read_timeout),
                    retry=storage._gcs_retry(config),
                )
            )
            if blob is None:
                return None
            return int(blob.size or 0), _aware(blob.updated)
        head = storage._s3_client(config, scheme).head_object(Bucket=bucket, Key=key)
        return int(head["ContentLength"]), _aware(head.get("LastModified"))
    except Exception as exc:
        if storage._is_not_found(exc) or _s3_not_found(exc):
            return None
        raise storage.StorageError(
            f"reading the metadata of {uri}{storage._where(config, scheme)} failed: {exc}"
        ) from exc


def _s3_not_found(exc: Exception) -> bool:
    """head_object answers 404 without an error code body ("Not Found")."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status == 404 or response.get("Error", {}).get("Code") in ("404", "NotFound")
    return False


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def list_files(folder: str, config: StorageConfig | None) -> Iterator[ListedFile]:
    """Every file under ``folder`` (local, gs://, s3://, minio://) in name order, with size and time.

    Local folders are walked one directory at a time; remote prefixes are listed a page
    (:data:`LIST_PAGE_SIZE` objects) at a time, so memory does not grow with the folder.
    """
    if not storage.is_remote(folder):
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"source_uri={folder!r}: no such folder")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                st = path.stat()
                yield ListedFile(
                    str(path),
                    path.relative_to(root).as_posix(),
                    st.st_size,
                    datetime.fromtimestamp(st.st_mtime, UTC),
                )
        return
    config = config or StorageConfig.from_env()
    scheme, bucket, prefix = storage.split_prefix(folder)
    base = f"{scheme}://{bucket}"
    try:
        if scheme == "gs":
            blobs = storage._gcs_client(config).list_blobs(
                bucket,
                prefix=prefix,
                page_size=LIST_PAGE_SIZE,
                timeout=(config.connect_timeout, config.read_timeout),
                retry=storage._gcs_retry(config),
            )
            for blob in blobs:
                if not blob.name.endswith("/"):
                    yield ListedFile(
                        f"{base}/{blob.name}",
                        blob.name[len(prefix) :],
                        int(blob.size or 0),
                        _aware(blob.updated),
                    )
            return
        pages = (
            storage._s3_client(config, scheme)
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE})
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    yield ListedFile(
                        f"{base}/{obj['Key']}",
                        obj["Key"][len(prefix) :],
                        int(obj["Size"]),
                        _aware(obj.get("LastModified")),
                    )
    except storage.StorageError:
        raise
    except Exception as exc:
        if storage._is_not_found(exc):
            raise FileNotFoundError(f"{folder}{storage._where(config, scheme)}: no such bucket") from exc
        raise storage.StorageError(f"listing {folder}{storage._where(config, scheme)} failed: {exc}") from exc


# ---- manifests -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Manifest:
    """An opened manifest: its URI, format, columns (in file order) and number of rows when known."""

    uri: str
    format: str
    columns: tuple[str, ...]
    rows: int | None
    local_path: Path


@contextmanager
def open_manifest(uri: str, config: StorageConfig | None) -> Iterator[Manifest]:
    """The manifest at ``uri`` as a local file (remote ones are copied to a temporary folder)."""
    fmt = manifest_format(uri)
    if fmt is None:
        raise ValueError(f"{uri}: a manifest must end in {', '.join(MANIFEST_FORMATS)}")
    with tempfile.TemporaryDirectory(prefix="ingest-manifest-") as tmp:
        if storage.is_remote(uri) or uri.startswith(URL_SCHEMES):
            local = Path(tmp, "manifest" + Path(urlsplit(uri).path).suffix.lower())
            try:
                data = (
                    storage.read_bytes(uri, config=config)
                    if not _plain_url(uri, config)
                    else _http_get(uri, None, config)
                )
            except Rejected as exc:
                raise FileNotFoundError(f"manifest {uri}: {exc.detail}") from None
            local.write_bytes(data)
            del data
        else:
            local = Path(uri)
            if not local.is_file():
                raise FileNotFoundError(f"manifest {uri}: no such file")
        columns, rows = _header(local, fmt, uri)
        yield Manifest(uri, fmt, columns, rows, local)


def _header(path: Path, fmt: str, uri: str) -> tuple[tuple[str, ...], int | None]:
    """The column names and, where cheap, the number of rows."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            raise ValueError(
                f"manifest {uri}: not a readable Parquet file ({type(exc).__name__}: {exc})"
            ) from None
        return tuple(meta.schema_arrow.names), meta.metadata.num_rows
    if fmt == "csv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise ValueError(
                    f"manifest {uri}: empty file; expected a header line with the column names"
                ) from None
            except (csv.Error, UnicodeDecodeError) as exc:
                raise ValueError(f"manifest {uri}: line 1 is not CSV ({exc})") from None
            rows = sum(1 for _ in fh)
        if len(set(header)) != len(header):
            raise ValueError(f"manifest {uri}: repeated column names in the header {header}")
        return tuple(h.strip() for h in header), rows
    # JSON Lines: a first pass collects the keys, in order of first appearance.
    keys: dict[str, None] = {}
    rows = 0
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if not line.strip():
                continue
            rows += 1
            try:
                record = json.loads(line)
            except ValueError:
                continue  # kept aside as bad_record when the rows are read
            if isinstance(record, dict):
                keys.update(dict.fromkeys(str(k) for k in record))
    return tuple(keys), rows


def read_manifest(
    manifest: Manifest, batch_rows: int = 1024
) -> Iterator[tuple[int, dict[str, Any] | Rejected]]:
    """``(row, record)`` for every row in file order (0-based); a :class:`Rejected` for a broken one."""
    if manifest.format == "parquet":
        import pyarrow.parquet as pq

        row = 0
        for batch in pq.ParquetFile(manifest.local_path).iter_batches(batch_size=batch_rows):
            for record in batch.to_pylist():
                yield row, record
                row += 1
        return
    if manifest.format == "csv":
        with open(manifest.local_path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            next(reader)
            width = len(manifest.columns)
            for row, cells in enumerate(reader):
                if not cells:
                    yield row, Rejected(BAD_RECORD, f"line {reader.line_num}: an empty line")
                elif len(cells) > width:
                    yield (
                        row,
                        Rejected(
                            BAD_RECORD, f"line {reader.line_num}: {len(cells)} fields, the header has {width}"
                        ),
                    )
                else:
                    yield row, dict(zip(manifest.columns, cells + [""] * (width - len(cells)), strict=True))
        return
    with open(manifest.local_path, encoding="utf-8-sig") as fh:
        row = 0
        for line_num, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                yield row, Rejected(BAD_RECORD, f"line {line_num}: not JSON ({exc})")
            else:
                if isinstance(record, dict):
                    yield row, {str(k): v for k, v in record.items()}
                else:
                    yield (
                        row,
                        Rejected(
                            BAD_RECORD, f"line {line_num}: a JSON {type(record).__name__}, not an object"
                        ),
                    )
            row += 1


def resolve_location(value: Any, base: str) -> str:
    """A manifest's location cell as an absolute path or URI; ``base`` is the manifest's folder."""
    if value is None or not str(value).strip():
        raise Rejected(BAD_LOCATION, "the location is empty")
    text = str(value).strip()
    if text.startswith((*storage.REMOTE_SCHEMES, *URL_SCHEMES)):
        return text
    if text.startswith("file://"):
        return unquote(urlsplit(text).path)
    if "://" in text:
        raise Rejected(
            BAD_LOCATION, f"{text!r}: unknown scheme; expected a path, gs://, s3://, minio://, http(s)://"
        )
    if storage.is_remote(base):
        if text.startswith("/"):
            raise Rejected(BAD_LOCATION, f"{text!r}: an absolute local path in a manifest stored at {base}")
        joined = posixpath.normpath(posixpath.join(base.split("://", 1)[1], text))
        return f"{base.split('://', 1)[0]}://{joined}"
    if base.startswith(URL_SCHEMES):
        parts = urlsplit(base)
        return parts._replace(path=posixpath.normpath(posixpath.join(parts.path or "/", text))).geturl()
    return os.path.normpath(os.path.join(base, text))


def manifest_folder(uri: str) -> str:
    """The folder relative locations of the manifest at ``uri`` are resolved against."""
    if storage.is_remote(uri) or uri.startswith(URL_SCHEMES):
        return uri.rsplit("/", 1)[0]
    return str(Path(uri).parent)


# ---- reading one image's bytes ---------------------------------------------------------------------
def _plain_url(location: str, config: StorageConfig | None) -> bool:
    """An http(s) URL that is not a link into a configured bucket (read with urllib, not a client)."""
    if not location.startswith(URL_SCHEMES):
        return False
    try:
        storage.uri_from_link(location, config or StorageConfig.from_env())
    except ValueError:
        return True
    return False


def _http_get(url: str, max_bytes: int | None, config: StorageConfig | None) -> bytes:
    config = config or StorageConfig.from_env()
    try:
        with urllib.request.urlopen(url, timeout=config.connect_timeout + config.read_timeout) as resp:  # noqa: S310
            data: bytes = resp.read() if max_bytes is None else resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise Rejected(MISSING, f"{url}: HTTP {exc.code}") from None
        raise Rejected(READ_ERROR, f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Rejected(READ_ERROR, f"{url}: {exc}") from None
    return data


def read_object(
    location: str, max_bytes: int, config: StorageConfig | None, size: int | None = None
) -> bytes:
    """The bytes of one image; :class:`Rejected` (missing, empty, too_large, read_error) when not usable.

    ``size``: the size a listing already gave (checked before anything is read). A local file is
    checked before it is read; a remote object is checked after (one request, not two).
    """
    if size is not None and size > max_bytes:
        raise Rejected(TOO_LARGE, f"{size} bytes > max_image_bytes={max_bytes}")
    if location.startswith(URL_SCHEMES) and _plain_url(location, config):
        data = _http_get(location, max_bytes, config)
    elif not storage.is_remote(location) and not location.startswith(URL_SCHEMES):
        path = Path(location)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise Rejected(MISSING, f"{location}: no such file") from None
        if not path.is_file():
            raise Rejected(MISSING, f"{location}: not a file")
        if st.st_size > max_bytes:
            raise Rejected(TOO_LARGE, f"{st.st_size} bytes > max_image_bytes={max_bytes}")
        data = path.read_bytes()
    else:
        try:
            data = storage.read_bytes(location, config=config)
        except FileNotFoundError as exc:
            raise Rejected(MISSING, str(exc)) from None
        except (storage.StorageError, ValueError) as exc:
            raise Rejected(READ_ERROR, str(exc)) from None
    if len(data) > max_bytes:
        raise Rejected(TOO_LARGE, f"more than max_image_bytes={max_bytes} bytes")
    if not data:
        raise Rejected(EMPTY, "the file has 0 bytes")
    return data
