"""KFP wrapper of the prepare stage: embed outputs (a list, from ``dsl.Collected``) -> prepared folder."""

from kfp.dsl import Dataset, Input, Markdown, Output

from components.common.config import component_doc, output_names
from components.common.images import ImageSet, build_component
from components.prepare.config import PrepareConfig

CONFIG = PrepareConfig
ARTIFACTS = ("embeddings", "dataset", "prepared", "summary")
SUMMARY = (
    "Build one Arize-ready Parquet table per environment from the embed outputs, with its images in one "
    "Parquet file per environment (a few objects in all)."
)
ARTIFACT_HELP = {
    "embeddings": "the embed output folders (one per shard), gathered with dsl.Collected",
    "dataset": "the data stage's DatasetDict folder, where the images are",
    "prepared": "one Parquet table and one images file per environment, rejected rows, manifest.json",
    "summary": "rows per environment, rows kept aside and why, the time shift",
}


def prepare(
    embeddings: Input[list[Dataset]],
    dataset: Input[Dataset],
    prepared: Output[Dataset],
    summary: Output[Markdown],
    image_store: str = "",
    now: str = "",
    links: str = "",
    link_expiry: int = 0,
    link_base: str = "",
):
    """The prepare stage's body; component() gives it the docstring built from PrepareConfig."""
    from pathlib import Path

    from components.common.config import config_from
    from components.prepare.config import PrepareConfig
    from components.prepare.prepare import prepare_records

    result = prepare_records(
        [e.path for e in embeddings],
        dataset.path,
        prepared.path,
        config_from(PrepareConfig, locals()),
    )
    prepared.metadata["model_version"] = result.model_version
    for env, rows in result.rows.items():
        prepared.metadata[f"rows_{env}"] = rows
    prepared.metadata["rejected"] = result.rejected
    Path(summary.path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary.path).write_text(result.summary_markdown())


def component(images: ImageSet | None = None):
    """The prepare component, its image taken from ``images``, its docstring from :class:`PrepareConfig`."""
    return build_component(
        prepare, "prepare", images, doc=component_doc(SUMMARY, CONFIG, ARTIFACT_HELP, output_names(prepare))
    )
