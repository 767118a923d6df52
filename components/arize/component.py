"""KFP wrapper of the arize stage: prepared folder -> rows logged to Arize, Markdown summary."""

from kfp.dsl import Dataset, Input, Markdown, Output

from components.arize.actuals_config import ActualsConfig
from components.arize.config import ArizeConfig
from components.common.config import component_doc, output_names
from components.common.images import ImageSet, build_component

CONFIG = ArizeConfig
ARTIFACTS = ("prepared", "summary")
SUMMARY = """Validate the prepared tables with the Arize SDK and log them to Arize, in chunks.

Credentials come only from the environment (ARIZE_API_KEY, ARIZE_SPACE_ID, filled from a Kubernetes
Secret). Without them the tables are validated and the summary says that nothing was sent, unless
require_arize_credentials is set."""
ARTIFACT_HELP = {
    "prepared": "the prepare stage's output folder",
    "summary": "per environment: rows, chunks, rows sent, chunks already sent, uncertain chunks (in "
    "flight in an earlier run, not resent), retries, time",
}


def arize(
    prepared: Input[Dataset],
    summary: Output[Markdown],
    arize_model_name: str = "fashion-mnist-classifier",
    model_version: str = "",
    require_arize_credentials: bool = False,
    chunk_rows: int = 2000,
    ledger_uri: str = "",
    resend_uncertain: bool = False,
):
    """The arize stage's body; component() gives it the docstring built from ArizeConfig."""
    from components.arize.config import ArizeConfig
    from components.arize.log import log_prepared
    from components.common.config import config_from

    result = log_prepared(prepared.path, summary.path, config_from(ArizeConfig, locals()))
    summary.metadata["sent"] = result.sent
    summary.metadata["uncertain_chunks"] = len(result.uncertain)
    for env, report in result.environments.items():
        summary.metadata[f"rows_sent_{env}"] = report.rows_sent


def component(images: ImageSet | None = None):
    """The arize component, its image taken from ``images``, its docstring from :class:`ArizeConfig`."""
    return build_component(
        arize, "arize", images, doc=component_doc(SUMMARY, CONFIG, ARTIFACT_HELP, output_names(arize))
    )


# ---- the second entry point: late labels (actuals) -------------------------------------------------
ACTUALS_CONFIG = ActualsConfig
ACTUALS_ARTIFACTS = ("summary", "rejected")
ACTUALS_SUMMARY = """Log late labels to Arize as actuals of the predictions already sent, and update the accuracy
of the drift history's windows they belong to.

Labels of unknown prediction IDs, labels that are no class and duplicates are kept aside with their
reason, never sent; a ledger makes a rerun send nothing twice. Credentials come only from the
environment (ARIZE_API_KEY, ARIZE_SPACE_ID); without them the labels are recorded and the history
updated, and the summary says that nothing was sent."""
ACTUALS_ARTIFACT_HELP = {
    "summary": "labels read, new, kept aside by reason, sent, pending, uncertain chunks, and the history's "
    "windows updated (labelled rows, correct rows, accuracy before and after)",
    "rejected": "Parquet file of the label rows not sent: row, prediction_id, actual_label, reason",
}


def log_actuals(
    summary: Output[Markdown],
    rejected: Output[Dataset],
    labels_uri: str,
    prepared_uri: str,
    history_uri: str = "",
    arize_model_name: str = "fashion-mnist-classifier",
    model_version: str = "",
    require_arize_credentials: bool = False,
    actuals_chunk_rows: int = 10000,
    actuals_ledger_uri: str = "",
    resend_uncertain: bool = False,
):
    """The actuals entry point's body; component_actuals() gives it the docstring built from ActualsConfig."""
    from components.arize.actuals import log_actuals as run
    from components.arize.actuals_config import ActualsConfig
    from components.common.config import config_from

    result = run(summary.path, rejected.path, config_from(ActualsConfig, locals()))
    summary.metadata["sent"] = result.sent
    summary.metadata["rows_sent"] = result.rows_sent
    summary.metadata["new_labels"] = result.accepted
    summary.metadata["unknown_ids"] = result.unknown
    summary.metadata["duplicates"] = result.duplicates
    summary.metadata["uncertain_chunks"] = len(result.uncertain)
    summary.metadata["windows_updated"] = len(result.history.changed) if result.history else 0
    rejected.metadata["rows"] = sum(result.rejected.values())
    for reason, n in result.rejected.items():
        rejected.metadata[reason] = n


def component_actuals(images: ImageSet | None = None):
    """The actuals component (image of the arize stage), its docstring from :class:`ActualsConfig`."""
    return build_component(
        log_actuals,
        "arize",
        images,
        doc=component_doc(ACTUALS_SUMMARY, ACTUALS_CONFIG, ACTUALS_ARTIFACT_HELP, output_names(log_actuals)),
    )
