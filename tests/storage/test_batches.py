"""Which day a monitoring run processes, and fetching that day's batch (components.common.batches)."""

from __future__ import annotations

import json
from datetime import date

import boto3
import pytest
from kfp import dsl

from components.common import batches
from components.common.storage import StorageConfig

TODAY = date(2026, 11, 30)


def _today() -> date:
    return TODAY


def _write_batch(folder, splits=("production",)) -> None:
    folder.mkdir(parents=True)
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
    for split in splits:
        (folder / split).mkdir()
        (folder / split / "data-00000-of-00001.arrow").write_bytes(b"rows of " + split.encode())


def test_the_placeholder_is_the_one_kfp_writes():
    assert batches.SCHEDULE_TIME_PLACEHOLDER == dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER


@pytest.mark.parametrize(
    "batch_date,schedule_time,day,source",
    [
        ("2026-11-24", "2026-11-25T06:00:00Z", date(2026, 11, 24), "batch_date"),
        (" 2026-11-24 ", "", date(2026, 11, 24), "batch_date"),
        ("", "2026-11-25T06:00:00Z", date(2026, 11, 25), "schedule time 2026-11-25T06:00:00Z"),
        ("", "2026-11-25T23:30:00-02:00", date(2026, 11, 26), "schedule time"),  # 01:30 UTC next day
        ("", "2026-11-25T06:00:00.123456Z", date(2026, 11, 25), "schedule time"),
        (
            "",
            dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
            TODAY,
            "today, UTC: the run has no schedule time",
        ),
        ("", "", TODAY, "today, UTC: the run has no schedule time"),
    ],
)
def test_the_batch_date(batch_date, schedule_time, day, source):
    resolved = batches.resolve_batch_date(batch_date, schedule_time, _today)
    assert resolved.day == day
    assert resolved.source.startswith(source)
    assert resolved.end == f"{day.isoformat()}T23:59:59Z"


@pytest.mark.parametrize("bad", ["2026-13-01", "24.11.2026", "2026-11-24T00:00:00Z", "2026-2-3", "yesterday"])
def test_a_bad_batch_date_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"batch_date=.*expected a day as YYYY-MM-DD"):
        batches.resolve_batch_date(bad, "", _today)


def test_a_bad_schedule_time_is_a_clear_error():
    with pytest.raises(ValueError, match="schedule_time='tomorrow': expected an RFC 3339 time"):
        batches.resolve_batch_date("", "tomorrow", _today)


def test_the_uri_gets_the_date_only_where_it_asks_for_it():
    day = batches.BatchDate(date(2026, 11, 24), "batch_date")
    assert batches.batch_uri("gs://b/batches/{date}/", day) == "gs://b/batches/2026-11-24/"
    assert batches.batch_uri("s3://b/x/{date}/y-{date}", day) == "s3://b/x/2026-11-24/y-2026-11-24"
    assert batches.batch_uri("gs://b/fixed", day) == "gs://b/fixed"
    with pytest.raises(ValueError, match="production_uri is empty"):
        batches.batch_uri(" ", day)


def test_a_local_batch_is_fetched(tmp_path):
    _write_batch(tmp_path / "batches" / "2026-11-24", ("training", "production"))
    dest = tmp_path / "out"
    fetched = batches.fetch_batch(str(tmp_path / "batches" / "{date}"), "2026-11-24", "", dest, today=_today)
    assert fetched.uri == str(tmp_path / "batches" / "2026-11-24")
    assert (dest / "production" / "data-00000-of-00001.arrow").read_bytes() == b"rows of production"
    meta = fetched.metadata()
    assert meta["batch_date"] == "2026-11-24" and meta["source_uri"] == fetched.uri
    assert meta["files"] == 3 and meta["bytes"] == sum(
        p.stat().st_size for p in dest.rglob("*") if p.is_file()
    )
    assert meta["splits"] == ["training", "production"]


def test_a_missing_batch_names_the_uri_and_the_date(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"no production batch for 2026-11-30 \(today, UTC.*/batches/2026-11-30 is missing or empty",
    ):
        batches.fetch_batch(str(tmp_path / "batches" / "{date}"), "", "", tmp_path / "out", today=_today)
    (tmp_path / "batches" / "2026-11-24").mkdir(parents=True)  # there, but empty
    with pytest.raises(FileNotFoundError, match="no production batch for 2026-11-24 .*missing or empty"):
        batches.fetch_batch(str(tmp_path / "batches" / "{date}"), "2026-11-24", "", tmp_path / "out2")


def test_a_folder_without_a_production_split_is_refused(tmp_path):
    _write_batch(tmp_path / "b" / "2026-11-24", ("training",))
    with pytest.raises(
        ValueError, match=r"2026-11-24.*names the splits \['training'\]; the batch needs a 'production' split"
    ):
        batches.fetch_batch(str(tmp_path / "b" / "{date}"), "2026-11-24", "", tmp_path / "out")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "rows.parquet").write_bytes(b"x")
    with pytest.raises(ValueError, match="no dataset_dict.json; expected a data-stage folder"):
        batches.fetch_batch(str(tmp_path / "c"), "2026-11-24", "", tmp_path / "out3")


def test_a_dated_batch_is_fetched_from_s3_and_gcs(tmp_path, s3_endpoint, gcs_endpoint, fake_aws_credentials):
    from components.common import storage

    s3 = StorageConfig(s3_endpoint=s3_endpoint, connect_timeout=2, read_timeout=10)
    gcs = StorageConfig(gcs_endpoint=gcs_endpoint, connect_timeout=2, read_timeout=10, retries=1)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="batches-s3")
    storage._gcs_client(gcs).create_bucket("batches-gs")
    src = tmp_path / "src"
    _write_batch(src)
    for scheme, config in (("s3", s3), ("gs", gcs)):
        for path in src.rglob("*"):
            if path.is_file():
                rel = path.relative_to(src).as_posix()
                storage.write_bytes(
                    f"{scheme}://batches-{scheme}/daily/2026-11-25/{rel}", path.read_bytes(), config=config
                )
        dest = tmp_path / f"out-{scheme}"
        fetched = batches.fetch_batch(
            f"{scheme}://batches-{scheme}/daily/{{date}}/", "", "2026-11-25T06:00:00Z", dest, config=config
        )
        assert fetched.uri == f"{scheme}://batches-{scheme}/daily/2026-11-25/"
        assert sorted(fetched.files) == ["dataset_dict.json", "production/data-00000-of-00001.arrow"]
        assert (dest / "production" / "data-00000-of-00001.arrow").read_bytes() == b"rows of production"
        with pytest.raises(
            FileNotFoundError,
            match=f"no production batch for 2026-11-26 .*{scheme}://batches-{scheme}/daily/2026-11-26/",
        ):
            batches.fetch_batch(
                f"{scheme}://batches-{scheme}/daily/{{date}}/",
                "2026-11-26",
                "",
                tmp_path / "x",
                config=config,
            )
