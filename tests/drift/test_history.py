"""The drift history across runs: created, appended, replaced on a re-run, refused when it does not match."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from components.common.history import (
    MODEL_VERSION,
    RECORDED_AT,
    HistoryError,
    merge_history,
    read_history,
    stamp,
    update_history,
)
from components.drift.config import DriftConfig
from components.drift.stage import run_drift
from tests.fixtures.drift_rows import write_prepared

FAST = {"projection": "pca", "drift_resamples": 300, "false_alarm_rate": 0.02, "thumbnails": False}
T1 = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
T2 = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
T3 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def _batch(folder, seed, end, drift_days=(), version="m-1"):
    """A prepared folder with 3 daily production windows ending at ``end``, and a manifest."""
    path = write_prepared(
        folder,
        seed=seed,
        n_train=900,
        n_validation=400,
        days=3,
        per_day=60,
        drift_days=drift_days,
        images=False,
        end=pd.Timestamp(end, tz="UTC"),
    )
    (path / "manifest.json").write_text(json.dumps({"model_version": version}), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    """Two batches of 3 days each: 2026-11-25..27 (clean) and 2026-11-28..30 (2026-11-29 shifted)."""
    tmp = tmp_path_factory.mktemp("batches")
    return _batch(tmp / "a", 0, "2026-11-28"), _batch(tmp / "b", 1, "2026-12-01", drift_days=(1,))


def _days(frame: pd.DataFrame) -> list[str]:
    return frame["window_start"].dt.strftime("%Y-%m-%d").tolist()


def _run(folder, uri, recorded_at, report=None, **kw):
    return run_drift(
        folder, folder, report, None, DriftConfig(**FAST, history_uri=str(uri), **kw), recorded_at
    )


def test_first_run_creates_then_appends_then_replaces(batches, tmp_path):
    a, b = batches
    uri = tmp_path / "monitoring" / "drift_history.parquet"
    first = _run(a, uri, T1)
    stored = pd.read_parquet(uri)
    assert _days(stored) == ["2026-11-25", "2026-11-26", "2026-11-27"]
    assert set(stored.columns) == set(first.table.columns) | {RECORDED_AT, MODEL_VERSION}
    assert (stored[RECORDED_AT] == pd.Timestamp(T1)).all() and (stored[MODEL_VERSION] == "m-1").all()
    assert first.metrics["history_windows"] == 3.0 and not first.alert

    second = _run(b, uri, T2)
    stored = pd.read_parquet(uri)
    assert _days(stored) == [
        "2026-11-25",
        "2026-11-26",
        "2026-11-27",
        "2026-11-28",
        "2026-11-29",
        "2026-11-30",
    ]
    assert stored[RECORDED_AT].tolist() == [pd.Timestamp(T1)] * 3 + [pd.Timestamp(T2)] * 3
    assert second.metrics["history_windows"] == 6.0
    assert second.history.this_run.tolist() == [False] * 3 + [True] * 3
    assert second.history.replaced_rows == 0 and second.history.previous_rows == 3
    # the drift table output stays this run's windows
    assert _days(second.table) == ["2026-11-28", "2026-11-29", "2026-11-30"]
    assert "2026-11-29" in _days(second.table[second.table["flagged"]]) and second.alert

    again = _run(b, uri, T3)  # the same batch re-run: its windows replaced, never duplicated
    stored = pd.read_parquet(uri)
    assert len(stored) == 6 and _days(stored) == _days(pd.read_parquet(uri).sort_values("window_start"))
    assert stored[RECORDED_AT].tolist() == [pd.Timestamp(T1)] * 3 + [pd.Timestamp(T3)] * 3
    assert again.history.replaced_rows == 3 and again.metrics["history_windows"] == 6.0
    assert not list(uri.parent.glob(".*tmp*")), "temporary files left behind"
    assert any("The alert is about this run's 3 window(s) only" in s for s in again.summary)


def test_the_alert_is_about_this_runs_windows_only(batches, tmp_path):
    a, b = batches
    uri = tmp_path / "h.parquet"
    drifted = _run(b, uri, T1)
    assert drifted.alert
    clean = _run(a, uri, T2)  # a later run of clean windows: yesterday's drift does not alarm again
    assert not clean.alert and clean.metrics["windows_flagged"] == 0.0
    history = pd.read_parquet(uri)
    assert history["flagged"].sum() >= 1 and clean.metrics["history_windows"] == 6.0
    assert any("1 of them flagged" in s or "of them flagged" in s for s in clean.summary)


def test_a_mismatched_history_fails_clearly_and_is_left_unchanged(batches, tmp_path):
    a, _ = batches
    uri = tmp_path / "h.parquet"
    _run(a, uri, T1)
    before = uri.read_bytes()
    with pytest.raises(
        HistoryError,
        match=r"history_uri=.*h\.parquet.*only in the history: .*mmd2_fired.*only in this run: none",
    ):
        _run(a, uri, T2, detectors="centroid,cosine")  # other detectors: other columns
    assert uri.read_bytes() == before

    foreign = tmp_path / "foreign.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(foreign)
    with pytest.raises(HistoryError, match="another history_uri"):
        _run(a, foreign, T1)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet at all")
    with pytest.raises(HistoryError, match=r"broken\.parquet.*not a readable Parquet table.*left as it is"):
        _run(a, broken, T1)
    assert broken.read_bytes() == b"not parquet at all"


def test_the_command_line_reports_a_bad_history_with_status_2(batches, tmp_path, capsys):
    from components.drift.__main__ import main

    a, _ = batches
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"junk")
    argv = [str(a), "--report", str(tmp_path / "r.html"), "--table", str(tmp_path / "t.parquet")]
    argv += [
        "--projection",
        "pca",
        "--drift-resamples",
        "300",
        "--false-alarm-rate",
        "0.02",
        "--no-thumbnails",
        "--history-uri",
        str(broken),
    ]
    assert main(argv) == 2
    assert "broken.parquet" in capsys.readouterr().err


def test_history_uri_is_checked_with_the_settings():
    for bad in ("http://host/h.parquet", "gs://bucket", "gs://bucket/", "some/folder/"):
        with pytest.raises(ValueError, match="history_uri"):
            DriftConfig(history_uri=bad)
    for good in ("", "h.parquet", "gs://b/m/h.parquet", "s3://b/h.parquet", "minio://mlpipeline/h.parquet"):
        DriftConfig(history_uri=good)


def _table(days, window="daily", flagged=False):
    start = pd.to_datetime(days).tz_localize("UTC")
    return pd.DataFrame(
        {
            "window_start": start,
            "window_end": start + pd.Timedelta(days=1),
            "flagged": flagged,
            "window": window,
        }
    )


def test_merge_keys_on_window_start_and_length():
    old = stamp(_table(["2026-11-01", "2026-11-02"]), T1, "m-1")
    weekly = stamp(_table(["2026-11-02"], window="weekly"), T1, "m-1")
    history, _ = merge_history(None, pd.concat([old, weekly], ignore_index=True))
    # stored in nanoseconds by another writer: the same windows still match
    history["window_start"] = history["window_start"].astype("datetime64[ns, UTC]")
    new = stamp(_table(["2026-11-02", "2026-11-03"], flagged=True), T2, "m-2")
    merged, replaced = merge_history(history, new)
    assert replaced == 1  # the daily 2026-11-02; the weekly window of the same start is another window
    assert list(zip(_days(merged), merged["window"], merged[MODEL_VERSION], strict=True)) == [
        ("2026-11-01", "daily", "m-1"),
        ("2026-11-02", "daily", "m-2"),
        ("2026-11-02", "weekly", "m-1"),
        ("2026-11-03", "daily", "m-2"),
    ]


def test_a_missing_history_is_empty_and_a_local_write_is_atomic(tmp_path):
    uri = tmp_path / "deep" / "h.parquet"
    assert read_history(str(uri)) is None
    update = update_history(str(uri), _table(["2026-11-01"]), T1, "m-1")
    assert update.previous_rows == 0 and len(update.table) == 1 and uri.is_file()
    assert not list(uri.parent.glob(".*"))


def test_remote_history_through_the_s3_emulator(batches, s3_endpoint, fake_aws_credentials, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("MINIO_ENDPOINT_URL", s3_endpoint)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="drift-history")
    a, b = batches
    for scheme in ("s3", "minio"):
        uri = f"{scheme}://drift-history/{scheme}/drift_history.parquet"
        _run(a, uri, T1)
        _run(b, uri, T2)
        rerun = _run(b, uri, T3)
        stored = read_history(uri)
        assert len(stored) == 6 and rerun.history.replaced_rows == 3
        assert stored[RECORDED_AT].tolist() == [pd.Timestamp(T1)] * 3 + [pd.Timestamp(T3)] * 3
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="drift-history", Prefix=scheme)["Contents"]]
        assert keys == [f"{scheme}/drift_history.parquet"]  # one object, written whole


def test_an_unreachable_remote_history_fails_clearly(batches, monkeypatch, fake_aws_credentials):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    from components.common.storage import StorageConfig

    config = StorageConfig(s3_endpoint=dead, connect_timeout=0.5, read_timeout=0.5, retries=0)
    with pytest.raises(HistoryError, match=r"s3://b/h\.parquet.*could not read.*history_uri=''"):
        read_history("s3://b/h.parquet", config)


# The report's trend section -----------------------------------------------------------------------


def _figure(report: str, div_id: str) -> dict:
    """The data and layout of the plotly figure drawn into ``div_id``, parsed from the report."""
    from components.drift.report import read_figure

    return read_figure(report, div_id)


def _x_days(trace: dict) -> list[str]:
    return [str(x)[:10] for x in trace["x"]]


def test_the_report_shows_the_trend_with_this_runs_windows_marked(tmp_path):
    a = _batch(tmp_path / "a", 0, "2026-11-28", drift_days=(1,), version="<b>m&1</b>")
    b = _batch(tmp_path / "b", 1, "2026-12-01", version="m-2")
    uri = tmp_path / "h.parquet"
    _run(a, uri, T1)
    report_path = tmp_path / "report.html"
    result = _run(b, uri, T2, report=report_path)
    report = report_path.read_text(encoding="utf-8")
    assert not result.alert  # the drifted window of the earlier run does not alarm again
    assert "Trend over the stored history" in report and "Drift over time (this run)" in report
    assert "<b>The alert is about this run's windows only</b>" in report
    fig = _figure(report, "drift-trend")
    traces = {}
    for t in fig["data"]:
        traces.setdefault(t["name"], []).append(t)
    assert set(traces) == {"all windows", "earlier runs", "this run", "flagged"}
    for panel in range(2):  # p-value panel and centroid-distance panel
        assert _x_days(traces["this run"][panel]) == ["2026-11-28", "2026-11-29", "2026-11-30"]
        assert _x_days(traces["earlier runs"][panel]) == ["2026-11-25", "2026-11-26", "2026-11-27"]
        assert _x_days(traces["flagged"][panel]) == ["2026-11-26"]  # the earlier run's flagged window
        assert (
            traces["this run"][panel]["marker"]["symbol"] != traces["earlier runs"][panel]["marker"]["symbol"]
        )
        assert (
            traces["this run"][panel]["marker"]["color"] != traces["earlier runs"][panel]["marker"]["color"]
        )
    assert fig["layout"]["yaxis"]["type"] == "log"
    band = fig["layout"]["shapes"][0]
    assert str(band["x0"])[:10] == "2026-11-28" and str(band["x1"])[:10] == "2026-12-01"
    # strings from the data are escaped: the model version's markup is shown, not interpreted
    assert "<b>m&1</b>" not in report
    hover = traces["earlier runs"][0]["text"]
    assert all("model &lt;b&gt;m&amp;1&lt;/b&gt;" in h for h in hover)
    assert "fired: " in hover[1] and "recorded 2026-11-28 06:00 UTC" in hover[1]
    assert pd.read_parquet(uri)[MODEL_VERSION].tolist() == ["<b>m&1</b>"] * 3 + ["m-2"] * 3
    _node_check(report, "drift-trend", tmp_path)


def _node_check(report: str, div_id: str, tmp_path) -> None:
    """The figure block drawing ``div_id`` is one JSON value the report's loader can parse."""
    import re

    blocks = re.findall(
        r'<script type="application/json"[^>]*data-div="' + div_id + r'">(.*?)</script>', report, re.S
    )
    assert len(blocks) == 1 and set(json.loads(blocks[0])) == {"data", "layout", "config"}


def test_without_history_the_report_says_so(batches, tmp_path):
    a, _ = batches
    report_path = tmp_path / "report.html"
    result = run_drift(a, a, report_path, None, DriftConfig(**FAST))
    report = report_path.read_text(encoding="utf-8")
    assert 'id="drift-trend"' not in report and "history_uri</code> is empty" in report
    assert result.metrics["history_windows"] == 0.0 and result.history.uri == ""
    assert any("No drift history (history_uri is empty)" in s for s in result.summary)
