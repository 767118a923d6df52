"""Arize stage: the real SDK against a loopback server (conftest.FakeArize); no internet."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from components.arize.log import (
    SENT_COLUMNS,
    ArizeSendError,
    ArizeValidationError,
    CredentialsError,
    log_prepared,
)
from components.common import schema
from components.common.schema import PreparedColumns as P

FAST = dict(backoff_s=0.01, timeout_s=10, progress=False)
# The prepared_dir fixture (conftest.py) holds these rows per environment and vectors of DIM values.
COUNTS = {schema.TRAINING: 12, schema.VALIDATION: 5, schema.PRODUCTION: 9}
DIM = 8


@pytest.fixture(autouse=True)
def _layout_matches(prepared_dir):
    manifest = json.loads((prepared_dir / "manifest.json").read_text())
    assert manifest["rows"] == COUNTS and manifest["vector_length"] == DIM


def manifest_version(prepared_dir: Path) -> str:
    return json.loads((prepared_dir / "manifest.json").read_text())["model_version"]


def test_sends_every_environment_in_chunks(fake_arize, credentials, prepared_dir, tmp_path, capsys):
    key, space = credentials
    result = log_prepared(prepared_dir, tmp_path / "summary.md", model_name="fm-test", chunk_rows=4, **FAST)
    got = fake_arize.by_environment()
    assert set(got) == set(schema.SPLITS)
    for env, n in COUNTS.items():
        tables = [r.table for r in got[env]]
        assert len(tables) == -(-n // 4)  # chunks of 4 rows
        assert sum(t.num_rows for t in tables) == n
        table = pa.concat_tables(tables)
        assert set(table.column_names) == set(SENT_COLUMNS)
        assert table.schema.field(P.IMAGE_VECTOR).type in (
            pa.list_(pa.float32()),
            pa.large_list(pa.float32()),
        )
        assert set(pc.list_value_length(table[P.IMAGE_VECTOR]).to_pylist()) == {DIM}
        expected = pq.read_table(prepared_dir / schema.prepared_file(env))
        assert table[P.PREDICTION_ID].to_pylist() == expected[P.PREDICTION_ID].to_pylist()
        assert table[P.IMAGE_LINK].to_pylist() == expected[P.IMAGE_LINK].to_pylist()
        assert result.environments[env].rows_sent == n
    first = fake_arize.received[0]
    assert first.path == "/v1/pandas_arrow"
    assert first.model_id == "fm-test" and first.model_version == manifest_version(prepared_dir)
    assert first.headers["arize-space-id"] == space
    assert {r.batch_id for r in got[schema.VALIDATION]} == {f"validation-{manifest_version(prepared_dir)}"}
    summary = (tmp_path / "summary.md").read_text()
    assert "| production | 9 | 3 | 9 | 3 | 0 |" in summary and "fm-test" in summary
    ledger = json.loads((tmp_path / "summary.md.ledger.json").read_text())
    assert len(ledger["sent"]) == 3 + 2 + 3
    out = capsys.readouterr()
    for text in (summary, json.dumps(ledger), out.out, out.err):
        assert key not in text and space not in text


def test_retries_5xx_with_backoff(fake_arize, credentials, prepared_dir, tmp_path):
    fake_arize.fail_with = [503, 503]
    result = log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=100, **FAST)
    assert fake_arize.requests == 3 + 2  # one chunk per environment, the first tried three times
    assert result.environments[schema.TRAINING].retries == 2
    assert [r.table.num_rows for r in fake_arize.received] == list(COUNTS.values())


def test_retries_timeouts(fake_arize, credentials, prepared_dir, tmp_path):
    fake_arize.stall_s = [1.5]  # longer than the client's timeout
    result = log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=100, **{**FAST, "timeout_s": 0.5})
    assert result.environments[schema.TRAINING].retries == 1
    assert [r.table.num_rows for r in fake_arize.received] == list(COUNTS.values())


def test_gives_up_after_max_attempts(fake_arize, credentials, prepared_dir, tmp_path):
    fake_arize.fail_with = [503] * 3
    with pytest.raises(
        ArizeSendError, match=r"training chunk 0 failed after 3 attempt\(s\).*HTTP 503"
    ) as err:
        log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=100, max_attempts=3, **FAST)
    assert (
        "Sent so far: nothing. Not sent: training from chunk 0 on, validation (all), production (all)"
        in str(err.value)
    )
    assert fake_arize.received == []


@pytest.mark.parametrize("status", [401, 403])
def test_401_403_stop_with_a_message_about_key_and_space(
    status, fake_arize, credentials, prepared_dir, tmp_path, capsys
):
    key, space = credentials
    fake_arize.fail_with = [status]
    with pytest.raises(CredentialsError) as err:
        log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=100, **FAST)
    message = str(err.value)
    assert f"HTTP {status}" in message and "ARIZE_API_KEY" in message and "ARIZE_SPACE_ID" in message
    assert fake_arize.requests == 1  # not retried
    out = capsys.readouterr()
    for text in (message, out.out, out.err, (tmp_path / "s.md").read_text()):
        assert key not in text and space not in text


def test_no_credentials_validates_and_says_nothing_was_sent(
    fake_arize, no_credentials, prepared_dir, tmp_path
):
    result = log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=5, **FAST)
    assert not result.sent and fake_arize.requests == 0
    summary = (tmp_path / "s.md").read_text()
    assert "NOTHING SENT" in summary
    assert "ARIZE_API_KEY and ARIZE_SPACE_ID not set in the environment" in summary
    assert "validation passed for every chunk" in summary
    assert "| training | 12 | 3 | 0 | 0 |" in summary
    with pytest.raises(
        CredentialsError, match="ARIZE_API_KEY and ARIZE_SPACE_ID not set.*require_credentials"
    ):
        log_prepared(prepared_dir, tmp_path / "t.md", require_credentials=True, **FAST)
    assert not (tmp_path / "t.md").exists()


def test_rerun_after_part_way_failure_sends_only_the_rest(fake_arize, credentials, prepared_dir, tmp_path):
    fake_arize.fail_after = 4  # training's 3 chunks and validation's first get through, then 500s
    with pytest.raises(ArizeSendError) as err:
        log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=4, max_attempts=2, **FAST)
    assert "Sent so far: training: 3 of 3 chunks; validation: 1 of 2 chunks" in str(err.value)
    assert "Not sent: validation from chunk 1 on, production (all)" in str(err.value)
    assert "STOPPED PART-WAY" in (tmp_path / "s.md").read_text()
    assert len(fake_arize.received) == 4

    fake_arize.fail_after = None
    result = log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=4, **FAST)
    assert len(fake_arize.received) == 8  # 4 more: validation's last, production's 3
    assert result.environments[schema.TRAINING].chunks_skipped == 3
    assert result.environments[schema.VALIDATION].chunks_skipped == 1
    ids = [i for r in fake_arize.received for i in r.table[P.PREDICTION_ID].to_pylist()]
    assert len(ids) == len(set(ids)) == sum(COUNTS.values())  # every row exactly once

    log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=4, **FAST)  # a third run sends nothing new
    assert len(fake_arize.received) == 8


# ---------------------------------------------------------------- bad input


def copy_prepared(prepared_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(prepared_dir, tmp_path / "prepared", ignore=shutil.ignore_patterns("images")))


def rewrite(path: Path, column: str, values, type_) -> None:
    table = pq.read_table(path)
    pq.write_table(
        table.set_column(table.schema.get_field_index(column), column, pa.array(values, type_)), path
    )


def test_sdk_validation_errors_by_column_before_sending(fake_arize, credentials, prepared_dir, tmp_path):
    bad = copy_prepared(prepared_dir, tmp_path)
    path = bad / schema.prepared_file(schema.PRODUCTION)
    n = COUNTS[schema.PRODUCTION]
    rewrite(path, P.PREDICTION_TS, [datetime(2012, 1, 1, tzinfo=UTC)] * n, schema.TIMESTAMP_TYPE)
    with pytest.raises(
        ArizeValidationError,
        match=r"nothing was sent:\n  production chunk 0 \(rows 0-8\): Prediction timestamp in prediction_ts is out of range",
    ) as err:
        log_prepared(bad, tmp_path / "s.md", chunk_rows=100, **FAST)
    assert "validation failed, nothing was sent" in str(err.value)
    assert fake_arize.requests == 0  # training and validation were fine, but nothing went out


def test_one_value_vectors_fail_sdk_validation(fake_arize, no_credentials, prepared_dir, tmp_path):
    bad = copy_prepared(prepared_dir, tmp_path)
    n = COUNTS[schema.TRAINING]
    rewrite(bad / schema.prepared_file(schema.TRAINING), P.IMAGE_VECTOR, [[0.5]] * n, pa.list_(pa.float32()))
    with pytest.raises(ArizeValidationError, match=rf"training chunk 0 .*{P.IMAGE_VECTOR}"):
        log_prepared(bad, tmp_path / "s.md", **FAST)


def test_missing_folder_column_or_rows(no_credentials, prepared_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json: not found"):
        log_prepared(tmp_path / "nowhere", tmp_path / "s.md", **FAST)
    bad = copy_prepared(prepared_dir, tmp_path)
    path = bad / schema.prepared_file(schema.VALIDATION)
    pq.write_table(pq.read_table(path).drop_columns([P.IMAGE_LINK]), path)
    with pytest.raises(ValueError, match=rf"validation.parquet: missing column\(s\) {P.IMAGE_LINK}"):
        log_prepared(bad, tmp_path / "s.md", **FAST)
    pq.write_table(pq.read_table(prepared_dir / schema.prepared_file(schema.VALIDATION)).slice(0, 0), path)
    with pytest.raises(ValueError, match="environment validation has no rows"):
        log_prepared(bad, tmp_path / "s.md", **FAST)
    with pytest.raises(ValueError, match="chunk_rows=0"):
        log_prepared(prepared_dir, tmp_path / "s.md", chunk_rows=0, **FAST)


def test_command_line_without_credentials(no_credentials, prepared_dir, tmp_path):
    from components.arize.__main__ import main

    assert main(["--prepared", str(prepared_dir), "--summary", str(tmp_path / "s.md")]) == 0
    assert "NOTHING SENT" in (tmp_path / "s.md").read_text()
    with pytest.raises(CredentialsError):
        main(["--prepared", str(prepared_dir), "--summary", str(tmp_path / "t.md"), "--require-credentials"])
