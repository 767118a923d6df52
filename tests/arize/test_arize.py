"""Arize stage: the real SDK against a loopback server (conftest.FakeArize); no internet."""

from __future__ import annotations

import json
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from components.arize.config import ArizeConfig
from components.arize.log import (
    SENT_COLUMNS,
    ArizeSendError,
    ArizeValidationError,
    ChunkNotSent,
    CredentialsError,
    EnvReport,
    LogResult,
    PreparedSource,
    iter_chunks,
    log_prepared,
    read_prepared,
    send_chunk,
    sent_frame,
    validate_all,
)
from components.common import schema
from components.common.schema import PreparedColumns as P


def fast(**kw) -> ArizeConfig:
    """The stage's settings with short waits (backoff 0.01 s, timeout 10 s) unless given."""
    return ArizeConfig(**{"backoff_s": 0.01, "timeout_s": 10.0, **kw})


def log(prepared: Path, summary: Path, client=None, **kw) -> LogResult:
    """``log_prepared`` with :func:`fast` settings, without a progress bar."""
    return log_prepared(prepared, summary, fast(**kw), client=client, progress=False)


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
    result = log(prepared_dir, tmp_path / "summary.md", arize_model_name="fm-test", chunk_rows=4)
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
    chunks = ledger["chunks"].values()
    assert ledger["version"] == 2 and len(chunks) == 3 + 2 + 3
    assert {c["state"] for c in chunks} == {"sent"}
    validation = sorted(
        (c for c in chunks if c["environment"] == schema.VALIDATION), key=lambda c: c["chunk"]
    )
    assert [(c["first_row"], c["last_row"], c["rows"]) for c in validation] == [(0, 3, 4), (4, 4, 1)]
    assert {c["batch_id"] for c in validation} == {f"validation-{manifest_version(prepared_dir)}"}
    assert all(len(c["rows_sha256"]) == 64 and c["chunk_rows"] == 4 for c in chunks)
    out = capsys.readouterr()
    for text in (summary, json.dumps(ledger), out.out, out.err):
        assert key not in text and space not in text


def test_retries_5xx_with_backoff(fake_arize, credentials, prepared_dir, tmp_path):
    fake_arize.fail_with = [503, 503]
    result = log(prepared_dir, tmp_path / "s.md", chunk_rows=100)
    assert fake_arize.requests == 3 + 2  # one chunk per environment, the first tried three times
    assert result.environments[schema.TRAINING].retries == 2
    assert [r.table.num_rows for r in fake_arize.received] == list(COUNTS.values())


def test_a_timeout_is_not_retried_the_chunk_is_uncertain(fake_arize, credentials, prepared_dir, tmp_path):
    """A read timeout: the server may have stored the rows, so no retry (before: retried, rows twice)."""
    fake_arize.stall_s = [1.5]  # longer than the client's timeout
    with pytest.raises(ArizeSendError, match=r"sending training chunk 0 \(rows 0-11, .*got no answer") as err:
        log(prepared_dir, tmp_path / "s.md", chunk_rows=100, timeout_s=0.5)
    assert "is not retried" in str(err.value) and "resend_uncertain=True" in str(err.value)
    assert "Not sent: validation (all), production (all)" in str(err.value)
    assert fake_arize.requests == 1


def test_gives_up_after_max_attempts(fake_arize, credentials, prepared_dir, tmp_path):
    fake_arize.fail_with = [503] * 3
    with pytest.raises(
        ArizeSendError, match=r"training chunk 0 failed after 3 attempt\(s\).*HTTP 503"
    ) as err:
        log(prepared_dir, tmp_path / "s.md", chunk_rows=100, max_attempts=3)
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
        log(prepared_dir, tmp_path / "s.md", chunk_rows=100)
    message = str(err.value)
    assert f"HTTP {status}" in message and "ARIZE_API_KEY" in message and "ARIZE_SPACE_ID" in message
    assert fake_arize.requests == 1  # not retried
    out = capsys.readouterr()
    for text in (message, out.out, out.err, (tmp_path / "s.md").read_text()):
        assert key not in text and space not in text


def test_no_credentials_validates_and_says_nothing_was_sent(
    fake_arize, no_credentials, prepared_dir, tmp_path
):
    result = log(prepared_dir, tmp_path / "s.md", chunk_rows=5)
    assert not result.sent and fake_arize.requests == 0
    summary = (tmp_path / "s.md").read_text()
    assert "NOTHING SENT" in summary
    assert "ARIZE_API_KEY and ARIZE_SPACE_ID not set in the environment" in summary
    assert "validation passed for every chunk" in summary
    assert "| training | 12 | 3 | 0 | 0 |" in summary
    with pytest.raises(CredentialsError) as err:
        log(prepared_dir, tmp_path / "t.md", require_arize_credentials=True)
    assert str(err.value) == (
        "ARIZE_API_KEY and ARIZE_SPACE_ID not set in the environment; require_arize_credentials is set. "
        "Give the Arize credentials through a Kubernetes Secret (use_secret_as_env) or set "
        "require_arize_credentials=False to validate only"
    )
    assert not (tmp_path / "t.md").exists()


def test_rerun_after_part_way_failure_sends_only_the_rest(fake_arize, credentials, prepared_dir, tmp_path):
    fake_arize.fail_after = 4  # training's 3 chunks and validation's first get through, then 500s
    with pytest.raises(ArizeSendError) as err:
        log(prepared_dir, tmp_path / "s.md", chunk_rows=4, max_attempts=2)
    assert "Sent so far: training: 3 of 3 chunks; validation: 1 of 2 chunks" in str(err.value)
    assert "Not sent: validation from chunk 1 on, production (all)" in str(err.value)
    assert "STOPPED PART-WAY" in (tmp_path / "s.md").read_text()
    assert len(fake_arize.received) == 4

    fake_arize.fail_after = None
    result = log(prepared_dir, tmp_path / "s.md", chunk_rows=4)
    assert len(fake_arize.received) == 8  # 4 more: validation's last, production's 3
    assert result.environments[schema.TRAINING].chunks_skipped == 3
    assert result.environments[schema.VALIDATION].chunks_skipped == 1
    ids = [i for r in fake_arize.received for i in r.table[P.PREDICTION_ID].to_pylist()]
    assert len(ids) == len(set(ids)) == sum(COUNTS.values())  # every row exactly once

    log(prepared_dir, tmp_path / "s.md", chunk_rows=4)  # a third run sends nothing new
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
        log(bad, tmp_path / "s.md", chunk_rows=100)
    assert "validation failed, nothing was sent" in str(err.value)
    assert fake_arize.requests == 0  # training and validation were fine, but nothing went out


def test_one_value_vectors_fail_sdk_validation(fake_arize, no_credentials, prepared_dir, tmp_path):
    bad = copy_prepared(prepared_dir, tmp_path)
    n = COUNTS[schema.TRAINING]
    rewrite(bad / schema.prepared_file(schema.TRAINING), P.IMAGE_VECTOR, [[0.5]] * n, pa.list_(pa.float32()))
    with pytest.raises(ArizeValidationError, match=rf"training chunk 0 .*{P.IMAGE_VECTOR}"):
        log(bad, tmp_path / "s.md")


def test_missing_folder_column_or_rows(no_credentials, prepared_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json: not found"):
        log(tmp_path / "nowhere", tmp_path / "s.md")
    bad = copy_prepared(prepared_dir, tmp_path)
    path = bad / schema.prepared_file(schema.VALIDATION)
    pq.write_table(pq.read_table(path).drop_columns([P.IMAGE_LINK]), path)
    with pytest.raises(ValueError, match=rf"validation.parquet: missing column\(s\) {P.IMAGE_LINK}"):
        log(bad, tmp_path / "s.md")
    pq.write_table(pq.read_table(prepared_dir / schema.prepared_file(schema.VALIDATION)).slice(0, 0), path)
    with pytest.raises(ValueError, match="environment validation has no rows"):
        log(bad, tmp_path / "s.md")
    with pytest.raises(ValueError, match="chunk_rows=0"):
        log(prepared_dir, tmp_path / "s.md", chunk_rows=0)


def test_command_line_without_credentials(no_credentials, prepared_dir, tmp_path, capsys):
    from components.arize.__main__ import main

    argv = ["--prepared", str(prepared_dir), "--summary", str(tmp_path / "s.md")]
    assert main([*argv, "--arize-model-name", "fm-cli", "--chunk-rows", "5"]) == 0
    summary = (tmp_path / "s.md").read_text()
    assert summary.startswith("# Arize log: NOTHING SENT\n\nModel `fm-cli` version `v-test`")
    assert "| training | 12 | 3 | 0 | 0 | 0 | 0 | 0 | 0.0 |" in summary
    capsys.readouterr()
    assert main([*argv, "--require-arize-credentials"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("arize: error: ARIZE_API_KEY and ARIZE_SPACE_ID not set") and "Traceback" not in err


# ---------------------------------------------------------------- config, client, steps


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"arize_model_name": " "}, "arize_model_name is empty: give the model's name in Arize"),
        ({"chunk_rows": 0}, "chunk_rows=0: expected a positive number of rows"),
        ({"max_attempts": 0}, "max_attempts=0: expected at least 1"),
        ({"backoff_s": -1.0}, "backoff_s=-1.0: expected 0 or more seconds"),
        ({"timeout_s": 0.0}, "timeout_s=0.0: expected a positive number of seconds"),
        ({"api_port": 70000}, "api_port=70000: expected 0 (the SDK's) or a port 1..65535"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kw, message):
    with pytest.raises(ValueError) as err:
        ArizeConfig(**kw)
    assert str(err.value) == message


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_client_given_is_the_one_used(fake_arize, credentials, prepared_dir, tmp_path, monkeypatch):
    """The SDK's environment points at a closed port: only the client given (or built) reaches the server."""
    from arize import ArizeClient

    key, _ = credentials
    monkeypatch.setenv("ARIZE_API_PORT", str(closed_port()))
    client = ArizeClient(api_key=key, api_host="127.0.0.1", api_scheme="http", api_port=fake_arize.port)
    result = log(prepared_dir, tmp_path / "a.md", client=client, chunk_rows=100)
    assert result.sent and [r.table.num_rows for r in fake_arize.received] == list(COUNTS.values())
    # none given: arize_client builds one at the config's endpoint
    endpoint = dict(api_host="127.0.0.1", api_scheme="http", api_port=fake_arize.port)
    log(prepared_dir, tmp_path / "b.md", chunk_rows=100, **endpoint)
    assert len(fake_arize.received) == 2 * len(COUNTS)
    # neither: the SDK's endpoint from the environment, the closed port
    with pytest.raises(ArizeSendError, match=r"training chunk 0 failed after 1 attempt\(s\)"):
        log(prepared_dir, tmp_path / "c.md", chunk_rows=100, max_attempts=1)
    assert len(fake_arize.received) == 2 * len(COUNTS)


def test_read_and_validate_steps(no_credentials, prepared_dir):
    source = read_prepared(prepared_dir)
    version = manifest_version(prepared_dir)
    assert source == PreparedSource(prepared_dir, version, list(schema.SPLITS), version, COUNTS)
    assert read_prepared(prepared_dir, "v-given").model_version == "v-given"
    reports = validate_all(source, ArizeConfig(chunk_rows=5))
    assert {env: (r.rows, r.chunks) for env, r in reports.items()} == {
        schema.TRAINING: (12, 3),
        schema.VALIDATION: (5, 1),
        schema.PRODUCTION: (9, 2),
    }


def test_send_chunk_counts_retries_and_gives_up(fake_arize, credentials, prepared_dir):
    from arize import ArizeClient

    key, space = credentials
    client = ArizeClient(api_key=key)  # the loopback server, through ARIZE_API_HOST/SCHEME/PORT
    _, batch = next(iter_chunks(prepared_dir, schema.PRODUCTION, 100))
    df = sent_frame(batch)
    config = fast(max_attempts=3)
    report = EnvReport(schema.PRODUCTION)
    fake_arize.fail_with = [503, 429]
    send_chunk(
        client, df, schema.PRODUCTION, space_id=space, model_version="v1", config=config, report=report
    )
    assert report.retries == 2 and fake_arize.requests == 3
    assert [(r.environment, r.model_version, r.table.num_rows) for r in fake_arize.received] == [
        (schema.PRODUCTION, "v1", COUNTS[schema.PRODUCTION])
    ]
    fake_arize.fail_with = [503, 503, 503]
    with pytest.raises(ChunkNotSent) as err:
        send_chunk(
            client, df, schema.PRODUCTION, space_id=space, model_version="v1", config=config, report=report
        )
    assert err.value.attempts == 3 and report.retries == 4
    fake_arize.fail_with = [400]  # not retried
    with pytest.raises(ChunkNotSent) as err:
        send_chunk(
            client, df, schema.PRODUCTION, space_id=space, model_version="v1", config=config, report=report
        )
    assert err.value.attempts == 1 and report.retries == 4


# ---------------------------------------------------------------- wrong model, corrupt files, errors


def test_prediction_id_is_one_rule_for_prepare_and_arize():
    """prepare writes and arize checks the same ID: sha256 of version, unit separator, image id."""
    from components.common.schema import prediction_id

    assert prediction_id("v-test", "production-00001") == "545cbe3dbabbe4fbb59ef9829f36910c"
    assert prediction_id("v-test", "production-00001") != prediction_id("v-other", "production-00001")


def test_rows_of_another_model_version_than_the_manifest_are_refused(
    fake_arize, credentials, prepared_dir, tmp_path
):
    """The manifest claims another version than the rows' prediction IDs derive from: nothing sent."""
    bad = copy_prepared(prepared_dir, tmp_path)
    manifest = json.loads((bad / "manifest.json").read_text())
    (bad / "manifest.json").write_text(json.dumps({**manifest, "model_version": "v-other"}))
    with pytest.raises(ArizeValidationError) as err:
        log(bad, tmp_path / "s.md", chunk_rows=5)
    message = str(err.value)
    assert (
        "training (12 of 12 rows, first: row 0, image_id 'training-00000'): prediction_id does not derive"
        in message
    )
    assert (
        "Errors by reason (the Arize SDK's checks and the manifest's):\n  3 x prediction_id does not derive "
        "from the manifest's model version 'v-other': rows prepared for another model version" in message
    )
    assert fake_arize.requests == 0


def test_a_table_that_is_not_the_one_the_manifest_counts_is_refused(no_credentials, prepared_dir, tmp_path):
    bad = copy_prepared(prepared_dir, tmp_path)
    path = bad / schema.prepared_file(schema.PRODUCTION)
    pq.write_table(pq.read_table(path).slice(0, 7), path)
    with pytest.raises(
        ArizeValidationError,
        match=r"production \(7 rows\): the manifest counts 9 rows: the table is not the one",
    ):
        log(bad, tmp_path / "s.md")


def test_truncated_or_corrupt_files_are_named(no_credentials, prepared_dir, tmp_path):
    from components.common.parquet import CorruptParquetError

    bad = copy_prepared(prepared_dir, tmp_path)
    path = bad / schema.prepared_file(schema.VALIDATION)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CorruptParquetError, match=r"validation\.parquet: not a readable Parquet file"):
        log(bad, tmp_path / "s.md")
    (bad / "manifest.json").write_text('{"model_version": "v-test", ')
    with pytest.raises(ValueError, match=r"manifest\.json: not JSON"):
        log(bad, tmp_path / "s.md")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing folder", "manifest.json: not found; expected the output folder of the prepare stage"),
        ("bad parameter", "chunk_rows=0: expected a positive number of rows"),
        ("corrupt table", "production.parquet: not a readable Parquet file"),
        ("refused by Arize", "sending training chunk 0 failed after 1 attempt(s): APIError"),
        ("answer lost", "got no answer"),
    ],
)
def test_command_line_prints_one_line_not_a_traceback(
    case, expected, fake_arize, credentials, prepared_dir, tmp_path, capsys
):
    from components.arize.__main__ import main

    prepared, extra = prepared_dir, ["--max-attempts", "1"]
    if case == "missing folder":
        prepared = tmp_path / "nowhere"
    elif case == "bad parameter":
        extra = ["--chunk-rows", "0"]
    elif case == "corrupt table":
        prepared = copy_prepared(prepared_dir, tmp_path)
        (prepared / schema.prepared_file(schema.PRODUCTION)).write_bytes(b"PAR1 but not really")
    elif case == "refused by Arize":
        fake_arize.fail_with = [400]
    else:
        fake_arize.drop = {1}
    assert main(["--prepared", str(prepared), "--summary", str(tmp_path / "s.md"), *extra]) == 2
    err = capsys.readouterr().err  # the progress bar's lines, then the error
    [line] = [line for line in err.splitlines() if line.startswith("arize: error: ")]
    assert expected in line and "Traceback" not in err


def dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_runs_are_removed(no_credentials, prepared_dir, tmp_path):
    import os

    dead, alive = dead_pid(), os.getppid()
    stale = [tmp_path / f".s.md.tmp-{dead}", tmp_path / f".s.md.ledger.json.tmp-{dead}"]
    kept = [tmp_path / f".s.md.tmp-{alive}", tmp_path / f".other.txt.tmp-{dead}"]
    for p in [*stale, *kept]:
        p.write_text("left behind")
    log(prepared_dir, tmp_path / "s.md")
    assert [p.exists() for p in stale] == [False, False]
    assert [p.exists() for p in kept] == [True, True]  # a live process's, and not a sibling of ours


def test_links_of_the_new_layout_are_sent_null_without_a_store_and_as_written_with_one(
    fake_arize, credentials, prepared_dir, tmp_path
):
    """prepare without an image store: image_link null on every row, sent as a string column; the SDK's
    validation passes. The same rows with links (an image store): sent as written."""
    log(prepared_dir, tmp_path / "a.md", chunk_rows=100)
    for received in fake_arize.received:
        link = received.table.column(P.IMAGE_LINK)
        assert pa.types.is_string(link.type) or pa.types.is_large_string(link.type)
        assert link.null_count == received.table.num_rows
    # the same folder as prepare writes it with an image store: a link per row
    linked = tmp_path / "linked"
    shutil.copytree(prepared_dir, linked)
    path = linked / schema.prepared_file(schema.PRODUCTION)
    table = pq.read_table(path)
    links = [f"/images/production/{i}.png" for i in table[P.IMAGE_ID].to_pylist()]
    pq.write_table(
        table.set_column(table.schema.get_field_index(P.IMAGE_LINK), P.IMAGE_LINK, pa.array(links)), path
    )
    fake_arize.received.clear()
    log(linked, tmp_path / "b.md", chunk_rows=100)
    got = [r for r in fake_arize.received if r.environment == schema.PRODUCTION]
    assert [link for r in got for link in r.table[P.IMAGE_LINK].to_pylist()] == links
