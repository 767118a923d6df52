"""Object storage: write and read bytes at a URI, and the link a record points to.

``gs://bucket/key`` goes to Google Cloud Storage (``google-cloud-storage``),
``s3://bucket/key`` and ``minio://bucket/key`` to the S3 API (``boto3``; KFP
standalone's store is SeaweedFS behind the S3 API, bucket ``mlpipeline``);
anything else is a local path.

**Outages fail fast.** Every remote call has a connect and a read timeout, a bounded number of
attempts and a deadline (:class:`StorageConfig`: ``connect_timeout``, ``read_timeout``,
``retries``, ``deadline``), and a per-run circuit breaker stops calling an endpoint after
``breaker_failures`` consecutive connection failures (refused, reset, timed out, HTTP 502/503/504):
later calls to it fail at once with :class:`StorageUnavailable`, naming the endpoint. The breaker
lives as long as the process (one KFP task is one run); :func:`reset_breakers` closes it.
:class:`Uploader` writes many objects from a thread pool; its first failure cancels the queued
uploads and removes (or names) what the run had written. The endpoints are injectable so that
tests point the clients at emulators on loopback. Nothing is read from the environment at import
time: :meth:`StorageConfig.from_env` reads it when a function is called without a configuration.

**Links.** :func:`write_bytes` returns the plain link of the object (:func:`link_for`): an
HTTP(S) URL (``https://storage.googleapis.com/bucket/key``, ``https://bucket.s3.amazonaws.com/key``,
or ``{endpoint}/bucket/key`` for a custom endpoint), or with ``links="uri"`` the URI itself.
:func:`record_link` makes the link a record carries in the configured style:

- ``url``: the plain URL (opens only where the bucket is readable without credentials);
- ``signed``: a V4 signed URL (GCS ``generate_signed_url``, S3 ``generate_presigned_url``) valid for
  ``link_expiry`` seconds (at most 7 days, the V4 limit): anyone holding it can GET the object
  until then, never after;
- ``public``: ``link_base`` (a public URL that serves the store, e.g. a CDN) + the object's path;
- ``uri``: the ``gs://``/``s3://`` URI.

No link carries a credential that does not expire: a signed link holds a signature with an expiry,
and ``link_base`` may hold neither a user name, a password nor a query string.
:func:`read_bytes` reads back any of the plain forms (a signed link's query is ignored).

Folders: :func:`list_prefix` lists every file under a folder URI page by page, and
:func:`download_prefix` copies them to a local folder in bounded chunks (the monitoring
pipeline's dated production batch).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

log = logging.getLogger(__name__)
_T = TypeVar("_T")

REMOTE_SCHEMES = ("gs://", "s3://", "minio://")
LINK_STYLES = ("url", "signed", "public", "uri")
MAX_LINK_EXPIRY = 7 * 24 * 3600  # seconds: the longest a V4 signed URL may live (GCS and S3)
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
ENV_LINK_EXPIRY = "STORAGE_LINK_EXPIRY"
ENV_LINK_BASE = "STORAGE_LINK_BASE"
ENV_GCS_SIGNING_KEY = "STORAGE_GCS_SIGNING_KEY"


@dataclass(frozen=True)
class StorageConfig:
    """Endpoints, time budget, circuit breaker and link style for the remote back ends.

    ``gcs_endpoint``: ``None`` for Google; an emulator URL (``http://127.0.0.1:9023``)
    uses anonymous credentials unless ``gcs_anonymous`` is set to False.
    ``s3_endpoint``: ``None`` for AWS; a URL for SeaweedFS, MinIO or moto (path-style).
    ``minio_endpoint``: the endpoint for ``minio://`` URIs (default: KFP standalone's).

    Time budget of one call: each attempt waits at most ``connect_timeout`` to connect and
    ``read_timeout`` between bytes; a call makes at most ``retries + 1`` attempts and starts no new
    one after ``deadline`` seconds. ``breaker_failures`` consecutive connection failures to one
    endpoint (counted per attempt, over all threads) open its circuit breaker for the rest of the run.

    Links (:func:`record_link`): ``links`` is the style, ``link_expiry`` the life of a signed link in
    seconds, ``link_base`` the public URL of the store for ``links="public"``, ``gcs_signing_key`` a
    service-account JSON key file that signs ``gs://`` links (default: the client's credentials).
    """

    gcs_endpoint: str | None = None
    gcs_project: str | None = None
    gcs_anonymous: bool | None = None
    s3_endpoint: str | None = None
    minio_endpoint: str | None = None
    s3_region: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    retries: int = 2
    deadline: float = 45.0
    breaker_failures: int = 3
    links: str = "url"
    link_expiry: int = MAX_LINK_EXPIRY
    link_base: str = ""
    gcs_signing_key: str | None = None

    def __post_init__(self) -> None:
        if self.links not in LINK_STYLES:
            raise ValueError(f"links={self.links!r}: expected one of {', '.join(LINK_STYLES)}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0 or self.deadline <= 0:
            raise ValueError(
                f"timeouts must be positive seconds, got connect_timeout={self.connect_timeout}, "
                f"read_timeout={self.read_timeout}, deadline={self.deadline}"
            )
        if self.retries < 0:
            raise ValueError(f"retries={self.retries}: expected 0 or more")
        if self.breaker_failures < 1:
            raise ValueError(f"breaker_failures={self.breaker_failures}: expected 1 or more")
        check_link_expiry(self.link_expiry)
        for name in ("gcs_endpoint", "s3_endpoint", "minio_endpoint"):
            value = getattr(self, name)
            if value is not None and not value.startswith(("http://", "https://")):
                raise ValueError(f"{name}={value!r}: give a URL starting with http:// or https://")
        if self.links == "public" and not self.link_base:
            raise ValueError(
                "links=public needs link_base: the public http(s) URL that serves the image store "
                f"(or env {ENV_LINK_BASE}); or choose links=signed"
            )
        if self.link_base:
            check_link_base(self.link_base)

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
            "link_base": env.get(ENV_LINK_BASE) or "",
            "gcs_signing_key": env.get(ENV_GCS_SIGNING_KEY) or None,
        }
        expiry = env.get(ENV_LINK_EXPIRY)
        if expiry:
            try:
                values["link_expiry"] = int(expiry)
            except ValueError:
                raise ValueError(f"{ENV_LINK_EXPIRY}={expiry!r}: expected whole seconds") from None
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

    def endpoint_name(self, scheme: str) -> str:
        """The endpoint ``scheme`` talks to, named for messages and the circuit breaker."""
        endpoint = self.endpoint_for(scheme)
        if endpoint:
            return endpoint
        if scheme == "gs":
            return GCS_PUBLIC_BASE
        return f"https://s3.{self.s3_region or 'us-east-1'}.amazonaws.com"


def check_link_expiry(seconds: int) -> int:
    """``seconds`` if a signed link may live that long (1 s to 7 days); else a ValueError saying so."""
    if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= MAX_LINK_EXPIRY:
        raise ValueError(
            f"link_expiry={seconds!r}: expected whole seconds from 1 to {MAX_LINK_EXPIRY} "
            "(7 days, the longest a V4 signed URL of GCS or S3 may live)"
        )
    return seconds


def check_link_base(base: str) -> str:
    """``base`` if it is a public http(s) URL without credentials; else a ValueError saying what to pass.

    A link that does not expire must not carry a credential: a user name, a password or a query
    string (``?sig=...``, ``?token=...``) is refused.
    """
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"link_base={base!r}: give the public http(s) URL that serves the image store "
            "(e.g. https://images.example.com/monitoring)"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(
            f"link_base={_redact(base)!r}: a public link never expires, so it may not carry a user name, "
            "password, query string or fragment (a token there would be handed to everyone who "
            "sees a record); use links=signed for links that expire"
        )
    return base.rstrip("/")


def _redact(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


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
    """The plain link of the object at ``uri``: its URL, or the URI itself with ``links="uri"``.

    For ``links="signed"`` and ``"public"`` this is still the plain URL (the object's address, which
    :func:`uri_from_link` maps back); :func:`record_link` makes the link of those styles.
    """
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


@dataclass(frozen=True)
class LinkKind:
    """Which kind of link :func:`record_link` makes, for a run's summary."""

    style: str
    expiry_seconds: int = 0  # > 0 for signed links
    base: str = ""  # the public base URL for links="public"

    def describe(self, made_at: datetime | None = None) -> str:
        """One sentence for a summary: what the links are and, for signed ones, when they expire."""
        if self.style == "signed":
            text = (
                f"signed URLs (V4, GET only) valid for {timedelta(seconds=self.expiry_seconds)} "
                f"({self.expiry_seconds} s) after they were made"
            )
            if made_at is not None:
                expires = made_at + timedelta(seconds=self.expiry_seconds)
                text += f": they stop working from {expires.isoformat(timespec='seconds')}"
            return text + "; log again to renew them"
        if self.style == "public":
            return f"public links under {self.base} (no credential in them; they do not expire)"
        if self.style == "uri":
            return "bucket URIs (gs://, s3://): only readers with the store's credentials can open them"
        return "plain object URLs: they open only where the store is readable without credentials"


def link_kind(config: StorageConfig) -> LinkKind:
    """The kind of link ``config`` makes (:func:`record_link`)."""
    if config.links == "signed":
        return LinkKind("signed", config.link_expiry)
    if config.links == "public":
        return LinkKind("public", base=check_link_base(config.link_base))
    return LinkKind(config.links)


def record_link(uri: str, config: StorageConfig | None = None, *, store: str | None = None) -> str:
    """The link a record carries for the object at ``uri``, in the style ``config.links``.

    ``url``/``uri``: :func:`link_for`. ``signed``: a V4 signed GET URL valid for
    ``config.link_expiry`` seconds (gs://, s3://, minio:// only). ``public``: ``config.link_base``
    followed by the object's path below ``store`` (the image store's folder or prefix; None: below
    the bucket), so ``store=gs://b/imgs``, ``link_base=https://cdn.example/imgs`` links
    ``gs://b/imgs/p/x.png`` as ``https://cdn.example/imgs/p/x.png``.
    """
    config = config or StorageConfig.from_env()
    if config.links in ("url", "uri"):
        return link_for(uri, config)
    if config.links == "public":
        return f"{check_link_base(config.link_base)}/{quote(_relative_to_store(uri, store), safe='/')}"
    if not is_remote(uri):
        raise ValueError(
            f"{uri}: links=signed needs a gs://, s3:// or minio:// image store; a local file has no "
            "signed URL (use links=public with link_base, or links=url)"
        )
    return _signed_link(uri, config)


def _relative_to_store(uri: str, store: str | None) -> str:
    if store:
        if is_remote(uri):
            prefix = store.rstrip("/") + "/"
            if uri.startswith(prefix):
                return uri[len(prefix) :]
        else:
            try:
                return Path(uri).relative_to(Path(store)).as_posix()
            except ValueError:
                pass
        raise ValueError(f"{uri}: not under the image store {store}; cannot make its public link")
    if is_remote(uri):
        return split_uri(uri)[2]
    raise ValueError(f"{uri}: a local file's public link needs the store it lies in")


def _signed_link(uri: str, config: StorageConfig) -> str:
    scheme, bucket, key = split_uri(uri)
    expiry = check_link_expiry(config.link_expiry)
    try:
        if scheme == "gs":
            blob = _gcs_client(config).bucket(bucket).blob(key)
            kwargs: dict[str, Any] = {
                "version": "v4",
                "expiration": timedelta(seconds=expiry),
                "method": "GET",
            }
            if config.gcs_endpoint:
                kwargs["api_access_endpoint"] = config.gcs_endpoint.rstrip("/")
            kwargs.update(_gcs_signer(config))
            url: str = blob.generate_signed_url(**kwargs)
            return url
        presigned: str = _s3_client(config, scheme).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expiry
        )
        return presigned
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(
            f"signing a link to {uri}{_where(config, scheme)} failed: {exc}; "
            + (
                "signing gs:// links needs a service-account key (gcs_signing_key, "
                f"env {ENV_GCS_SIGNING_KEY}) or credentials allowed to sign (iam.serviceAccounts.signBlob)"
                if scheme == "gs"
                else "signing s3:// links needs AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            )
        ) from exc


def _gcs_signer(config: StorageConfig) -> dict[str, Any]:
    """What ``generate_signed_url`` needs to sign: a key's credentials, or an email and a token."""
    if config.gcs_signing_key:
        return {"credentials": _gcs_key_credentials(config.gcs_signing_key)}
    credentials = _gcs_client(config)._credentials
    from google.auth.credentials import AnonymousCredentials, Signing

    if isinstance(credentials, AnonymousCredentials):
        raise StorageError(
            "links=signed: the gs:// client is anonymous (an emulator?) and cannot sign; give a "
            f"service-account JSON key as gcs_signing_key (env {ENV_GCS_SIGNING_KEY})"
        )
    if isinstance(credentials, Signing):
        return {}  # a service-account key: signs locally
    # Workload identity / metadata-server credentials hold no key: sign through the IAM signBlob API.
    from google.auth.transport.requests import Request

    if not credentials.valid:
        credentials.refresh(Request())
    email = getattr(credentials, "service_account_email", None)
    if not email:
        raise StorageError(
            "links=signed: the gs:// credentials name no service account to sign with; give a "
            f"service-account JSON key as gcs_signing_key (env {ENV_GCS_SIGNING_KEY})"
        )
    return {"service_account_email": email, "access_token": credentials.token}


@functools.lru_cache(maxsize=4)
def _gcs_key_credentials(path: str) -> Any:
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_file(path)  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as exc:
        raise StorageError(
            f"gcs_signing_key={path!r}: not a readable service-account JSON key ({exc})"
        ) from exc


def uri_from_link(link: str, config: StorageConfig | None = None) -> str:
    """Map a link made by :func:`link_for` back to its ``gs://``/``s3://`` URI (or a local path).

    A signed link's query string is ignored: it maps to the object it signs.
    """
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


# --------------------------------------------------------------------------------------------
# Failing fast: what counts as an outage, and the per-run circuit breaker
# --------------------------------------------------------------------------------------------
_OUTAGE_STATUS = (502, 503, 504)


class StorageError(OSError):
    """A remote read or write failed; the message names the URI and the endpoint."""


class StorageUnavailable(StorageError):
    """The endpoint is down for this run: its circuit breaker is open (see :class:`StorageConfig`)."""

    def __init__(self, message: str, endpoint: str, *, not_sent: bool = False, maybe_sent: bool = False):
        super().__init__(message)
        self.endpoint = endpoint
        self.not_sent = not_sent  # refused before anything of this call was sent
        self.maybe_sent = maybe_sent  # an earlier attempt was sent and got no answer


def _maybe_sent(exc: BaseException) -> bool:
    """Whether the failed call may have reached the store (sent, no answer): its object may exist."""
    if any(getattr(e, "maybe_sent", False) for e in _causes(exc)):
        return True
    return is_outage(exc) and not never_sent(exc)


def _not_sent(exc: BaseException) -> bool:
    """Whether the call was refused by the breaker before anything was sent."""
    return any(getattr(e, "not_sent", False) for e in _causes(exc))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (cause, context, RetryError's cause, TransportError's arg)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        todo += [item.__cause__, item.__context__, getattr(item, "cause", None)]
        reason = getattr(item, "reason", None)  # urllib3's MaxRetryError
        todo += [reason] if isinstance(reason, BaseException) else []
        todo += [a for a in getattr(item, "args", ())[:1] if isinstance(a, BaseException)]


def _status(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


@functools.cache
def _outage_types() -> tuple[type[BaseException], ...]:
    """Exception types of a connection that failed (refused, reset, timed out), of every client."""
    types: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import requests.exceptions as rq

        types += [rq.ConnectionError, rq.Timeout, rq.ChunkedEncodingError]
    except ImportError:  # pragma: no cover - requests comes with google-cloud-storage
        pass
    try:
        import urllib3.exceptions as u3

        types += [u3.ProtocolError, u3.TimeoutError, u3.NewConnectionError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import botocore.exceptions as bc

        types += [bc.HTTPClientError]  # EndpointConnectionError, Connect/ReadTimeoutError, ...
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


@functools.cache
def _connect_types() -> tuple[type[BaseException], ...]:
    """Exception types of a connection never made: the request was not sent."""
    types: list[type[BaseException]] = [ConnectionRefusedError]
    try:
        import urllib3.exceptions as u3

        types += [u3.NewConnectionError, u3.ConnectTimeoutError]
    except ImportError:  # pragma: no cover
        pass
    try:
        import botocore.exceptions as bc

        types += [bc.EndpointConnectionError, bc.ConnectTimeoutError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


def never_sent(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection was never made (the store cannot have kept anything)."""
    types = _connect_types()
    return any(isinstance(e, types) for e in _causes(exc))


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it wraps) says the endpoint did not answer (not: said no)."""
    types = _outage_types()
    return any(isinstance(e, types) or _status(e) in _OUTAGE_STATUS for e in _causes(exc))


class _Breaker:
    """Consecutive outage failures per endpoint, over all threads; open = stop calling it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._last: dict[str, str] = {}
        self._open: set[str] = set()

    def check(self, endpoint: str, *, first: bool = False, maybe_sent: bool = False) -> None:
        """Raise :class:`StorageUnavailable` when the breaker of ``endpoint`` is open.

        ``first``: before the first attempt of a call (nothing of it was sent); ``maybe_sent``: an
        earlier attempt was sent and got no answer.
        """
        if endpoint in self._open:
            with self._lock:
                n, last = self._failures.get(endpoint, 0), self._last.get(endpoint, "")
            raise StorageUnavailable(
                f"the store at {endpoint} is not answering: {n} consecutive connection failures "
                f"(last: {last}); not calling it again in this run",
                endpoint,
                not_sent=first,
                maybe_sent=maybe_sent,
            )

    def is_open(self, endpoint: str) -> bool:
        """Whether calls to ``endpoint`` are refused for the rest of the run."""
        return endpoint in self._open

    def failure(self, endpoint: str, exc: BaseException | str, limit: int) -> None:
        """Count one outage failure (an attempt that got no answer)."""
        text = exc if isinstance(exc, str) else f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        with self._lock:
            n = self._failures.get(endpoint, 0) + 1
            self._failures[endpoint] = n
            self._last[endpoint] = text
            if n >= limit and endpoint not in self._open:
                self._open.add(endpoint)
                log.error(
                    "storage: %s failed %d times in a row (%s); circuit breaker open", endpoint, n, text
                )

    def success(self, endpoint: str) -> None:
        """An answer came: the count starts again."""
        if self._failures.get(endpoint):
            with self._lock:
                self._failures[endpoint] = 0

    def reset(self) -> None:
        """Close every breaker (tests; a long-lived process that wants to try again)."""
        with self._lock:
            self._failures.clear()
            self._last.clear()
            self._open.clear()


_BREAKER = _Breaker()


def reset_breakers() -> None:
    """Close every endpoint's circuit breaker: later calls try the endpoints again."""
    _BREAKER.reset()


def _fail(verb: str, uri: str, config: StorageConfig, scheme: str, exc: Exception) -> StorageError:
    """The error to raise for a failed call: names the URI and the endpoint, counts an outage."""
    endpoint = config.endpoint_name(scheme)
    if isinstance(exc, StorageUnavailable):
        return StorageUnavailable(f"{verb} {uri} failed: {exc}", exc.endpoint)
    if is_outage(exc) and not _counted(exc):
        _BREAKER.failure(endpoint, exc, config.breaker_failures)
    message = f"{verb} {uri} (endpoint {endpoint}) failed: {' '.join(str(exc).split())}"
    if _BREAKER.is_open(endpoint):
        return StorageUnavailable(
            message + "; the store is not answering, not calling it again in this run", endpoint
        )
    return StorageError(message)


def _counted(exc: BaseException) -> bool:
    """Whether the retry hooks already counted this failure in the breaker (S3: every attempt)."""
    return any(getattr(e, "_storage_counted", False) for e in _causes(exc))


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------
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


def _gcs_call(config: StorageConfig) -> dict[str, Any]:
    """``timeout`` and ``retry`` of one GCS call: bounded attempts, a deadline, the breaker consulted.

    The retry predicate counts every attempt that got no answer in the endpoint's breaker and stops
    retrying once the breaker is open or the attempts are spent.
    """
    from google.api_core.retry import Retry

    endpoint = config.endpoint_name("gs")
    attempts = [0]

    def retryable(exc: Exception) -> bool:
        attempts[0] += 1
        outage = is_outage(exc)
        if outage:
            _BREAKER.failure(endpoint, exc, config.breaker_failures)
            exc._storage_counted = True  # type: ignore[attr-defined]
        if attempts[0] > config.retries or _BREAKER.is_open(endpoint):
            return False
        return outage or _status(exc) in (408, 429, 500)

    retry = Retry(predicate=retryable, initial=0.5, maximum=8.0, multiplier=2.0, timeout=config.deadline)
    return {"timeout": (config.connect_timeout, config.read_timeout), "retry": retry}


def _gcs_retry(config: StorageConfig) -> Any:
    """The ``retry`` of one GCS call (:func:`_gcs_call`); kept for callers outside this module."""
    return _gcs_call(config)["retry"]


def _gcs_once(config: StorageConfig, call: Callable[[dict[str, Any]], _T]) -> _T:
    """Run one GCS object call with this module's own retries, the breaker checked before each attempt.

    No thread starts another attempt once the endpoint is known to be down.

    ``call`` gets the keyword arguments of one attempt (``timeout``, ``retry=None``).
    """
    endpoint = config.endpoint_name("gs")
    started = time.monotonic()
    maybe_sent = False
    last_error: Exception | None = None
    for attempt in range(config.retries + 1):
        try:
            _BREAKER.check(endpoint, first=attempt == 0, maybe_sent=maybe_sent)
        except StorageUnavailable as down:
            raise down from last_error
        try:
            return call({"timeout": (config.connect_timeout, config.read_timeout), "retry": None})
        except Exception as exc:
            last_error = exc
            maybe_sent = maybe_sent or _maybe_sent(exc)
            outage = is_outage(exc)
            if outage:
                _BREAKER.failure(endpoint, exc, config.breaker_failures)
                exc._storage_counted = True  # type: ignore[attr-defined]
            delay = _outage_pause(attempt + 1)
            last = attempt == config.retries or time.monotonic() - started + delay > config.deadline
            if last or not (outage or _status(exc) in (408, 429, 500)):
                raise
        time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


@functools.lru_cache(maxsize=8)
def _s3_client(config: StorageConfig, scheme: str) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = config.endpoint_for(scheme)
    botocore_config = Config(
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        retries={"total_max_attempts": config.retries + 1, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint else "auto"},
        signature_version="s3v4",
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=config.s3_region or "us-east-1",
        config=botocore_config,
    )
    # First, so that its pause (not botocore's near-zero first backoff) applies to a connection failure.
    client.meta.events.register_first("needs-retry.s3", functools.partial(_s3_attempt_done, config, scheme))
    client.meta.events.register("before-send.s3", functools.partial(_s3_before_send, config, scheme))
    return client


def _s3_before_send(config: StorageConfig, scheme: str, request: Any = None, **_: Any) -> None:
    """Before every attempt (retries too): refuse at once when the endpoint's breaker is open."""
    context = getattr(request, "context", None) or {}
    attempt = context.get("retries", {}).get("attempt", 1)
    _BREAKER.check(
        config.endpoint_name(scheme), first=attempt <= 1, maybe_sent=bool(context.get(_MAYBE_SENT))
    )


_MAYBE_SENT = "storage_maybe_sent"  # request context key: an attempt was sent and got no answer


def _s3_attempt_done(
    config: StorageConfig,
    scheme: str,
    caught_exception: Exception | None = None,
    response: Any = None,
    attempts: int = 1,
    request_dict: dict[str, Any] | None = None,
    **_: Any,
) -> float | None:
    """The needs-retry hook of botocore: count an attempt that got no answer; stop when the breaker opens.

    A connection failure with attempts left is retried after :func:`_outage_pause` (so the failures
    of the other threads are counted first); anything else is left to botocore's own handler.
    """
    endpoint = config.endpoint_name(scheme)
    status = None
    if isinstance(response, tuple) and response:
        status = getattr(response[0], "status_code", None)
    context = (request_dict or {}).get("context")
    if isinstance(context, dict) and caught_exception is not None and _maybe_sent(caught_exception):
        context[_MAYBE_SENT] = True
    if caught_exception is not None and is_outage(caught_exception):
        _BREAKER.failure(endpoint, caught_exception, config.breaker_failures)
        caught_exception._storage_counted = True  # type: ignore[attr-defined]
    elif status in _OUTAGE_STATUS:
        _BREAKER.failure(endpoint, f"HTTP {status}", config.breaker_failures)
    else:
        return None
    if _BREAKER.is_open(endpoint):
        # Raising here ends botocore's retry loop at once (its other handler would sleep and retry).
        try:
            _BREAKER.check(endpoint)
        except StorageUnavailable as down:
            down.maybe_sent = bool(isinstance(context, dict) and context.get(_MAYBE_SENT))
            raise down from caught_exception  # keeps what happened to this attempt
    return _outage_pause(attempts) if attempts <= config.retries else None


def _outage_pause(attempt: int) -> float:
    """Seconds to wait before retrying after the ``attempt``-th connection failure (1 s, 2 s, 4 s, ... 8 s).

    At least a second: threads that hit a dead endpoint together all count their failure in the
    breaker before any of them tries again.
    """
    return float(min(2 ** (attempt - 1), 8))


# --------------------------------------------------------------------------------------------
# One object: write, read, delete
# --------------------------------------------------------------------------------------------
def write_bytes(
    uri: str, data: bytes, content_type: str | None = None, *, config: StorageConfig | None = None
) -> str:
    """Write ``data`` at ``uri`` and return its plain link (:func:`link_for`)."""
    if not is_remote(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        tmp.replace(path)
        return str(path)
    config = config or StorageConfig.from_env()
    try:
        _put(uri, data, content_type, config, match=None)
    except Exception as exc:  # re-raised with the URI and endpoint named
        raise _fail("writing", uri, config, split_uri(uri)[0], exc) from exc
    return link_for(uri, config)


def _put(
    uri: str, data: bytes, content_type: str | None, config: StorageConfig, *, match: str | None
) -> None:
    """One object upload to GCS or S3 (atomic there: readers see all of it or nothing).

    ``match``: None writes whatever is there; ``""`` only if the object is absent (GCS
    ``ifGenerationMatch=0``, S3 ``If-None-Match: *``); a version from :func:`read_versioned` only if
    the object is still that version (GCS ``ifGenerationMatch=<generation>``, S3 ``If-Match: <ETag>``).
    The store answers 412 when the condition fails. The endpoint's breaker is checked first and told
    of a success; failures are left to the caller.
    """
    scheme, bucket, key = split_uri(uri)
    content_type = content_type or "application/octet-stream"
    endpoint = config.endpoint_name(scheme)
    _BREAKER.check(endpoint, first=True)
    if scheme == "gs":
        blob = _gcs_client(config).bucket(bucket).blob(key)
        gcs_condition: dict[str, Any] = {} if match is None else {"if_generation_match": int(match or 0)}
        _gcs_once(
            config,
            lambda kw: blob.upload_from_string(data, content_type=content_type, **gcs_condition, **kw),
        )
    else:
        s3_condition: dict[str, Any] = (
            {} if match is None else {"IfMatch": match} if match else {"IfNoneMatch": "*"}
        )
        _s3_client(config, scheme).put_object(
            Bucket=bucket, Key=key, Body=data, ContentType=content_type, **s3_condition
        )
    _BREAKER.success(endpoint)


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

    def fetch(config: StorageConfig, scheme: str, bucket: str, key: str) -> bytes:
        if scheme == "gs":
            blob = _gcs_client(config).bucket(bucket).blob(key)
            data: bytes = _gcs_once(config, lambda kw: blob.download_as_bytes(**kw))
            return data
        body: bytes = _s3_client(config, scheme).get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    return _read_object(uri, config or StorageConfig.from_env(), fetch)


def read_versioned(uri: str, *, config: StorageConfig | None = None) -> tuple[bytes, str]:
    """The bytes of a bucket object and its version: the GCS generation or the S3 ETag.

    Give the version to :func:`replace_bytes` to write the object back only if nobody wrote it in
    between. The version is read before the bytes: if the object changes between the two, the bytes
    are newer than the version and the conditional write fails, so the caller reads again.

    Raises:
        FileNotFoundError: no such object. ValueError: ``uri`` is not a gs://, s3:// or minio:// URI.
        StorageError: the store could not be reached or refused (the URI and endpoint named).
    """
    if not is_remote(uri):
        raise ValueError(f"{uri}: read_versioned reads bucket objects (gs://, s3://, minio://)")

    def fetch(config: StorageConfig, scheme: str, bucket: str, key: str) -> tuple[bytes, str]:
        if scheme == "gs":
            gcs_bucket = _gcs_client(config).bucket(bucket)
            blob = _gcs_once(config, lambda kw: gcs_bucket.get_blob(key, **kw))
            if blob is None:
                raise FileNotFoundError(f"{uri}{_where(config, scheme)}: no such object")
            generation = str(blob.generation)  # before the download, which may overwrite it
            data: bytes = _gcs_once(config, lambda kw: blob.download_as_bytes(**kw))
            return data, generation
        response = _s3_client(config, scheme).get_object(Bucket=bucket, Key=key)
        body: bytes = response["Body"].read()
        return body, str(response["ETag"])

    return _read_object(uri, config or StorageConfig.from_env(), fetch)


def _read_object(uri: str, config: StorageConfig, fetch: Callable[[StorageConfig, str, str, str], _T]) -> _T:
    """``fetch(config, scheme, bucket, key)`` behind the endpoint's breaker, its errors named.

    A missing object is a FileNotFoundError (the store answered: the breaker is told of a success);
    any other failure a StorageError naming the URI and the endpoint.
    """
    scheme, bucket, key = split_uri(uri)
    endpoint = config.endpoint_name(scheme)
    try:
        _BREAKER.check(endpoint, first=True)
        result = fetch(config, scheme, bucket, key)
    except FileNotFoundError:
        _BREAKER.success(endpoint)
        raise
    except Exception as exc:
        if _is_not_found(exc):
            _BREAKER.success(endpoint)
            raise FileNotFoundError(f"{uri}{_where(config, scheme)}: no such object") from exc
        raise _fail("reading", uri, config, scheme, exc) from exc
    _BREAKER.success(endpoint)
    return result


def replace_bytes(
    uri: str,
    data: bytes,
    version: str,
    content_type: str | None = None,
    *,
    config: StorageConfig | None = None,
) -> bool:
    """Write ``data`` at a bucket URI only if the object is still ``version`` (``""``: still absent).

    ``version`` comes from :func:`read_versioned`. True: written. False: another writer got there
    first (HTTP 412; 409 while another conditional write is in flight; 404 when it was deleted), so
    read again, redo the change and try again. The check and the write are one step of the store.
    """
    if not version:
        return create_bytes(uri, data, content_type, config=config)
    if not is_remote(uri):
        raise ValueError(f"{uri}: replace_bytes writes bucket objects (gs://, s3://, minio://)")
    config = config or StorageConfig.from_env()
    scheme = split_uri(uri)[0]
    try:
        _put(uri, data, content_type, config, match=version)
    except Exception as exc:
        if not any(_status(e) in (404, 409, 412) for e in _causes(exc)) and not _is_not_found(exc):
            raise _fail("replacing", uri, config, scheme, exc) from exc
        _BREAKER.success(config.endpoint_name(scheme))  # the store answered: refused, not down
        return False
    return True


def create_bytes(
    uri: str, data: bytes, content_type: str | None = None, *, config: StorageConfig | None = None
) -> bool:
    """Write ``data`` at ``uri`` only if nothing is there yet: True if this call created it, False if not.

    The check and the write are one step of the store, so of writers racing for one name exactly
    one gets True: GCS ``ifGenerationMatch=0`` and S3 ``If-None-Match: *`` (HTTP 412 when the object
    exists, 409 while another conditional write of it is in flight); a local file is written under a
    temporary name and hard-linked into place (``os.link`` fails when the name exists; where links
    are not supported, ``O_CREAT | O_EXCL``). A write retried after an attempt that got no answer
    may find its own object: it reads it back, and the same bytes count as created (so give each
    writer's ``data`` something unique).
    """
    if not is_remote(uri):
        return _create_local(Path(uri), data)
    config = config or StorageConfig.from_env()
    scheme = split_uri(uri)[0]
    try:
        _put(uri, data, content_type, config, match="")
    except Exception as exc:
        if not any(_status(e) in (409, 412) for e in _causes(exc)):
            raise _fail("creating", uri, config, scheme, exc) from exc
        _BREAKER.success(config.endpoint_name(scheme))  # the store answered: refused, not down
        try:
            return read_bytes(uri, config=config) == data  # our own earlier attempt, or another writer's
        except FileNotFoundError:
            return False  # 409: another write of it was in flight and did not land (yet)
    return True


def _create_local(path: Path, data: bytes) -> bool:
    """:func:`create_bytes` for a local file: complete content, linked into place only if the name is free."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_bytes(data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system (e.g. a FUSE mount): exclusive create
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def delete_object(uri: str, *, config: StorageConfig | None = None) -> None:
    """Delete the object (or local file) at ``uri``; one that is already gone is no error."""
    if not is_remote(uri):
        Path(uri).unlink(missing_ok=True)
        return
    config = config or StorageConfig.from_env()
    scheme, bucket, key = split_uri(uri)
    endpoint = config.endpoint_name(scheme)
    try:
        _BREAKER.check(endpoint, first=True)
        if scheme == "gs":
            blob = _gcs_client(config).bucket(bucket).blob(key)
            _gcs_once(config, lambda kw: blob.delete(**kw))
        else:
            _s3_client(config, scheme).delete_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if _is_not_found(exc):
            return
        raise _fail("deleting", uri, config, scheme, exc) from exc
    _BREAKER.success(endpoint)


def _where(config: StorageConfig, scheme: str) -> str:
    return f" (endpoint {config.endpoint_name(scheme)})"


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
# Many objects from a thread pool: the first failure cancels the rest
# --------------------------------------------------------------------------------------------
class Uploader:
    """Write many objects from a thread pool; the first failure cancels the rest and cleans up.

    A context manager. :meth:`upload` writes a batch of ``(uri, bytes)`` and returns the links
    :func:`write_bytes` returns, in order. When a write fails, the queued writes are cancelled (the
    running ones end within one call's time budget, at once when the endpoint's breaker is open),
    then what this uploader wrote is deleted where the store still answers (``cleanup=True``:
    objects that belong to this run only) or left and named (``cleanup=False``: a shared store,
    where a rerun writes the same names); the error says which, and where.
    """

    def __init__(
        self,
        workers: int,
        *,
        content_type: str | None = None,
        config: StorageConfig | None = None,
        cleanup: bool = True,
    ):
        self.workers = workers
        self.content_type = content_type
        self.config = config
        self.cleanup = cleanup
        self.written: list[str] = []
        self.uncertain: list[str] = []  # writes that got no answer: the object may or may not be there
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="storage-upload")
        self._closed = False

    def __enter__(self) -> Uploader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self._pool.shutdown(wait=True)
            return
        if not self._closed:  # failed elsewhere: stop, and clean up what was written
            text = self._abort()
            if text:
                exc.add_note(text)

    def _write(self, uri: str, data: bytes) -> str:
        try:
            if self.config is None:  # the configuration of the environment (write_bytes' default)
                link = write_bytes(uri, data, self.content_type)
            else:
                link = write_bytes(uri, data, self.content_type, config=self.config)
        except Exception as exc:
            if _maybe_sent(exc):  # sent, no answer: the store may have kept it
                with self._lock:
                    self.uncertain.append(uri)
            raise
        with self._lock:
            self.written.append(uri)
        return link

    def upload(self, jobs: Iterable[tuple[str, bytes]]) -> list[str]:
        """Write every ``(uri, data)``; their links in order, or the first failure (after cleaning up)."""
        futures = [self._pool.submit(self._write, uri, data) for uri, data in jobs]
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = _first_failure(futures)
        if failed is None:
            return [f.result() for f in futures]
        cancelled = sum(f.cancel() for f in pending)
        self._pool.shutdown(wait=True, cancel_futures=True)  # the running writes end (bounded)
        refused = sum(_refused(f) for f in futures)
        text = self._abort(cancelled + refused, len(futures))
        if isinstance(failed, StorageUnavailable):
            raise StorageUnavailable(f"{failed}; {text}", failed.endpoint) from failed
        if isinstance(failed, StorageError):
            raise StorageError(f"{failed}; {text}") from failed
        failed.add_note(text)
        raise failed

    def _abort(self, skipped: int = 0, total: int = 0) -> str:
        """Cancel the queued writes, wait for the running ones, clean up; one sentence saying what."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        parts = (
            [
                f"{skipped} of {total} write(s) of this batch not attempted (cancelled, or refused by the breaker)"
            ]
            if total
            else []
        )
        with self._lock:
            written, uncertain = list(self.written), sorted(self.uncertain)
        if not written and not uncertain:
            return "; ".join([*parts, "nothing of this run was left in the store"])
        left = self._delete(written) if self.cleanup else written
        maybe = self._delete(uncertain) if self.cleanup else uncertain
        deleted = len(written) - len(left)
        if deleted:
            parts.append(f"the {deleted} object(s) this run had written were deleted")
        if not left and maybe:
            parts.append(
                f"{len(maybe)} write(s) got no answer and may have landed under {_common_folder(maybe)} "
                f"({', '.join(maybe[:3])}{', ...' if len(maybe) > 3 else ''})"
            )
        if left:
            where = _common_folder(left)
            sample = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
            advice = (
                "delete them, or run again: a rerun writes the same names"
                if not self.cleanup
                else "delete them when the store answers again"
            )
            parts.append(f"{len(left)} object(s) this run wrote are left under {where} ({sample}): {advice}")
            if maybe:
                parts.append(f"{len(maybe)} more write(s) got no answer and may have landed there too")
        return "; ".join(parts)

    def _delete(self, uris: list[str]) -> list[str]:
        """Delete ``uris`` (a few threads); the ones that could not be deleted."""
        left: list[str] = []

        def delete(uri: str) -> None:
            try:
                if self.config is None:
                    delete_object(uri)
                else:
                    delete_object(uri, config=self.config)
            except (OSError, ValueError):
                left.append(uri)

        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            list(pool.map(delete, uris))
        return sorted(left)


def _refused(future: Future[str]) -> bool:
    """Whether the write of ``future`` was refused by the circuit breaker without being sent."""
    if future.cancelled():
        return False
    exc = future.exception()
    return exc is not None and _not_sent(exc)


def _first_failure(futures: list[Future[str]]) -> BaseException | None:
    """The exception of the first future (in submission order) that failed, if any."""
    for f in futures:
        if f.done() and not f.cancelled():
            exc = f.exception()
            if exc is not None:
                return exc
    return None


def _common_folder(uris: list[str]) -> str:
    prefix = os.path.commonprefix(uris)
    return prefix[: prefix.rfind("/") + 1] if "/" in prefix else prefix


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
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # removed since the walk saw it (another writer's temporary file)
                continue
            yield StoredFile(path.relative_to(root).as_posix(), size)
        return
    config = config or StorageConfig.from_env()
    scheme, bucket, prefix = split_prefix(uri)
    try:
        _BREAKER.check(config.endpoint_name(scheme), first=True)
        if scheme == "gs":
            blobs = _gcs_client(config).list_blobs(
                bucket, prefix=prefix, page_size=LIST_PAGE_SIZE, **_gcs_call(config)
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
    except StorageError as exc:
        if isinstance(exc, StorageUnavailable):
            raise _fail("listing", uri, config, scheme, exc) from exc
        raise
    except Exception as exc:
        if _is_not_found(exc):
            raise FileNotFoundError(f"{uri}{_where(config, scheme)}: no such bucket") from exc
        raise _fail("listing", uri, config, scheme, exc) from exc


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
        _BREAKER.check(config.endpoint_name(scheme), first=True)
        if scheme == "gs":
            blob = _gcs_client(config).bucket(bucket).blob(key, chunk_size=DOWNLOAD_CHUNK)
            blob.download_to_filename(str(target), **_gcs_call(config))
            return
        body = _s3_client(config, scheme).get_object(Bucket=bucket, Key=key)["Body"]
        with open(target, "wb") as fh:
            for chunk in body.iter_chunks(DOWNLOAD_CHUNK):
                fh.write(chunk)
    except Exception as exc:
        target.unlink(missing_ok=True)
        if _is_not_found(exc):
            raise FileNotFoundError(f"{uri}{_where(config, scheme)}: no such object") from exc
        raise _fail("reading", uri, config, scheme, exc) from exc
