"""Object storage: write and read bytes at a URI, and the link a record points to.

``gs://bucket/key`` and ``s3://bucket/key`` (``minio://`` is the S3 API too) go to
object storage; anything else is a local path.  Remote back ends are added by
the pipeline work (issue 4); the local back end is complete.
"""

from __future__ import annotations

import os
from pathlib import Path

REMOTE_SCHEMES = ("gs://", "s3://", "minio://")


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE_SCHEMES)


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local folder or a bucket URI."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def write_bytes(uri: str, data: bytes, content_type: str | None = None) -> str:
    """Write ``data`` at ``uri`` and return the link a record should carry."""
    if is_remote(uri):
        raise NotImplementedError(f"{uri}: remote object storage is not wired yet")
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return str(path)


def read_bytes(uri: str) -> bytes:
    """Read the bytes at a link written by :func:`write_bytes`."""
    if is_remote(uri):
        raise NotImplementedError(f"{uri}: remote object storage is not wired yet")
    path = Path(uri)
    if not path.is_file():
        raise FileNotFoundError(f"{uri}: no such file")
    return path.read_bytes()
