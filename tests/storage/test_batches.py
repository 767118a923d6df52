"""Which day a monitoring run processes and where its batch is (components.common.batches)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from kfp import dsl

from components.common import batches

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


def test_the_batch_is_resolved_not_copied(tmp_path):
    resolved = batches.resolve_batch(str(tmp_path / "batches" / "{date}"), "", "2026-11-25T06:00:00Z", _today)
    assert resolved.uri == str(tmp_path / "batches" / "2026-11-25")
    assert resolved.day.iso == "2026-11-25" and resolved.day.end == "2026-11-25T23:59:59Z"
    assert not (tmp_path / "batches").exists()  # nothing read or written: ingest reads the URI
    assert (
        batches.resolve_batch("gs://b/daily/{date}/m.csv", "", "", _today).uri
        == "gs://b/daily/2026-11-30/m.csv"
    )
    with pytest.raises(ValueError, match="production_uri is empty"):
        batches.resolve_batch("", "2026-11-24", "", _today)


def test_a_data_stage_folder_must_name_a_production_split(tmp_path):
    _write_batch(tmp_path / "a", ("training", "production"))
    assert batches.dataset_splits(tmp_path / "a", "a") == ("training", "production")
    _write_batch(tmp_path / "b", ("training",))
    with pytest.raises(
        ValueError, match=r"b: .*names the splits \['training'\]; the batch needs a 'production' split"
    ):
        batches.dataset_splits(tmp_path / "b", "b")
    (tmp_path / "c").mkdir()
    with pytest.raises(ValueError, match="c: no dataset_dict.json; expected a data-stage folder"):
        batches.dataset_splits(tmp_path / "c", "c")
    (tmp_path / "c" / "dataset_dict.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="c: dataset_dict.json is not readable"):
        batches.dataset_splits(tmp_path / "c", "c")


def test_the_resolving_component_names_the_batch(tmp_path):
    from components.common import helpers

    out = helpers.resolve_batch(
        str(tmp_path / "{date}"), "2026-11-24", dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER
    )
    assert tuple(out) == (str(tmp_path / "2026-11-24"), "2026-11-24", "2026-11-24T23:59:59Z")
