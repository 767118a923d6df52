"""KFP wrapper of the prepare stage: embed outputs (a list, from ``dsl.Collected``) -> prepared folder."""

from kfp.dsl import Dataset, Input, Markdown, Output

from components.common.images import ImageSet, build_component


def prepare(
    embeddings: Input[list[Dataset]],
    dataset: Input[Dataset],
    prepared: Output[Dataset],
    summary: Output[Markdown],
    image_store: str = "",
    now: str = "",
):
    """Build one Arize-ready Parquet table per environment from the embed outputs.

    ``image_store``: where the PNG images go (``""`` = an ``images/`` folder inside
    ``prepared``; ``gs://``/``s3://`` prefix = object storage). ``now``: ISO-8601 time the
    newest production timestamp is shifted to (``""`` = current UTC time).
    """
    from pathlib import Path

    from components.prepare.prepare import prepare_records

    result = prepare_records(
        embed_dirs=[e.path for e in embeddings],
        dataset_dir=dataset.path,
        output_dir=prepared.path,
        image_store=image_store,
        now=now,
        image_link_base=prepared.uri.rstrip("/") + "/images" if not image_store else "",
    )
    prepared.metadata["model_version"] = result.model_version
    for env, rows in result.rows.items():
        prepared.metadata[f"rows_{env}"] = rows
    prepared.metadata["rejected"] = result.rejected
    Path(summary.path).parent.mkdir(parents=True, exist_ok=True)
    Path(summary.path).write_text(result.summary_markdown())


def component(images: ImageSet | None = None):
    """The prepare component, its image taken from ``images``."""
    return build_component(prepare, "prepare", images)
