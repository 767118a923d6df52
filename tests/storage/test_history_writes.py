"""Two runs recording the drift history at once both keep their windows (no lost update).

On disk the read, merge and write hold a lock on the history's folder; in a bucket the write is
conditional on the version read (S3 ``If-Match``, GCS ``ifGenerationMatch``), and a refused run
reads the other run's table and merges again. The S3 test runs against moto; the GCS emulator
ignores ``ifGenerationMatch`` (see tests/registry), so for GCS the test checks the precondition
is sent.
"""

from __future__ import annotations

import threading
import time
import uuid

import pandas as pd
import pytest

from components.common import history, storage
from tests.storage.conftest import recorded_gcs_requests


def _window(day: int) -> pd.DataFrame:
    """A one-window drift table of 2026-11-<day> (the columns a history keys and stamps)."""
    start = pd.Timestamp(f"2026-11-{day:02d}", tz="UTC")
    return pd.DataFrame(
        {
            "window_start": [start],
            "window_end": [start + pd.Timedelta(days=1)],
            "window": ["daily"],
            "flagged": [False],
            "accuracy": [0.9],
        }
    )


def _days(uri: str, config) -> list[int]:
    table = history.read_history(uri, config)
    return sorted(int(d) for d in table["window_start"].dt.day)


@pytest.fixture
def history_uri(request, tmp_path, monkeypatch):
    """(history URI, StorageConfig) on the backend the test names: a local file, moto S3 or the GCS emulator."""
    kind = request.param
    if kind == "local":
        return str(tmp_path / "monitoring" / "drift_history.parquet"), None
    name = f"history-{uuid.uuid4().hex[:12]}"
    if kind == "s3":
        request.getfixturevalue("fake_aws_credentials")
        config = storage.StorageConfig(s3_endpoint=request.getfixturevalue("s3_endpoint"), retries=0)
        storage._s3_client(config, "s3").create_bucket(Bucket=name)
        return f"s3://{name}/monitoring/drift_history.parquet", config
    config = storage.StorageConfig(gcs_endpoint=request.getfixturevalue("gcs_endpoint"), retries=0)
    storage._gcs_client(config).create_bucket(name)
    return f"gs://{name}/monitoring/drift_history.parquet", config


@pytest.mark.parametrize("history_uri", ["s3"], indirect=True)
def test_a_run_that_writes_between_anothers_read_and_write_is_not_lost(history_uri, monkeypatch):
    """Run B records its window after run A has read the history and before A writes: both stay.

    (On disk B cannot write there: it waits for A's lock, see the test below.)
    """
    uri, config = history_uri
    history.update_history(uri, _window(1), config=config)
    merge = history.merge_history
    calls = []

    def merge_while_b_writes(stored, run_rows):
        calls.append(len(calls))
        if len(calls) == 1:  # A has read the history: B records its own window now
            monkeypatch.setattr(history, "merge_history", merge)
            history.update_history(uri, _window(2), config=config)
            monkeypatch.setattr(history, "merge_history", merge_while_b_writes)
        return merge(stored, run_rows)

    monkeypatch.setattr(history, "merge_history", merge_while_b_writes)
    update = history.update_history(uri, _window(3), config=config)
    assert len(calls) == 2  # A's first write was refused; it read B's table and merged again
    assert update.previous_rows == 2 and sorted(update.table["window_start"].dt.day) == [1, 2, 3]
    assert _days(uri, config) == [1, 2, 3]


@pytest.mark.parametrize("history_uri", ["local", "s3"], indirect=True)
def test_runs_recording_at_once_all_keep_their_windows(history_uri, monkeypatch):
    """8 runs at once, each merge slowed so that they overlap: all 8 windows are stored."""
    uri, config = history_uri
    merge = history.merge_history

    def slow_merge(stored, run_rows):
        time.sleep(0.05)
        return merge(stored, run_rows)

    monkeypatch.setattr(history, "merge_history", slow_merge)
    errors: list[BaseException] = []

    def record(day: int) -> None:
        try:
            history.update_history(uri, _window(day), config=config)
        except BaseException as exc:  # noqa: BLE001 -- reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(day,)) for day in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _days(uri, config) == list(range(1, 9))


def test_without_the_lock_runs_at_once_lose_windows(tmp_path, monkeypatch):
    """The race the lock prevents is real: with a no-op lock, overlapping runs overwrite each other."""
    import contextlib

    uri = str(tmp_path / "drift_history.parquet")
    monkeypatch.setattr(history, "_locked", lambda path: contextlib.nullcontext())
    merge = history.merge_history
    monkeypatch.setattr(history, "merge_history", lambda s, r: (time.sleep(0.05), merge(s, r))[1])

    def record(day: int) -> None:
        with contextlib.suppress(OSError):  # threads of one process also share a temporary name
            history.update_history(uri, _window(day))

    threads = [threading.Thread(target=record, args=(day,)) for day in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(_days(uri, None)) < 8


@pytest.mark.parametrize("history_uri", ["gcs"], indirect=True)
def test_gcs_history_writes_send_the_generation_they_read(history_uri):
    uri, config = history_uri
    history.update_history(uri, _window(1), config=config)
    _, generation = storage.read_versioned(uri, config=config)
    with recorded_gcs_requests(config) as sent:
        history.update_history(uri, _window(2), config=config)
    uploads = [s for s in sent if s.startswith("POST") and "/upload/" in s]
    assert uploads and all(f"ifGenerationMatch={generation}" in s for s in uploads), sent
    assert _days(uri, config) == [1, 2]


@pytest.mark.parametrize("history_uri", ["s3"], indirect=True)
def test_replace_bytes_refuses_a_stale_version_and_creates_only_once(history_uri):
    uri, config = history_uri
    target = uri.replace("drift_history.parquet", "x.bin")
    assert storage.replace_bytes(target, b"one", "", config=config) is True
    assert storage.replace_bytes(target, b"again", "", config=config) is False  # exists now
    data, version = storage.read_versioned(target, config=config)
    assert data == b"one"
    assert storage.replace_bytes(target, b"two", version, config=config) is True
    assert storage.replace_bytes(target, b"three", version, config=config) is False  # stale
    assert storage.read_bytes(target, config=config) == b"two"
    with pytest.raises(FileNotFoundError, match=r"no such object"):
        storage.read_versioned(uri.replace("drift_history.parquet", "missing.bin"), config=config)
