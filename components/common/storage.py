"""Object storage: write and read bytes at a URI, and the link a record points to.

``gs://bucket/key`` goes to Google Cloud Storage (``google-cloud-storage``),
``s3://bucket/key`` and ``minio://bucket/key`` to the S3 API (``boto3``; KFP
standalone's store is SeaweedFS behind the S3 API, bucket ``mlpipeline``);
anything else is a local path.

Every remote call has an explicit connect/read timeout and a bounded number of
retries, and the endpoints are injectable (:class:`StorageConfig`) so that tests
point the clients at emulators on loopback.  Nothing is read from the
environment at import time: :meth:`StorageConfig.from_env` reads it when a
function is called without an explicit configuration.

:func:`write_bytes` returns the *link* a record carries (``image_link``): by
default an HTTP(S) URL (``https://storage.googleapis.com/bucket/key``,
``https://bucket.s3.amazonaws.com/key``, or ``{endpoint}/bucket/key`` for a
custom endpoint); ``links="uri"`` returns the ``gs://``/``s3://`` URI instead.
:func:`read_bytes` reads back any of these forms.

Folders: :func:`list_prefix` lists every file under a folder URI page by page, and
:func:`download_prefix` copies them to a local folder in bounded chunks (the monitoring
pipeline's dated production batch).
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

REMOTE_SCHEMES = ("gs://", "s3://", "minio://")
LINK_STYLES = ("url", "uri")
GCS_PUBLIC_BASE = "https://storage.googleapis.com"
# KFP standalone's object store: SeaweedFS behind the S3 API, Service `seaweedfs` (port 9000 maps to
# 8333). The `minio-service` Service is gone since 2.16; the launcher's own default is this one too
# (backend/src/v2/objectstore/config.go, DefaultEndpointInMultiUserMode, at KFP 2.17.0).
DEFAULT_MINIO_ENDPOINT = "http://seaweedfs.kubeflow:9000"

# Environment variables read by StorageConfig.from_env() at call time (never at import).
ENV_GCS_ENDPOINT = "STORAGE_EMULATOR_HOST"  # the name google-cloud-storage itself honours
ENV_S3_ENDPOINT = "AWS_ENDPOINT_URL"  # the name boto3 itself honours
ENV_S3_ENDPOINT_S3 = "AWS_ENDPOINT_URL_S3"
ENV_MINIO_ENDPOINT = "MINIO_ENDPOINT_URL"
ENV_REGION = "AWS_DEFAULT_REGION"
ENV_LINKS = "STORAGE_LINKS"


@dataclass(frozen=True)
class StorageConfig:
    """Endpoints, timeouts and link style for the remote back ends.

    ``gcs_endpoint``: ``None`` for Google; an emulator URL (``http://127.0.0.1:9023``)
    uses anonymous credentials unless ``gcs_anonymous`` is set to False.
    ``s3_endpoint``: ``None`` for AWS; a URL for SeaweedFS, MinIO or moto (path-style).
    ``minio_endpoint``: the endpoint for ``minio://`` URIs (default: KFP standalone's).
    """

    gcs_endpoint: str | None = None
    gcs_project: str | None = None
    gcs_anonymous: bool | None = None
    s3_endpoint: str | None = None
    minio_endpoint: str | None = None
    s3_region: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 3
    links: str = "url"

    def __post_init__(self) -> None:
        if self.links not in LINK_STYLES:
            raise ValueError(f"links={self.links!r}: expected one of {', '.join(LINK_STYLES)}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError(
                f"timeouts must be positive seconds, got connect_timeout={self.connect_timeout}, "
                f"read_timeout={self.read_timeout}"
            )
        if self.retries < 0:
            raise ValueError(f"retries={self.retries}: expected 0 or more")
        for name in ("gcs_endpoint", "s3_endpoint", "minio_endpoint"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("http://", "https://")):
                raise ValueError(f"{name}={value!r}: give a URL starting with http:// or https://")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> StorageConfig:
        """Build a configuration from the environment *now* (at run time)."""
        env = os.environ if environ is None else environ
        gcs = env.get(ENV_GCS_ENDPOINT) or None
        if gcs and not gcs.startswith(("http://", "https://")):
            gcs = f"http://{gcs}"  # google-cloud-storage accepts a bare host:port here
        values: dict[str, Any] = {
            "gcs_endpoint": gcs,
            "s3_endpoint": env.get(ENV_S3_ENDPOINT_S3) or env.get(ENV_S3_ENDPOINT) or None,
            "minio_endpoint": env.get(ENV_MINIO_ENDPOINT) or None,
            "s3_region": env.get(ENV_REGION) or None,
            "links": env.get(ENV_LINKS) or "url",
        }
        values.update(overrides)
        return cls(**values)

    def endpoint_for(self, scheme: str) -> str | None:
        """The HTTP endpoint of ``scheme`` (gs, s3, minio); None: the provider's own."""
        if scheme == "minio":
            return (self.minio_endpoint or self.s3_endpoint or DEFAULT_MINIO_ENDPOINT).rstrip("/")
        if scheme == "s3":
            return self.s3_endpoint.rstrip("/") if self.s3_endpoint else None
        if scheme == "gs":
            return self.gcs_endpoint.rstrip("/") if self.gcs_endpoint else None
        raise ValueError(f"unknown scheme {scheme!r}")


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names a bucket object (gs://, s3://, minio://) rather than a local path."""
    return uri.startswith(REMOTE_SCHEMES)


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local folder or a bucket URI."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(base, *parts))


def split_uri(uri: str) -> tuple[str, str, str]:
    """``gs://bucket/a/b`` -> ``("gs", "bucket", "a/b")``; a clear error for anything else."""
    if not is_remote(uri):
        raise ValueError(
            f"{uri!r}: not an object-storage URI; expected {', '.join(REMOTE_SCHEMES)}bucket/key"
        )
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    if not bucket or not key or key.endswith("/"):
        raise ValueError(f"{uri!r}: expected {scheme}://<bucket>/<key> naming one object")
    return scheme, bucket, key


def link_for(uri: str, config: StorageConfig | None = None) -> str:
    """The link a record carries for the object at ``uri`` (see the module docstring)."""
    config = config or StorageConfig.from_env()
    if not is_remote(uri):
        return str(Path(uri))
    scheme, bucket, key = split_uri(uri)
    if config.links == "uri":
        return uri
    quoted = quote(key, safe="/")
    endpoint = config.endpoint_for(scheme)
    if scheme == "gs":
        return f"{endpoint or GCS_PUBLIC_BASE}/{bucket}/{quoted}"
    if endpoint:
        return f"{endpoint}/{bucket}/{quoted}"
    return f"https://{bucket}.s3.amazonaws.com/{quoted}"


def uri_from_link(link: str, config: StorageConfig | None = None) -> str:
    """Map a link made by :func:`link_for` back to its ``gs://``/``s3://`` URI (or a local path)."""
    if not link.startswith(("http://", "https://")):
        return link
    config = config or StorageConfig.from_env()
    parts = urlsplit(link)
    path = unquote(parts.path.lstrip("/"))
    candidates = [("gs", config.endpoint_for("gs") or GCS_PUBLIC_BASE)]
    s3_endpoint = config.endpoint_for("s3")
    if s3_endpoint:
        candidates.append(("s3", s3_endpoint))
    candidates.append(("minio", config.endpoint_for("minio") or DEFAULT_MINIO_ENDPOINT))
    for scheme, base in candidates:
        if link.startswith(base + "/"):
            return f"{scheme}://{unquote(link[len(base) + 1 :].split('?', 1)[0])}"
    host = parts.hostname or ""
    if host.endswith(".s3.amazonaws.com") or ".s3." in host and host.endswith(".amazonaws.com"):
        return f"s3://{host.split('.s3', 1)[0]}/{path}"
    raise ValueError(
        f"{link!r}: not a link this store wrote; expected gs://, s3://, minio://, a local path, "
        f"or a URL under {', '.join(base for _, base in candidates)}"
    )


_local = threading.local()


def _gcs_client(config: StorageConfig) -> Any:
    """One client per thread and configuration (google-cloud-storage clients are not thread-safe)."""
    clients = _local.__dict__.setdefault("gcs", {})
    if config not in clients:
        clients[config] = _new_gcs_client(config)
    return clients[config]


def _new_gcs_client(config: StorageConfig) -> Any:
    from google.cloud import storage

    kwargs: dict[str, Any] = {"project": config.gcs_project}
    if config.gcs_endpoint:
        kwargs["client_options"] = {"api_endpoint": config.gcs_endpoint}
        anonymous = True if config.gcs_anonymous is None else config.gcs_anonymous
        if anonymous:
            from google.auth.credentials import AnonymousCredentials

            kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
            kwargs["project"] = config.gcs_project or "local-emulator"
    return storage.Client(**kwargs)


def _gcs_retry(config: StorageConfig) -> Any:
    from google.cloud.storage.retry import DEFAULT_RETRY

    # Total time spent retrying: bounded by the configured timeouts and retry count.
    return DEFAULT_RETRY.with_timeout((config.connect_timeout + config.read_timeout) * (config.retries + 1))


@functools.lru_cache(maxsize=8)
def _s3_client(config: StorageConfig, scheme: str) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = config.endpoint_for(scheme)
    botocore_config = Config(
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        retries={"max_attempts": config.retries + 1, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint else "auto"},
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=config.s3_region or "us-east-1",
        config=botocore_config,
    )


def write_bytes(
    uri: str, data: bytes, content_type: str | None = None, *, config: StorageConfig | None = None
) -> str:
    """Write ``data`` at ``uri`` and return the link a record should carry."""
    if not is_remote(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
        return str(path)
    config = config or StorageConfig.from_env()
    scheme, bucket, key = split_uri(uri)
    content_type = content_type or "application/octet-stream"
    try:
        if scheme == "gs":
            blob = _gcs_client(config).bucket(bucket).blob(key)
            # One object upload is atomic in GCS and S3: readers see all of it or nothing.
            blob.upload_from_string(
                data,
                content_type=content_type,
                timeout=(config.connect_timeout, config.read_timeout),
                retry=_gcs_retry(config),
            )
        else:
            _s3_client(config, scheme).put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)
    except Exception as exc:  # re-raised with the URI and endpoint named
        raise StorageError(f"writing {uri}{_where(config, scheme)} failed: {exc}") from exc
    return link_for(uri, config)


def read_bytes(uri: str, *, config: StorageConfig | None = None) -> bytes:
    """Read the bytes at a link written by :func:`write_bytes` (URL, bucket URI or local path)."""
    if uri.startswith(("http://", "https://")):
        config = config or StorageConfig.from_env()
        uri = uri_from_link(uri, config)
    if not is_remote(uri):
        path = Path(uri)
        if not path.is_file():
            raise FileNotFoundError(f"{uri}: no such file")
        return path.read_bytes()
    config = config or StorageConfig.from_env()
    scheme, bucket, key = split_uri(uri)
    try:
        if scheme == "gs":
            blob = _gcs_client(config).bucket(bucket).blob(key)
            data: bytes = blob.download_as_bytes(
                timeout=(config.connect_timeout, config.read_timeout), retry=_gcs_retry(config)
            )
            return data
        response = _s3_client(config, scheme).get_object(Bucket=bucket, Key=key)
        body: bytes = response["Body"].read()
        return body
    except Exception as exc:
        if _is_not_found(exc):
            raise FileNotFoundError(f"{uri}{_where(config, scheme)}: no such object") from exc
        raise StorageError(f"reading {uri}{_where(config, scheme)} failed: {exc}") from exc


class StorageError(OSError):
    """A remote read or write failed; the message names the URI and the endpoint."""


def _where(config: StorageConfig, scheme: str) -> str:
    endpoint = config.endpoint_for(scheme)
    return f" (endpoint {endpoint})" if endpoint else ""


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "code", None)
    if code == 404:
        return True
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {}).get("Code")
        return err in ("NoSuchKey", "404", "NoSuchBucket")
    return False


# --------------------------------------------------------------------------------------------
# Folders: listing and downloading everything under a prefix
# --------------------------------------------------------------------------------------------
LIST_PAGE_SIZE = 1000  # objects per listing request (S3's maximum); pages are read one at a time
DOWNLOAD_CHUNK = 8 * 1024 * 1024  # bytes held in memory at once while an object is copied


@dataclass(frozen=True)
class StoredFile:
    """One file under a prefix: its path relative to the prefix and its size in bytes."""

    relative: str
    size: int


@dataclass(frozen=True)
class CopiedFolder:
    """What :func:`download_prefix` copied: the files (relative paths) and their total size."""

    files: tuple[str, ...]
    bytes: int


def split_prefix(uri: str) -> tuple[str, str, str]:
    """``gs://bucket/a/b/`` -> ``("gs", "bucket", "a/b/")``: a folder URI, its key prefix ending in '/'.

    ``gs://bucket`` (the whole bucket) gives an empty prefix.
    """
    if not is_remote(uri):
        raise ValueError(
            f"{uri!r}: not an object-storage URI; expected {', '.join(REMOTE_SCHEMES)}bucket/folder"
        )
    scheme, rest = uri.split("://", 1)
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ValueError(f"{uri!r}: expected {scheme}://<bucket>/<folder>")
    key = key.strip("/")
    return scheme, bucket, f"{key}/" if key else ""


def _check_relative(relative: str, uri: str) -> str:
    """A listed key below the prefix as a safe relative path (no '..', no absolute path)."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise StorageError(
            f"{uri}: refusing to copy the object {relative!r} (not a plain path below the folder)"
        )
    return "/".join(parts)


def list_prefix(uri: str, *, config: StorageConfig | None = None) -> Iterator[StoredFile]:
    """Every file under the folder ``uri`` (local path, gs://, s3://, minio://), one at a time.

    Remote listings are read page by page (:data:`LIST_PAGE_SIZE` objects a request), so memory stays
    bounded however many objects the folder holds. Folder markers (keys ending in '/') are skipped.
    A folder that does not exist lists nothing.
    """
    if not is_remote(uri):
        root = Path(uri)
        if not root.is_dir():
            return
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            yield StoredFile(path.relative_to(root).as_posix(), path.stat().st_size)
        return
    config = config or StorageConfig.from_env()
    scheme, bucket, prefix = split_prefix(uri)
    try:
        if scheme == "gs":
            blobs = _gcs_client(config).list_blobs(
                bucket,
                prefix=prefix,
                page_size=LIST_PAGE_SIZE,
                timeout=(config.connect_timeout, config.read_timeout),
                retry=_gcs_retry(config),
            )
            for blob in blobs:
                if not blob.name.endswith("/"):
                    yield StoredFile(_check_relative(blob.name[len(prefix) :], uri), int(blob.size or 0))
            return
        paginator = _s3_client(config, scheme).get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": LIST_PAGE_SIZE}
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if not obj["Key"].endswith("/"):
                    yield StoredFile(_check_relative(obj["Key"][len(prefix) :], uri), int(obj["Size"]))
    except StorageError:
        raise
    except Exception as exc:
        if _is_not_found(exc):
            raise FileNotFoundError(f"{uri}{_where(config, scheme)}: no such bucket") from exc
        raise StorageError(f"listing {uri}{_where(config, scheme)} failed: {exc}") from exc


def download_prefix(uri: str, dest: str | Path, *, config: StorageConfig | None = None) -> CopiedFolder:
    """Copy every file under the folder ``uri`` into the local folder ``dest`` (created if needed).

    Objects are streamed to disk in chunks of at most :data:`DOWNLOAD_CHUNK` bytes, each written to a
    temporary name and renamed when complete. Returns the files copied (paths relative to ``uri``)
    and their total size; an empty or missing folder copies nothing (the caller decides whether
    that is an error).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    files: list[str] = []
    total = 0
    remote = is_remote(uri)
    config = (config or StorageConfig.from_env()) if remote else config
    for item in list_prefix(uri, config=config):
        target = dest / item.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        if remote:
            assert config is not None  # set above for remote URIs
            _download_object(join(uri, item.relative), tmp, config)
        else:
            shutil.copyfile(Path(uri, item.relative), tmp)
        tmp.replace(target)
        files.append(item.relative)
        total += target.stat().st_size
    return CopiedFolder(tuple(files), total)


def _download_object(uri: str, target: Path, config: StorageConfig) -> None:
    """Stream the object at ``uri`` into the local file ``target`` in bounded chunks."""
    scheme, bucket, key = split_uri(uri)
    try:
        if scheme == "gs":
            blob = _gcs_client(config).bucket(bucket).blob(key, chunk_size=DOWNLOAD_CHUNK)
            blob.download_to_filename(
                str(target), timeout=(config.connect_timeout, config.read_timeout), retry=_gcs_retry(config)
            )
            return
        body = _s3_client(config, scheme).get_object(Bucket=bucket, Key=key)["Body"]
        with open(target, "wb") as fh:
            for chunk in body.iter_chunks(DOWNLOAD_CHUNK):
                fh.write(chunk)
    except Exception as exc:
        target.unlink(missing_ok=True)
        if _is_not_found(exc):
            raise FileNotFoundError(f"{uri}{_where(config, scheme)}: no such object") from exc
        raise StorageError(f"reading {uri}{_where(config, scheme)} failed: {exc}") from exc
