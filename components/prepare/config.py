"""The prepare stage's parameters: one typed Config, the source of its command line and component.

A light module (stdlib and ``components.common`` only): compiling a pipeline or ``--help`` does
not import pyarrow or datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from components.common import files
from components.common.config import param

NOW_EXAMPLE = "2026-11-28T12:00:00Z"


def parse_now(now: str | datetime | None) -> datetime:
    """``now`` as an aware UTC datetime; ``""`` or None = the current UTC time.

    A time without offset is UTC. Anything else than an ISO 8601 time raises a ValueError naming
    ``now``.
    """
    if now is None or now == "":
        return datetime.now(UTC)
    try:
        return files.parse_utc(now, "now", NOW_EXAMPLE)
    except ValueError as exc:
        raise ValueError(f"{exc}, or '' for the current time") from None


@dataclass(frozen=True)
class PrepareConfig:
    """How embed outputs become prepared records (the paths are arguments of ``prepare_records``)."""

    image_store: str = param(
        "",
        "where the PNG images go: '' = an images/ folder inside the prepared folder; "
        "a local folder; or a gs:// or s3:// prefix (object storage)",
    )
    now: str = param(
        "",
        f"ISO 8601 time the newest production timestamp is shifted to (e.g. {NOW_EXAMPLE}); "
        "'' = the current UTC time",
    )
    chunk_rows: int = param(4096, "rows read, converted and written per chunk", component=False)
    image_workers: int = param(8, "threads writing the PNG files", component=False)

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows={self.chunk_rows}: expected a positive number of rows")
        if self.image_workers < 1:
            raise ValueError(f"image_workers={self.image_workers}: expected at least 1")
        parse_now(self.now)  # a bad time fails here, before any file is read
