"""Reading Parquet files that another stage (or a killed run) wrote: a bad file is named, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class CorruptParquetError(ValueError):
    """A Parquet file that cannot be read (truncated, corrupt, or not Parquet); the message names it."""


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def open_parquet(path: Path, fix: str = "write it again") -> pq.ParquetFile:
    """``pq.ParquetFile(path)``; a truncated or corrupt file raises :class:`CorruptParquetError` naming it.

    ``fix`` says what to do about it (e.g. "run prepare again").
    """
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise CorruptParquetError(
            f"{path}: not a readable Parquet file ({_one_line(exc)}); expected a complete Parquet file "
            f"(truncated or corrupt? {fix})"
        ) from None


def iter_parquet(path: Path, fix: str = "write it again", **kw: Any) -> Iterator[pa.RecordBatch]:
    """``iter_batches(**kw)`` of ``path``; a file corrupt part-way raises :class:`CorruptParquetError` naming it."""
    parquet = open_parquet(path, fix)
    try:
        yield from parquet.iter_batches(**kw)
    except (pa.ArrowException, OSError) as exc:
        raise CorruptParquetError(
            f"{path}: reading failed part-way ({_one_line(exc)}); the file is truncated or corrupt: {fix}"
        ) from None
