"""Small pipeline helpers that belong to no stage: the run's batch, the shard list, the alert and the status.

They are lightweight components like the stages (``build_component``): the batch's resolution runs
in the ingest image (it feeds ingest), the shard list in the prepare image, the gates and notices in
the drift image.
"""

from collections.abc import Callable
from typing import Any, List, NamedTuple  # noqa: UP035 - KFP reads these annotations

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Output
from kfp.dsl.python_component import PythonComponent

from components.common.images import ImageSet, build_component

ALERT_FILE_TITLE = "Embedding drift alert"
# drift's `status` when no window of the run could be tested (components.drift.stage.INSUFFICIENT_DATA;
# a test checks they agree: the pipelines do not import the drift stage's heavy modules).
INSUFFICIENT_DATA = "insufficient-data"


def resolve_batch(
    production_uri: str,
    batch_date: str,
    schedule_time: str,
) -> NamedTuple("Outputs", [("batch_uri", str), ("batch_date", str), ("batch_end", str)]):  # type: ignore[valid-type]  # the form KFP reads
    """Which production batch this run reads: ``production_uri`` with ``{date}`` filled; nothing is copied.

    The date is ``batch_date`` (YYYY-MM-DD) when given, else the run's scheduled time (the backend
    fills ``schedule_time``), else today (UTC). Returns the URI ingest reads, the date and the date's
    last second (prepare's ``now``, which puts the batch's rows on its date). Never cached.
    """
    from components.common.batches import resolve_batch as resolve

    resolved = resolve(production_uri, batch_date, schedule_time)
    print(f"batch {resolved.day.iso} ({resolved.day.source}): {resolved.uri}")
    return (resolved.uri, resolved.day.iso, resolved.day.end)


def shard_indices(num_shards: int) -> List[int]:  # noqa: UP006 - KFP reads this annotation
    """0..num_shards-1, the items of the embed ParallelFor."""
    if num_shards < 1:
        raise ValueError(f"num_shards={num_shards}: expected 1 or more")
    return list(range(num_shards))


def alert_gate(alert: bool) -> bool:
    """The drift alert as a single output, the value ``dsl.If`` tests.

    kfp.local 2.17 cannot resolve a condition on a *named* output of a NamedTuple (``drift-alert``
    is read as a pipeline input), but resolves ``<task>-Output``: this gate lets the alert branch run
    locally as on a cluster.
    """
    print(f"drift alert: {alert}")
    return alert


def drift_alert(report: Input[HTML], metrics: Input[Metrics], notice: Output[Markdown]):
    """Runs only when drift raised its alert: writes a notice that links the report and fails loudly in the log."""
    import json
    import os

    values = dict(getattr(metrics, "metadata", {}) or {})
    lines = [
        "# Embedding drift alert",
        "",
        f"The drift stage raised its alert. Report: `{report.uri}`",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(values.items())),
        "",
    ]
    tmp = notice.path + ".tmp"
    os.makedirs(os.path.dirname(notice.path) or ".", exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, notice.path)
    print(f"ALERT: embedding drift; report {report.uri}; metrics {json.dumps(values, sort_keys=True)}")


def notify_drift(
    report: Input[HTML], drift_table: Input[Dataset], metrics: Input[Metrics], kfp_ui_host: str, run_id: str
):
    """Runs only when drift raised its alert: posts a Slack-compatible message to the drift webhook.

    The message names this run's flagged windows and the detectors that fired in each (read from
    the drift table), the report's URI and the run's page in the KFP UI (when kfp_ui_host is given).
    The webhook URL is the environment variable DRIFT_WEBHOOK_URL (the Secret drift-webhook, key
    url); without it nothing is sent and the log says so. A failing webhook is a warning in the
    log: it never fails the run.
    """
    from components.common.notify import drift_notice, flagged_windows, send_drift_notice

    values = dict(getattr(metrics, "metadata", {}) or {})
    message = drift_notice(flagged_windows(drift_table.path), report.uri, kfp_ui_host, run_id, values)
    send_drift_notice(message)


def status_gate(status: str) -> str:
    """Drift's ``status`` as a single output, the value ``dsl.If`` tests (the reason: :func:`alert_gate`)."""
    print(f"drift status: {status}")
    return status


def insufficient_data(
    report: Input[HTML], metrics: Input[Metrics], batch_uri: str, batch_date: str, notice: Output[Markdown]
):
    """Runs only when drift's status is insufficient-data: a notice saying the run gave no verdict, and why.

    No window of the batch had ``min_window_rows`` usable rows, so nothing was tested and the alert
    cannot fire: a quiet run here is not a clean one. No webhook message is sent for it.
    """
    import json
    import os

    values = dict(getattr(metrics, "metadata", {}) or {})
    lines = [
        "# Insufficient data: no drift verdict",
        "",
        f"No time window of the batch of {batch_date} (`{batch_uri}`) had enough usable rows to be "
        "tested (drift's `min_window_rows`): drift tested nothing, so this run can neither raise nor "
        "clear the alert. Check that the batch holds this day's predictions (ingest's `summary` and "
        "`rejected` say what was read and kept aside), or lower `min_window_rows`.",
        "",
        f"Report: `{report.uri}`",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(values.items())),
        "",
    ]
    tmp = notice.path + ".tmp"
    os.makedirs(os.path.dirname(notice.path) or ".", exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, notice.path)
    print(
        f"WARNING: insufficient data: no window of the batch of {batch_date} ({batch_uri}) could be "
        f"tested; no drift verdict. Metrics {json.dumps(values, sort_keys=True)}"
    )


HELPER_STAGES: dict[Callable[..., Any], str] = {
    resolve_batch: "ingest",  # it feeds ingest
    shard_indices: "prepare",
    alert_gate: "drift",
    drift_alert: "drift",
    notify_drift: "drift",
    status_gate: "drift",
    insufficient_data: "drift",
}
"""Each helper's body and the stage whose image it runs in."""


def helper_component(body: Callable[..., Any], images: ImageSet | None = None) -> PythonComponent:
    """The KFP component of a helper of :data:`HELPER_STAGES`, in its stage's image."""
    return build_component(body, HELPER_STAGES[body], images)
