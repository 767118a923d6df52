"""Small pipeline helpers that belong to no stage: the run's batch, the shard list, the alert and the status.

They are lightweight components like the stages (``build_component``): the batch's resolution runs
in the ingest image (it feeds ingest), the shard list in the prepare image, the gates and notices in
the drift image.
"""

from collections.abc import Callable
from typing import Any, List, NamedTuple  # noqa: UP035 - KFP reads these annotations

from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output
from kfp.dsl.python_component import PythonComponent

from components.common.images import ImageSet, build_component

ALERT_FILE_TITLE = "Embedding drift alert"
# drift's `status` when no window of the run could be tested (components.drift.stage.INSUFFICIENT_DATA;
# a test checks they agree: the pipelines do not import the drift stage's heavy modules).
INSUFFICIENT_DATA = "insufficient-data"
# evaluate's decision when the release gate passes (components.evaluate: "promote" or "candidate").
PROMOTE = "promote"


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


def register_model(
    model: Input[Model],
    registry_uri: str,
    registered_model: str,
    promote: bool,
    reason: str,
    metrics_json: str = "{}",
    run: str = "",
) -> str:
    """Records the trained model as a new version in the model registry; promotes it when ``promote``.

    ``registry_uri``: the registry's folder (local, gs://, s3://, minio://); ``registered_model``: the
    model's name there (the pipeline parameter of that name; ``model_name`` is train's Hub model).
    The version records the model artifact's URI (the weights are not copied),
    the training summary's metrics plus ``metrics_json`` (a JSON object, e.g. the evaluation's
    summary and the gate's verdict) under ``evaluation``, the data fingerprints, ``run`` and
    ``reason``. Returns the version (``v3``).
    """
    from components.common import registry
    from components.common.config import json_object

    extra = json_object(metrics_json, "metrics_json", '{"accuracy": 0.9}')
    metrics = {"training": registry.metrics_from_model_folder(model.path)}
    if extra:
        metrics["evaluation"] = extra
    reg = registry.open_registry(registry_uri, registered_model)
    version = reg.register(
        model.uri, metrics, registry.fingerprints_from_model_folder(model.path), reason, run=run
    )
    print(f"registered {model.uri} as {registered_model} {version.version} in {registry_uri}")
    if promote:
        version = reg.promote(version.version, reason)
        print(f"promoted {registered_model} {version.version} to production")
    return version.version


def resolve_model(model_uri: str, registry_uri: str, model: Output[Model]):
    """The model the monitoring run uses: a folder URI as given, or ``<name>@production`` looked up in the registry.

    ``model_uri``: a trained Model folder (local, gs://, s3://, minio://), or a registry version
    (``<name>@production``, ``<name>@v3``, ``<name>@latest`` with ``registry_uri``, or
    ``<registry_uri>#<name>@production``). The folder is copied into this task's output, so every
    later task reads it as a plain artifact (embed checks its files, labels and weights). Never
    cached: the production pointer may move between runs.
    """
    import json
    import os

    from components.common import registry, storage

    uri = registry.resolve_model_uri(model_uri, registry_uri)
    copied = storage.download_prefix(uri, model.path)
    if not copied.files:
        raise ValueError(
            f"{uri}: no files there (resolved from {model_uri!r}); expected a trained Model folder"
        )
    model.metadata.update({"source_uri": uri, "model_spec": model_uri})
    try:  # the weights' version, when the folder is a train stage's (embed checks the folder itself)
        with open(os.path.join(model.path, "training_summary.json"), encoding="utf-8") as fh:
            model.metadata["model_version"] = str(json.load(fh)["model_version"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    print(f"model {model_uri!r} -> {uri}: {len(copied.files)} files, {copied.bytes / 1e6:.1f} MB copied")


def decision_gate(decision: str) -> str:
    """The release gate's decision (evaluate's ``decision``: promote or candidate) as the single output ``dsl.If`` tests.

    The reason: :func:`alert_gate` (kfp.local resolves a condition on a task's single output only).
    """
    print(f"release gate: {decision}")
    return decision


def start_retraining(
    drift_table: Input[Dataset],
    batch: Input[Dataset],
    history_uri: str,
    registry_uri: str,
    registered_model: str,
    retrain_augment: str,
    retrain_confirm_runs: int,
    retrain_min_labelled: int,
    retrain_params: str,
    retrain_pipeline: str,
    kfp_host: str,
    run_id: str,
) -> str:
    """Runs only when drift raised its alert and ``retrain`` is on: starts the training pipeline when the alert is confirmed.

    Confirmed (``components.common.retrain.confirmation``): the batch holds at least
    ``retrain_min_labelled`` labelled rows and the alert held on the last ``retrain_confirm_runs``
    runs of the drift history at ``history_uri``. Then a run of the pipeline ``retrain_pipeline``
    (its newest version in KFP at ``kfp_host``) is created with the batch as extra training rows,
    ``augment`` = ``retrain_augment`` (``auto``: from this run's drift explanation) and the
    registry, plus ``retrain_params`` (a JSON object); the release gate of that run decides. Returns the new run's id, or '' when the alert is not confirmed.
    """
    import warnings

    from components.common import retrain
    from components.common.explanation import resolve_augment
    from components.common.history import read_history

    extra = retrain.parse_params(retrain_params)
    labelled = int((getattr(batch, "metadata", None) or {}).get("labelled") or 0)
    history = read_history(history_uri) if history_uri and retrain_confirm_runs > 1 else None
    verdict = retrain.confirmation(True, labelled, retrain_min_labelled, retrain_confirm_runs, history)
    if not verdict.confirmed:
        print(f"retraining not started: alert not confirmed: {verdict.reason}")
        return ""
    augmentations, why = resolve_augment(retrain_augment, drift_table.path)
    arguments = retrain.training_arguments(batch.uri, augmentations, registry_uri, registered_model, extra)
    # kfp.Client is left out of kfp's namespace in a component's runtime (_KFP_RUNTIME=true), and
    # kfp.client's imports are circular from there unless kfp.dsl.component_factory is imported first.
    import kfp.dsl.component_factory  # noqa: F401
    from kfp.client import Client

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        client = Client(host=kfp_host)
    new_run = retrain.start_training_run(
        client, retrain_pipeline, arguments, retrain.DEFAULT_EXPERIMENT, f"retrain after {run_id}"
    )
    print(
        f"retraining started: run {new_run} of {retrain_pipeline} at {kfp_host} ({verdict.reason}); "
        f"augment {','.join(augmentations) or 'none'} ({'; '.join(why) or 'none asked'}); "
        f"extra training rows {batch.uri}"
    )
    return new_run


HELPER_STAGES: dict[Callable[..., Any], str] = {
    resolve_batch: "ingest",  # it feeds ingest
    shard_indices: "prepare",
    alert_gate: "drift",
    drift_alert: "drift",
    notify_drift: "drift",
    status_gate: "drift",
    insufficient_data: "drift",
    register_model: "ingest",  # the registry: storage clients, no heavy libraries
    resolve_model: "ingest",
    decision_gate: "drift",  # a gate like alert_gate: the slim drift image, not evaluate's GPU one
    start_retraining: "ingest",  # storage clients for the drift history; kfp for the KFP API
}
"""Each helper's body and the stage whose image it runs in."""


def helper_component(body: Callable[..., Any], images: ImageSet | None = None) -> PythonComponent:
    """The KFP component of a helper of :data:`HELPER_STAGES`, in its stage's image."""
    return build_component(body, HELPER_STAGES[body], images)
