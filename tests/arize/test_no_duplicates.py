"""No duplicate sends: a chunk killed mid-send or unanswered is never sent twice by a rerun.

The loopback server (conftest.FakeArize) decodes what the real SDK posts; each test counts the
prediction IDs it received. Arize does not deduplicate, so a chunk whose fate is unknown is
reported as uncertain, and sent again only with ``resend_uncertain=True``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.arize.config import ArizeConfig
from components.arize.log import ArizeSendError, Chunk, LogResult, iter_chunks, log_prepared
from components.common import schema, storage
from components.common.schema import PreparedColumns as P

COUNTS = {schema.TRAINING: 12, schema.VALIDATION: 5, schema.PRODUCTION: 9}
TOTAL = sum(COUNTS.values())
REPO_ROOT = Path(__file__).resolve().parents[2]


def log(prepared: Path, summary: Path, **kw) -> LogResult:
    config = ArizeConfig(**{"backoff_s": 0.01, "timeout_s": 10.0, "chunk_rows": 4, **kw})
    return log_prepared(prepared, summary, config, progress=False)


def all_ids(prepared: Path) -> list[str]:
    return [
        i
        for env in COUNTS
        for i in pq.read_table(prepared / schema.prepared_file(env))[P.PREDICTION_ID].to_pylist()
    ]


def test_answer_lost_the_chunk_is_not_resent_but_reported(fake_arize, credentials, prepared_dir, tmp_path):
    """The server stores training chunk 1 and drops the connection: the rerun never sends it again."""
    fake_arize.drop = {2}
    with pytest.raises(ArizeSendError, match=r"training chunk 1 \(rows 4-7, .*got no answer") as err:
        log(prepared_dir, tmp_path / "s.md")
    assert "Sent so far: training: 1 of 3 chunks" in str(err.value)
    assert "Not sent: training from chunk 2 on, validation (all), production (all)" in str(err.value)
    assert fake_arize.requests == 2  # not retried: a retry would have stored its rows twice
    assert "STOPPED PART-WAY" in (tmp_path / "s.md").read_text()

    result = log(prepared_dir, tmp_path / "s.md")
    ids = fake_arize.prediction_ids()
    assert Counter(ids) == Counter(all_ids(prepared_dir))  # every row exactly once, none twice
    [uncertain] = result.uncertain
    training = pq.read_table(prepared_dir / schema.prepared_file(schema.TRAINING))[P.PREDICTION_ID]
    assert (uncertain.environment, uncertain.index, uncertain.first_row, uncertain.last_row) == (
        schema.TRAINING,
        1,
        4,
        7,
    )
    assert (uncertain.first_id, uncertain.last_id) == (training[4].as_py(), training[7].as_py())
    summary = (tmp_path / "s.md").read_text()
    assert summary.startswith("# Arize log: sent, 1 chunk(s) UNCERTAIN")
    assert f"- training chunk 1: rows 4-7, prediction IDs {training[4]} .. {training[7]}" in summary
    assert "resend_uncertain=True" in summary
    assert "| training | 12 | 3 | 4 | 1 | 1 | 1 |" in summary  # 1 sent now, 1 before, 1 uncertain

    log(prepared_dir, tmp_path / "s.md")  # a third run: nothing new, still reported
    assert len(fake_arize.prediction_ids()) == TOTAL

    again = log(prepared_dir, tmp_path / "s.md", resend_uncertain=True)  # on purpose
    assert again.environments[schema.TRAINING].chunks_resent == 1 and again.uncertain == []
    assert Counter(fake_arize.prediction_ids()) - Counter(all_ids(prepared_dir)) == Counter(
        training.to_pylist()[4:8]
    )
    log(prepared_dir, tmp_path / "s.md")  # now marked sent: nothing more
    assert len(fake_arize.prediction_ids()) == TOTAL + 4


def test_sender_killed_mid_chunk_rerun_sends_no_row_twice(fake_arize, credentials, prepared_dir, tmp_path):
    """The command line is killed (SIGKILL) while the server holds validation chunk 1 unanswered."""
    fake_arize.hold_after = 4  # training's 3 chunks and validation's first are answered
    summary = tmp_path / "s.md"
    argv = [sys.executable, "-m", "components.arize", "--prepared", str(prepared_dir)]
    argv += ["--summary", str(summary), "--chunk-rows", "4", "--backoff-s", "0.01"]
    proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(fake_arize.received) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fake_arize.received) == 5, proc.stderr.read().decode() if proc.poll() is not None else ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        fake_arize.release.set()
    ledger = json.loads((tmp_path / "s.md.ledger.json").read_text())
    states = Counter((c["environment"], c["state"]) for c in ledger["chunks"].values())
    assert states == {
        (schema.TRAINING, "sent"): 3,
        (schema.VALIDATION, "sent"): 1,
        (schema.VALIDATION, "in_flight"): 1,
    }

    fake_arize.hold_after = None
    result = log(prepared_dir, summary)
    assert Counter(fake_arize.prediction_ids()) == Counter(all_ids(prepared_dir))  # none twice
    assert [(u.environment, u.index, u.first_row, u.last_row) for u in result.uncertain] == [
        (schema.VALIDATION, 1, 4, 4)
    ]
    assert result.uncertain[0].batch_id == f"validation-{result.model_version}"
    assert result.environments[schema.PRODUCTION].rows_sent == COUNTS[schema.PRODUCTION]
    assert "1 chunk(s) UNCERTAIN" in summary.read_text()


def test_the_ledger_in_a_bucket_records_intent_first_and_outlives_the_task(
    fake_arize, credentials, prepared_dir, tmp_path, monkeypatch
):
    """ledger_uri ending in '/': one object per model and version, written before each send."""
    objects: dict[str, bytes] = {}
    states: list[tuple[int, dict[str, str]]] = []  # (requests the server had seen, states) per PUT

    def write_bytes(uri, data, content_type=None, **_):
        if not storage.is_remote(uri):
            return real_write(uri, data, content_type)
        objects[uri] = data
        states.append((fake_arize.requests, {k: c["state"] for k, c in json.loads(data)["chunks"].items()}))
        return uri

    def read_bytes(uri, **_):
        if not storage.is_remote(uri):
            return real_read(uri)
        if uri not in objects:
            raise FileNotFoundError(uri)
        return objects[uri]

    real_write, real_read = storage.write_bytes, storage.read_bytes
    monkeypatch.setattr(storage, "write_bytes", write_bytes)
    monkeypatch.setattr(storage, "read_bytes", read_bytes)
    result = log(prepared_dir, tmp_path / "pod-1" / "s.md", ledger_uri="s3://bucket/ledgers/", chunk_rows=100)
    uri = f"s3://bucket/ledgers/fashion-mnist-classifier--{result.model_version}.ledger.json"
    assert result.ledger == uri and list(objects) == [uri]
    # each chunk: in flight before its request, sent after its answer
    assert [(n, sorted(s.values())) for n, s in states] == [
        (0, ["in_flight"]),
        (1, ["sent"]),
        (1, ["in_flight", "sent"]),
        (2, ["sent", "sent"]),
        (2, ["in_flight", "sent", "sent"]),
        (3, ["sent", "sent", "sent"]),
    ]
    again = log(prepared_dir, tmp_path / "pod-2" / "s.md", ledger_uri="s3://bucket/ledgers/", chunk_rows=100)
    assert fake_arize.requests == 3 and sum(r.chunks_skipped for r in again.environments.values()) == 3


def test_changed_chunk_rows_uses_the_ledgers(fake_arize, credentials, prepared_dir, tmp_path, capsys):
    """A rerun with another chunk_rows cuts the chunks as the ledger did, so none is sent twice."""
    fake_arize.fail_after = 2
    with pytest.raises(ArizeSendError):
        log(prepared_dir, tmp_path / "s.md", max_attempts=1)
    fake_arize.fail_after = None
    log(prepared_dir, tmp_path / "s.md", chunk_rows=5)
    assert "but the ledger's chunks were cut with 4: using 4" in capsys.readouterr().out
    assert Counter(fake_arize.prediction_ids()) == Counter(all_ids(prepared_dir))


def test_a_version_1_ledger_is_still_honoured(fake_arize, credentials, prepared_dir, tmp_path):
    """Ledgers written before in-flight records (``{"version": 1, "sent": ...}``) skip what they hold."""
    version = json.loads((prepared_dir / "manifest.json").read_text())["model_version"]
    chunks: list[Chunk] = [c for c, _ in iter_chunks(prepared_dir, schema.TRAINING, 4)]
    sent = {c.legacy_key("fashion-mnist-classifier", version): {"environment": c.environment} for c in chunks}
    (tmp_path / "s.md.ledger.json").write_text(json.dumps({"version": 1, "sent": sent}))
    result = log(prepared_dir, tmp_path / "s.md")
    assert result.environments[schema.TRAINING].chunks_skipped == 3
    assert len(fake_arize.prediction_ids()) == TOTAL - COUNTS[schema.TRAINING]


def test_an_unreadable_ledger_stops_before_sending(fake_arize, credentials, prepared_dir, tmp_path):
    (tmp_path / "s.md.ledger.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"s\.md\.ledger\.json: the ledger is not JSON .*restore it"):
        log(prepared_dir, tmp_path / "s.md")
    assert fake_arize.requests == 0


def test_a_refused_connection_is_retried_it_never_reached_arize(credentials, prepared_dir, tmp_path):
    """Connection refused: nothing can have been stored, so retrying is safe (and counted)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = dict(api_host="127.0.0.1", api_scheme="http", api_port=port)
    with pytest.raises(ArizeSendError, match=r"training chunk 0 failed after 3 attempt\(s\)"):
        log(prepared_dir, tmp_path / "s.md", max_attempts=3, **endpoint)
    ledger = json.loads((tmp_path / "s.md.ledger.json").read_text())
    assert ledger["chunks"] == {}  # not in flight: a rerun sends it
