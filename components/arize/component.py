"""KFP wrapper of the arize stage: prepared folder -> rows logged to Arize, Markdown summary."""

from kfp.dsl import Dataset, Input, Markdown, Output

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
