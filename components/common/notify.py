"""The drift notification: a Slack-compatible webhook message, and sending it without failing the run.

:func:`drift_notice` builds the message (``{"text": ...}``, Slack's mrkdwn, which Slack-compatible
chat services such as Mattermost and Rocket.Chat also accept): the flagged windows of THIS run, the
detectors that fired in each, where the report is, and the run's page in the KFP UI when the UI's
host is known. :func:`send_drift_notice` posts it to the URL in ``DRIFT_WEBHOOK_URL``, read when it
is called (in a pipeline: the Kubernetes Secret ``drift-webhook``, key ``url``, mounted as that
variable). No URL: nothing is sent and it says so. A webhook that fails (refused, timed out, an HTTP
error) is reported as a warning and never raises: the run must not fail because a chat service is
down. The URL is a credential (Slack's carries its token in the path): only its host is printed.

Light on purpose (stdlib and pyarrow): it runs in the small helper task after the drift stage.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ENV_WEBHOOK_URL = "DRIFT_WEBHOOK_URL"
WEBHOOK_SECRET = "drift-webhook"  # the Kubernetes Secret (key WEBHOOK_SECRET_KEY) mounted as ENV_WEBHOOK_URL
WEBHOOK_SECRET_KEY = "url"
NOTHING_SENT = f"no webhook configured (Secret {WEBHOOK_SECRET}, key {WEBHOOK_SECRET_KEY}): nothing sent"
TIMEOUT_S = 10.0  # per attempt
RETRIES = 2  # after the first attempt, on a connection error, a timeout, HTTP 429 or 5xx
BACKOFF_S = 1.0  # seconds before the first retry, doubled before each next one
MAX_WINDOWS = 20  # windows named in one message; the rest are counted
# The drift table's columns the notice reads (see components/drift/README.md).
TABLE_COLUMNS = ("window_start", "window", "flagged", "fired")


@dataclass(frozen=True)
class FlaggedWindow:
    """One flagged window of this run: its start, its length, and the detectors that fired in it."""

    start: datetime
    window: str  # 'hourly', 'daily' or 'weekly'
    detectors: tuple[str, ...]

    def label(self) -> str:
        """The window in words: ``2026-11-24 06:00 UTC`` (hourly), ``2026-11-24`` or ``week of 2026-11-23``."""
        if self.window == "hourly":
            return f"{self.start:%Y-%m-%d %H:%M} UTC"
        if self.window == "weekly":
            return f"week of {self.start:%Y-%m-%d}"
        return f"{self.start:%Y-%m-%d}"


@dataclass(frozen=True)
class NoticeResult:
    """What :func:`send_drift_notice` did: ``sent`` True when the webhook accepted the message."""

    sent: bool
    detail: str  # the line printed to the log (never the webhook URL)
    attempts: int = 0


def escape_mrkdwn(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` as Slack's mrkdwn requires for text from data."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def run_link(kfp_ui_host: str, run_id: str) -> str:
    """The run's page in the KFP UI, ``<host>/#/runs/details/<run_id>``; "" when either is unknown.

    A run id still holding a placeholder (``{{...}}``) counts as unknown. At KFP 2.17.0 the driver
    replaces ``dsl.PIPELINE_JOB_ID_PLACEHOLDER`` (``{{$.pipeline_job_uuid}}``) by the run's id
    (``backend/src/v2/driver/resolve.go``) and the UI's route is ``/runs/details/:runId``
    (``frontend/src/components/Router.tsx``).
    """
    host, run_id = kfp_ui_host.strip().rstrip("/"), run_id.strip()
    if not host or not run_id or "{{" in run_id:
        return ""
    if "://" not in host:
        host = f"http://{host}"
    return f"{host}/#/runs/details/{run_id}"


def flagged_windows(table_path: str | Path) -> list[FlaggedWindow]:
    """The flagged windows of a drift table (one Parquet file), in time order, with their detectors.

    Raises:
        ValueError: the file cannot be read or lacks a column the notice needs (named).
    """
    import pyarrow.parquet as pq

    try:
        rows: list[dict[str, Any]] = pq.read_table(str(table_path), columns=list(TABLE_COLUMNS)).to_pylist()
    except (OSError, KeyError, ValueError) as err:  # pyarrow's errors derive from these
        raise ValueError(
            f"{table_path}: cannot read the drift table's columns {', '.join(TABLE_COLUMNS)} ({err})"
        ) from err
    out = [
        FlaggedWindow(
            start=row["window_start"],
            window=str(row["window"]),
            detectors=tuple(d.strip() for d in str(row["fired"] or "").split(",") if d.strip()),
        )
        for row in rows
        if row["flagged"]
    ]
    return sorted(out, key=lambda w: w.start)


def drift_notice(
    windows: Sequence[FlaggedWindow],
    report_uri: str,
    kfp_ui_host: str = "",
    run_id: str = "",
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The Slack-compatible message (``{"text": ...}``) about this run's flagged windows.

    Names each flagged window (at most :data:`MAX_WINDOWS`, the rest counted) with the detectors
    that fired in it, the report's URI and, when ``kfp_ui_host`` and ``run_id`` are given, a link to
    the run in the KFP UI. Strings from data are escaped for mrkdwn.
    """
    metrics = metrics or {}
    tested = metrics.get("windows_tested")
    of = f" of {int(tested)} tested" if isinstance(tested, int | float) else ""
    lines = [f"*Embedding drift alert*: {len(windows)} window(s){of} of this run drifted."]
    for w in windows[:MAX_WINDOWS]:
        fired = ", ".join(escape_mrkdwn(d) for d in w.detectors) or "no detector named"
        lines.append(f"• {escape_mrkdwn(w.label())}: {fired}")
    if len(windows) > MAX_WINDOWS:
        lines.append(f"… and {len(windows) - MAX_WINDOWS} more (see the report)")
    if report_uri:
        lines.append(f"Report: `{escape_mrkdwn(report_uri)}`")
    link = run_link(kfp_ui_host, run_id)
    if link:
        lines.append(f"Run: <{escape_mrkdwn(link)}|{escape_mrkdwn(run_id)} in the KFP UI>")
    elif run_id and "{{" not in run_id:
        lines.append(f"Run: {escape_mrkdwn(run_id)}")
    return {"text": "\n".join(lines)}


def _retryable(err: Exception) -> bool:
    if isinstance(err, urllib.error.HTTPError):
        return err.code == 429 or err.code >= 500
    return True  # refused, reset, timed out, DNS: worth another try


def _describe(err: Exception, url: str, host: str) -> str:
    """The error in words, with the URL (a credential) replaced by its host."""
    if isinstance(err, urllib.error.HTTPError):
        text = f"HTTP {err.code} {err.reason}"
    elif isinstance(err, urllib.error.URLError):
        text = f"{type(err.reason).__name__}: {err.reason}"
    else:
        text = f"{type(err).__name__}: {err}"
    path = urlsplit(url).path
    text = text.replace(url, host)
    return text.replace(path, "/…") if len(path) > 1 else text


def send_drift_notice(
    message: Mapping[str, Any],
    *,
    timeout: float | None = None,
    retries: int | None = None,
    backoff: float | None = None,
    environ: Mapping[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> NoticeResult:
    """POST ``message`` as JSON to the webhook in ``DRIFT_WEBHOOK_URL`` (read now); never raises.

    No URL (absent or empty): nothing is sent. Otherwise one POST, retried at most ``retries`` times
    (default :data:`RETRIES`) after a connection error, a timeout, HTTP 429 or 5xx, ``backoff``
    seconds apart (default :data:`BACKOFF_S`), doubled each time; each attempt waits at most
    ``timeout`` seconds (default :data:`TIMEOUT_S`). Every outcome is one line passed to ``log``
    (the webhook's host, never its URL) and returned.
    """
    timeout = TIMEOUT_S if timeout is None else timeout
    retries = RETRIES if retries is None else retries
    url = ((os.environ if environ is None else environ).get(ENV_WEBHOOK_URL) or "").strip()
    if not url:
        log(NOTHING_SENT)
        return NoticeResult(False, NOTHING_SENT)
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        detail = f"warning: {ENV_WEBHOOK_URL} is not an http(s) URL: nothing sent"
        log(detail)
        return NoticeResult(False, detail)
    body = json.dumps(dict(message)).encode("utf-8")
    attempt, wait = 0, BACKOFF_S if backoff is None else backoff
    while True:
        attempt += 1
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status = int(response.status)
            detail = f"drift notice sent to the webhook at {host} (HTTP {status}, attempt {attempt})"
            log(detail)
            return NoticeResult(True, detail, attempt)
        except Exception as err:  # urllib's errors, timeouts, anything: the run must go on
            reason = _describe(err, url, host)
            if attempt > retries or not _retryable(err):
                detail = (
                    f"warning: the drift notice could not be sent to the webhook at {host} "
                    f"({reason}; {attempt} attempt(s)); the run goes on, see the report"
                )
                log(detail)
                return NoticeResult(False, detail, attempt)
            log(f"warning: webhook at {host}: {reason}; retrying in {wait:g} s")
            time.sleep(wait)
            wait *= 2
