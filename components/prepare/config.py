"""The prepare stage's parameters: one typed Config, the source of its command line and component.

A light module (stdlib and ``components.common`` only): compiling a pipeline or ``--help`` does
not import pyarrow or datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from components.common import files, storage
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
        "where each image is also written as a PNG file that image_link points to (what Arize opens): "
        "a local folder, or a gs://, s3:// or minio:// prefix; '' = none, image_link is null (the "
        "images travel inside the prepared artifact either way, one Parquet file per environment)",
    )
    now: str = param(
        "",
        f"ISO 8601 time the newest production timestamp is shifted to (e.g. {NOW_EXAMPLE}); "
        "'' = the current UTC time",
    )
    chunk_rows: int = param(4096, "rows read, converted and written per chunk", component=False)
    image_workers: int = param(8, "threads writing the PNG files to the image store", component=False)
    links: str = param(
        "",
        "with an image_store, the image_link each record carries: 'signed' = a signed URL that expires after link_expiry "
        "(gs://, s3://, minio:// stores; what Arize can open without the store's credentials), "
        "'public' = link_base + the image's path in the store, 'url' = the plain object URL, "
        f"'uri' = the gs:// or s3:// URI; '' = env {storage.ENV_LINKS} or 'url'",
        choices=("", *storage.LINK_STYLES),
    )
    link_expiry: int = param(
        0,
        f"seconds a signed link works, 1 to {storage.MAX_LINK_EXPIRY} (7 days, the V4 limit); "
        f"0 = env {storage.ENV_LINK_EXPIRY} or 7 days",
    )
    link_base: str = param(
        "",
        "with links=public: the public http(s) URL that serves the image store (no credential in it); "
        f"'' = env {storage.ENV_LINK_BASE}",
    )

    def __post_init__(self) -> None:
        if self.chunk_rows < 1:
            raise ValueError(f"chunk_rows={self.chunk_rows}: expected a positive number of rows")
        if self.image_workers < 1:
            raise ValueError(f"image_workers={self.image_workers}: expected at least 1")
        parse_now(self.now)  # a bad time fails here, before any file is read
        if self.links not in ("", *storage.LINK_STYLES):
            raise ValueError(
                f"links={self.links!r}: expected one of {', '.join(storage.LINK_STYLES)} "
                "(or '' for the environment's)"
            )
        if self.link_expiry:
            storage.check_link_expiry(self.link_expiry)
        if self.link_base:
            storage.check_link_base(self.link_base)

    def storage_config(self) -> storage.StorageConfig:
        """The storage configuration of the environment, with this run's link settings on top."""
        overrides: dict[str, Any] = {}
        if self.links:
            overrides["links"] = self.links
        if self.link_expiry:
            overrides["link_expiry"] = self.link_expiry
        if self.link_base:
            overrides["link_base"] = self.link_base
        return storage.StorageConfig.from_env(**overrides)
