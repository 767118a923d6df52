"""KFP wrapper of the arize stage: prepared folder -> rows logged to Arize, Markdown summary."""

from kfp.dsl import Dataset, Input, Markdown, Output

from components.common.images import ImageSet, build_component


def arize(
    prepared: Input[Dataset],
    summary: Output[Markdown],
    model_name: str = "fashion-mnist-classifier",
    model_version: str = "",
    require_credentials: bool = False,
    chunk_rows: int = 2000,
    ledger_uri: str = "",
):
    """Validate the prepared tables with the Arize SDK and log them, in chunks.

    Credentials come only from the environment (``ARIZE_API_KEY``, ``ARIZE_SPACE_ID``, filled
    from a Kubernetes Secret). Without them the tables are validated and the summary says that
    nothing was sent, unless ``require_credentials``. ``model_version`` ``""`` = the prepared
    manifest's. ``ledger_uri``: where the record of sent chunks lives (``""`` = next to the
    summary; a ``gs://``/``s3://`` URI keeps it across pipeline runs).
    """
    from components.arize.log import log_prepared

    result = log_prepared(
        prepared_dir=prepared.path,
        summary_path=summary.path,
        model_name=model_name,
        model_version=model_version,
        require_credentials=require_credentials,
        chunk_rows=chunk_rows,
        ledger_uri=ledger_uri,
    )
    summary.metadata["sent"] = result.sent
    for env, report in result.environments.items():
        summary.metadata[f"rows_sent_{env}"] = report.rows_sent


def component(images: ImageSet | None = None):
    """The arize component, its image taken from ``images``."""
    return build_component(arize, "arize", images)
