"""KFP wrapper of the ingest stage: a production batch as it arrives -> the data-stage layout."""

# No `from __future__ import annotations`: kfp reads the real annotation objects of the body.

from kfp.dsl import Dataset, Markdown, Output

from components.common.config import component_doc, output_names
from components.common.images import ImageSet, build_component
from components.ingest.config import IngestConfig

CONFIG = IngestConfig
ARTIFACTS = ("batch", "rejected", "summary")
SUMMARY = (
    "Turn a production batch (a folder or bucket prefix of images, a CSV / JSON Lines / Parquet "
    "prediction log, or a data-stage folder) into the data-stage layout with a production split; "
    "rows that cannot be used are kept aside with their reason."
)
ARTIFACT_HELP = {
    "batch": "data-stage folder (DatasetDict, split 'production'): greyscale PNG images, label (-1 = none "
    "yet), prediction_ts, image_id, url, degradation 'unknown', served prediction and extra manifest columns",
    "rejected": "Parquet file, one row per row kept aside: row, location, reason, detail, record",
    "summary": "what the source was, where the times come from, rows written and kept aside by reason",
}


def ingest(
    batch: Output[Dataset],
    rejected: Output[Dataset],
    summary: Output[Markdown],
    source_uri: str,
    source_kind: str = "auto",
    location_column: str = "image_uri",
    timestamp_column: str = "timestamp",
    prediction_id_column: str = "prediction_id",
    label_column: str = "label",
    served_label_column: str = "prediction_label",
    served_score_column: str = "prediction_score",
    max_image_bytes: int = 20_000_000,
    max_image_side: int = 1024,
    time_fallback: str = "mtime",
):
    """The ingest stage's body; component() gives it the docstring built from IngestConfig."""
    from pathlib import Path

    from components.common.config import config_from
    from components.ingest.config import IngestConfig
    from components.ingest.ingest import ingest_batch

    result = ingest_batch(config_from(IngestConfig, locals()), batch.path, rejected.path)
    batch.metadata.update(result.metadata())
    rejected.metadata["rows"] = result.rows_rejected
    for reason, n in result.rejected.items():
        rejected.metadata[reason] = n
    Path(summary.path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary.path).write_text(result.summary_markdown())
    print(result.summary_line())


def component(images: ImageSet | None = None):
    """The ingest component, its image taken from ``images``, its docstring from :class:`IngestConfig`."""
    return build_component(
        ingest, "ingest", images, doc=component_doc(SUMMARY, CONFIG, ARTIFACT_HELP, output_names(ingest))
    )
