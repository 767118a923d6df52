"""The monitoring pipeline's retraining trigger: when an alert is confirmed, and the training run it starts.

An alert is **confirmed** when all of these hold (:func:`confirmation`):

1. this run's drift alert fired (the trigger runs inside the alert branch only);
2. the batch holds at least ``retrain_min_labelled`` labelled rows (ingest's ``labelled`` count):
   without labels a retraining learns nothing new about production;
3. the alert held on each of the last ``retrain_confirm_runs`` runs recorded in the drift history
   at ``history_uri`` (this one included; a run is one ``recorded_at`` value; it held when it
   flagged a window). With ``retrain_confirm_runs`` <= 1 this run's alert is enough; above 1 the
   history is needed, and without ``history_uri`` the alert is never confirmed.

The training run (:func:`training_arguments`, :func:`start_training_run`) is a run of the training
pipeline registered in KFP under its name (the newest version, as ``python pipeline.py submit
--upload`` leaves it), with the batch's labelled rows as extra training rows
(``extra_training_uri`` = the ingested batch), ``augment`` from the drift explanation (``auto``:
:func:`components.common.explanation.resolve_augment` on this run's drift table) and the registry, so
the release gate still decides whether the new model replaces production.

``drift_uri`` is NOT passed on: the training run's evaluate matches a drift table's windows to
the rows of its own data set by time (``drift_time_shift=auto`` picks the best-matching shift
whatever the mismatch), and this run's windows hold the batch's rows, not the training data
set's: the drifted slice would be rows chosen by chance. The gate's other rules (overall, every
large slice, degradation kinds where known) decide; pass ``drift_uri`` in ``retrain_params`` when
the training data set's production split is the monitored data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.common.config import json_object

DEFAULT_KFP_HOST = "http://ml-pipeline.kubeflow:8888"  # the KFP API inside the cluster
DEFAULT_EXPERIMENT = "fashion-drift-retraining"


@dataclass(frozen=True)
class Confirmation:
    """Whether this run's alert is confirmed, and why (one sentence)."""

    confirmed: bool
    reason: str


def alert_runs(history: Any) -> list[bool]:
    """Per run recorded in a drift history (newest first): whether it flagged a window."""
    if history is None or len(history) == 0 or "recorded_at" not in history or "flagged" not in history:
        return []
    flagged = history["flagged"].fillna(False).astype(bool)
    per_run = flagged.groupby(history["recorded_at"]).any().sort_index(ascending=False)
    return [bool(v) for v in per_run.tolist()]


def confirmation(
    alert: bool, labelled_rows: int, min_labelled: int, confirm_runs: int, history: Any
) -> Confirmation:
    """Whether to retrain (the rule in the module's docstring); ``history``: the drift history or None."""
    if not alert:
        return Confirmation(False, "no drift alert in this run")
    if labelled_rows < min_labelled:
        return Confirmation(
            False,
            f"the batch holds {labelled_rows} labelled row(s), fewer than retrain_min_labelled="
            f"{min_labelled}: nothing new to learn from yet (labels arrive with the actuals pipeline)",
        )
    if confirm_runs <= 1:
        return Confirmation(True, f"this run's alert, {labelled_rows} labelled rows")
    if history is None:
        return Confirmation(
            False,
            f"retrain_confirm_runs={confirm_runs} needs the drift history (history_uri) to see the "
            "earlier runs; none was given or it is empty",
        )
    runs = alert_runs(history)[:confirm_runs]
    if len(runs) < confirm_runs or not all(runs):
        shown = ", ".join("alert" if r else "no alert" for r in runs) or "none"
        return Confirmation(
            False,
            f"the alert did not hold on the last {confirm_runs} runs of the drift history (newest "
            f"first: {shown})",
        )
    return Confirmation(
        True, f"the alert held on the last {confirm_runs} runs; {labelled_rows} labelled rows"
    )


def training_arguments(
    batch_uri: str,
    augmentations: tuple[str, ...],
    registry_uri: str,
    registered_model: str,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The training run's parameters: ``extra`` (e.g. source, profile) and the retraining's own.

    The retraining's own win over ``extra``: the batch's rows join training, the augmentations
    chosen, and the registry (the gate decides).
    """
    args = dict(extra or {})
    args.update(
        {
            "extra_training_uri": batch_uri,
            "augment": ",".join(augmentations),
            "registry_uri": registry_uri,
            "registered_model": registered_model,
        }
    )
    return args


def parse_params(text: str) -> dict[str, Any]:
    """``retrain_params``: a JSON object of further training-pipeline parameters (``""`` = none)."""
    return json_object(text, "retrain_params", '{"source": "gs://bucket/data"}')


def start_training_run(
    client: Any, pipeline_name: str, arguments: Mapping[str, Any], experiment: str, run_name: str
) -> str:
    """Create a run of the newest version of the pipeline ``pipeline_name`` on ``client`` (a kfp.Client).

    Returns the run's id. A pipeline not registered there is a clear error saying how to upload it.
    """
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        raise LookupError(
            f"no pipeline named {pipeline_name!r} in KFP: upload the training pipeline first "
            "(python pipeline.py submit --upload, or the KFP UI), or set retrain_pipeline"
        )
    versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
    found = list(getattr(versions, "pipeline_versions", None) or [])
    if not found:
        raise LookupError(f"pipeline {pipeline_name!r} ({pipeline_id}) has no version in KFP")
    experiment_id = client.create_experiment(name=experiment).experiment_id
    run = client.run_pipeline(
        experiment_id=experiment_id,
        job_name=run_name,
        pipeline_id=pipeline_id,
        version_id=found[0].pipeline_version_id,
        params=dict(arguments),
    )
    return str(run.run_id)
