"""The monitoring pipeline's production batch: which day a run processes, and where that day's batch is.

A scheduled run processes its own batch: ``production_uri`` may hold ``{date}``
(``gs://bucket/batches/{date}/``), filled with the run's date as ``YYYY-MM-DD``. The date is, in order:

1. ``batch_date`` when given (a run started by hand names its day);
2. the date of ``schedule_time``, the run's scheduled time (RFC 3339) that the KFP backend puts in
   place of ``dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER`` (recurring runs: the scheduled time;
   runs started by hand: their creation time; ``backend/src/v2/driver/resolve.go`` at KFP 2.17.0);
3. today's UTC date when there is no schedule time: empty, or the placeholder itself (kfp.local does
   not replace it; ``components.pipelines.local`` passes "" instead).

:func:`resolve_batch` gives that day and the URI; nothing is copied here: the ingest stage reads the
URI (image files, a manifest or a data-stage folder; local path, gs://, s3://, minio://).
:func:`dataset_splits` checks a data-stage folder names a production split (ingest uses it). Plain
functions, testable without KFP; ``components.common.helpers.resolve_batch`` is the component.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from components.common import schema

DATE_FIELD = "{date}"
SCHEDULE_TIME_PLACEHOLDER = (
    "{{$.pipeline_job_schedule_time_utc}}"  # dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER
)
DATASET_DICT_FILE = "dataset_dict.json"  # what datasets.DatasetDict.save_to_disk writes: {"splits": [...]}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class BatchDate:
    """The day a run processes and where that came from (said in the task's log)."""

    day: date
    source: str  # "batch_date", "schedule time ...", or "today (no schedule time ...)"

    @property
    def iso(self) -> str:
        """The day as ``YYYY-MM-DD``."""
        return self.day.isoformat()

    @property
    def end(self) -> str:
        """The last second of the day, ISO 8601 UTC: where prepare moves the batch's newest row.

        A batch of that day's predictions moves by less than a day and stays on its date; a batch
        cut from an older data-stage build lands on its date, so each run's windows are its own.
        """
        return f"{self.iso}T23:59:59Z"


@dataclass(frozen=True)
class ResolvedBatch:
    """The day a run processes and the URI of its batch (``production_uri`` with ``{date}`` filled)."""

    day: BatchDate
    uri: str


def parse_batch_date(value: str) -> date:
    """A ``YYYY-MM-DD`` day; a ValueError naming ``batch_date`` and the expected form otherwise."""
    text = value.strip()
    if _DATE.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(
        f"batch_date={value!r}: expected a day as YYYY-MM-DD, e.g. 2026-11-24 "
        "(or leave it empty for the run's scheduled date)"
    )


def resolve_batch_date(
    batch_date: str, schedule_time: str, today: Callable[[], date] | None = None
) -> BatchDate:
    """The day a run processes: ``batch_date``, else the schedule time's UTC date, else today (UTC)."""
    if batch_date.strip():
        return BatchDate(parse_batch_date(batch_date), "batch_date")
    scheduled = schedule_time.strip()
    if scheduled and scheduled != SCHEDULE_TIME_PLACEHOLDER:
        try:
            when = datetime.fromisoformat(scheduled.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"schedule_time={schedule_time!r}: expected an RFC 3339 time such as "
                "2026-11-24T06:00:00Z (the KFP backend fills it for each run)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return BatchDate(when.astimezone(UTC).date(), f"schedule time {scheduled}")
    day = today() if today else datetime.now(UTC).date()
    return BatchDate(day, "today, UTC: the run has no schedule time (a kfp.local run)")


def batch_uri(production_uri: str, day: BatchDate) -> str:
    """``production_uri`` with ``{date}`` filled in; without it, the URI as is."""
    if not production_uri.strip():
        raise ValueError(
            "production_uri is empty: give the production batch (a folder of images, a manifest or a "
            "data-stage folder)"
        )
    return production_uri.replace(DATE_FIELD, day.iso)


def dataset_splits(folder: str | Path, where: str) -> tuple[str, ...]:
    """The splits ``dataset_dict.json`` names; a ValueError when it is missing, unreadable or has no production."""
    path = Path(folder) / DATASET_DICT_FILE
    if not path.is_file():
        raise ValueError(
            f"{where}: no {DATASET_DICT_FILE}; expected a data-stage folder (a DatasetDict saved "
            f"with save_to_disk) holding a {schema.PRODUCTION!r} split"
        )
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))["splits"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{where}: {DATASET_DICT_FILE} is not readable ({exc}); expected {{'splits': [...]}}"
        ) from None
    if not isinstance(splits, list) or schema.PRODUCTION not in splits:
        raise ValueError(
            f"{where}: {DATASET_DICT_FILE} names the splits {splits}; the batch needs a "
            f"{schema.PRODUCTION!r} split"
        )
    return tuple(str(s) for s in splits)


def resolve_batch(
    production_uri: str, batch_date: str, schedule_time: str, today: Callable[[], date] | None = None
) -> ResolvedBatch:
    """The run's day (:func:`resolve_batch_date`) and its batch's URI (:func:`batch_uri`)."""
    day = resolve_batch_date(batch_date, schedule_time, today)
    return ResolvedBatch(day, batch_uri(production_uri, day))
