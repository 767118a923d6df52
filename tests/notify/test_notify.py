"""The drift notice: its message, and sending it to a real loopback HTTP server (ok, failing, absent)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pandas as pd
import pytest

from components.common import notify
from components.common.notify import (
    ENV_WEBHOOK_URL,
    NOTHING_SENT,
    FlaggedWindow,
    drift_notice,
    flagged_windows,
    run_link,
    send_drift_notice,
)

SECRET_PATH = "/services/T0000/B0000/s3cr3tT0k3n"


class Webhook:
    """A loopback HTTP server recording every POST; answers ``status`` (or hangs ``delay`` seconds)."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.requests: list[dict] = []
        self.status, self.delay = status, delay
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append(
                    {"path": self.path, "type": self.headers.get("Content-Type"), "body": body}
                )
                if hook.delay:
                    time.sleep(hook.delay)
                try:
                    self.send_response(hook.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:  # the client gave up (timed out) before the answer
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{SECRET_PATH}"


WINDOWS = [
    FlaggedWindow(pd.Timestamp("2026-11-24", tz="UTC").to_pydatetime(), "daily", ("mmd2", "softmax_ks")),
    FlaggedWindow(pd.Timestamp("2026-11-25", tz="UTC").to_pydatetime(), "daily", ("centroid",)),
]
MESSAGE = drift_notice(WINDOWS, "gs://b/runs/r1/report.html", "https://kfp.example.org/", "run-42")


def test_the_message_names_windows_detectors_report_and_run():
    text = MESSAGE["text"]
    assert set(MESSAGE) == {"text"}
    assert "2 window(s) of this run drifted" in text
    assert "• 2026-11-24: mmd2, softmax_ks" in text and "• 2026-11-25: centroid" in text
    assert "Report: `gs://b/runs/r1/report.html`" in text
    assert "<https://kfp.example.org/#/runs/details/run-42|run-42 in the KFP UI>" in text
    json.dumps(MESSAGE)  # JSON as it is


def test_the_message_escapes_data_strings_and_bounds_its_length():
    windows = [FlaggedWindow(pd.Timestamp("2026-11-24 06:00", tz="UTC"), "hourly", ("a<b>&c",))] * 25
    text = drift_notice(windows, "gs://b/<x>&y.html", metrics={"windows_tested": 30.0})["text"]
    assert "a&lt;b&gt;&amp;c" in text and "<b>" not in text and "a<b" not in text
    assert "gs://b/&lt;x&gt;&amp;y.html" in text
    assert "25 window(s) of 30 tested" in text and "2026-11-24 06:00 UTC" in text
    assert text.count("•") == notify.MAX_WINDOWS and "and 5 more" in text
    assert "Run:" not in text  # no host, no run id: no link


def test_run_link():
    assert run_link("http://localhost:8080/", "abc") == "http://localhost:8080/#/runs/details/abc"
    assert run_link("kfp.example.org", "abc") == "http://kfp.example.org/#/runs/details/abc"
    assert run_link("", "abc") == "" and run_link("http://h", "") == ""
    assert run_link("http://h", "{{$.pipeline_job_uuid}}") == ""
    week = FlaggedWindow(pd.Timestamp("2026-11-23", tz="UTC"), "weekly", ())
    assert drift_notice([week], "r")["text"].splitlines()[1] == "• week of 2026-11-23: no detector named"


def test_flagged_windows_come_from_the_drift_table(tmp_path):
    start = pd.to_datetime(["2026-11-25", "2026-11-24", "2026-11-26"]).tz_localize("UTC")
    path = tmp_path / "drift_table.parquet"
    pd.DataFrame(
        {
            "window_start": start,
            "window": "daily",
            "flagged": [True, True, False],
            "fired": ["cosine", "mmd2, softmax_ks", ""],
            "n_rows": 5,
        }
    ).to_parquet(path)
    got = flagged_windows(path)
    assert [(w.label(), w.detectors) for w in got] == [
        ("2026-11-24", ("mmd2", "softmax_ks")),
        ("2026-11-25", ("cosine",)),
    ]
    with pytest.raises(ValueError, match="missing.parquet"):
        flagged_windows(tmp_path / "missing.parquet")


def test_sends_exactly_one_post_and_never_prints_the_url(monkeypatch):
    logged: list[str] = []
    with Webhook() as hook:
        monkeypatch.setenv(ENV_WEBHOOK_URL, hook.url)  # read when called, not at import
        result = send_drift_notice(MESSAGE, log=logged.append)
    assert result.sent and result.attempts == 1
    assert len(hook.requests) == 1
    req = hook.requests[0]
    assert req["path"] == SECRET_PATH and req["type"] == "application/json"
    assert json.loads(req["body"]) == MESSAGE
    assert logged == [result.detail] and "127.0.0.1" in result.detail
    assert "s3cr3t" not in "".join(logged) and hook.url not in "".join(logged)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_webhook_configured_sends_nothing(monkeypatch, capsys, value):
    with Webhook() as hook:
        if value is None:
            monkeypatch.delenv(ENV_WEBHOOK_URL, raising=False)
        else:
            monkeypatch.setenv(ENV_WEBHOOK_URL, value)
        result = send_drift_notice(MESSAGE)
    assert not result.sent and hook.requests == []
    assert capsys.readouterr().out.strip() == NOTHING_SENT
    assert NOTHING_SENT == "no webhook configured (Secret drift-webhook, key url): nothing sent"


def test_a_server_error_is_retried_a_bounded_number_of_times_then_a_warning(monkeypatch):
    logged: list[str] = []
    with Webhook(status=500) as hook:
        monkeypatch.setenv(ENV_WEBHOOK_URL, hook.url)
        t0 = time.monotonic()
        result = send_drift_notice(MESSAGE, backoff=0.05, log=logged.append)
        elapsed = time.monotonic() - t0
    assert not result.sent and result.attempts == 1 + notify.RETRIES == len(hook.requests)
    assert logged[-1].startswith("warning:") and "HTTP 500" in logged[-1] and "the run goes on" in logged[-1]
    assert "s3cr3t" not in "".join(logged)
    assert elapsed < 5


def test_a_client_error_is_not_retried(monkeypatch):
    with Webhook(status=404) as hook:
        monkeypatch.setenv(ENV_WEBHOOK_URL, hook.url)
        result = send_drift_notice(MESSAGE, backoff=0.05, log=lambda _: None)
    assert not result.sent and len(hook.requests) == 1 and "HTTP 404" in result.detail


def test_a_closed_port_is_a_warning_in_bounded_time(monkeypatch, capsys):
    url = _closed_port_url()
    monkeypatch.setenv(ENV_WEBHOOK_URL, url)
    t0 = time.monotonic()
    result = send_drift_notice(MESSAGE, timeout=2, backoff=0.05)
    assert time.monotonic() - t0 < 5
    out = capsys.readouterr().out
    assert not result.sent and result.attempts == 3
    assert "warning: the drift notice could not be sent to the webhook at 127.0.0.1" in out
    assert "Connection" in out or "refused" in out
    assert url not in out and "s3cr3t" not in out


def test_a_hanging_webhook_times_out(monkeypatch):
    with Webhook(delay=3) as hook:
        monkeypatch.setenv(ENV_WEBHOOK_URL, hook.url)
        t0 = time.monotonic()
        result = send_drift_notice(MESSAGE, timeout=0.5, retries=1, backoff=0.05, log=lambda _: None)
        elapsed = time.monotonic() - t0
    assert not result.sent and result.attempts == 2 and elapsed < 2.5
    assert "timed out" in result.detail or "Timeout" in result.detail


def test_a_malformed_url_is_a_warning_without_the_url(monkeypatch):
    monkeypatch.setenv(ENV_WEBHOOK_URL, "hooks.example.org/s3cr3t")
    result = send_drift_notice(MESSAGE, log=lambda _: None)
    assert not result.sent and "not an http(s) URL" in result.detail and "s3cr3t" not in result.detail


def test_the_notify_component_body_reads_the_table_and_posts(tmp_path, monkeypatch, capsys):
    from components.common import helpers

    table = tmp_path / "drift_table.parquet"
    pd.DataFrame(
        {
            "window_start": pd.to_datetime(["2026-11-24", "2026-11-25"]).tz_localize("UTC"),
            "window": "daily",
            "flagged": [False, True],
            "fired": ["", "mmd2"],
        }
    ).to_parquet(table)
    args = dict(
        report=SimpleNamespace(uri="minio://mlpipeline/r/report.html"),
        drift_table=SimpleNamespace(path=str(table)),
        metrics=SimpleNamespace(metadata={"windows_tested": 2.0}),
        kfp_ui_host="http://localhost:8080",
        run_id="0f1e2d",
    )
    monkeypatch.delenv(ENV_WEBHOOK_URL, raising=False)
    helpers.notify_drift(**args)
    assert NOTHING_SENT in capsys.readouterr().out
    with Webhook() as hook:
        monkeypatch.setenv(ENV_WEBHOOK_URL, hook.url)
        helpers.notify_drift(**args)
    assert len(hook.requests) == 1
    text = json.loads(hook.requests[0]["body"])["text"]
    assert "1 window(s) of 2 tested of this run drifted" in text and "• 2026-11-25: mmd2" in text
    assert "`minio://mlpipeline/r/report.html`" in text
    assert "<http://localhost:8080/#/runs/details/0f1e2d|" in text
    with Webhook(status=503) as hook:  # a failing webhook never fails the task
        monkeypatch.setenv(ENV_WEBHOOK_URL, hook.url)
        monkeypatch.setattr(notify, "BACKOFF_S", 0.01)
        helpers.notify_drift(**args)
    assert "warning:" in capsys.readouterr().out


def test_the_notify_component_declares_its_inputs():
    from components.common.helpers import helper_component, notify_drift

    spec = helper_component(notify_drift).component_spec
    assert set(spec.inputs) == {"report", "drift_table", "metrics", "kfp_ui_host", "run_id"}
    assert not spec.outputs
    assert "fashion-drift-drift:" in spec.implementation.container.image
