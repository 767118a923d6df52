"""KFP wrapper of the embed stage: declares inputs and outputs, calls ``embed_dataset``."""

from kfp.dsl import Dataset, Input, Markdown, Model, Output

from components.common.images import ImageSet


def embed(
    dataset: Input[Dataset],
    model: Input[Model],
    embeddings: Output[Dataset],
    summary: Output[Markdown],
    splits: str = "training,validation,production",
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 256,
):
    """Predictions, scores, probabilities, embeddings and image features for each row of ``splits``.

    ``embeddings`` is a folder: ``embeddings.parquet`` and ``failures.parquet``.
    """
    from components.embed.embed import embed_dataset, summary_markdown

    result = embed_dataset(
        dataset.path,
        model.path,
        embeddings.path,
        splits=splits,
        shard_index=shard_index,
        num_shards=num_shards,
        batch_size=batch_size,
    )
    embeddings.metadata["model_version"] = result.model_version
    embeddings.metadata["rows"] = result.rows
    embeddings.metadata["failures"] = len(result.failures)
    embeddings.metadata["splits"] = splits
    with open(summary.path, "w") as f:
        f.write(summary_markdown(result))


def component(images: ImageSet | None = None):
    """The embed stage as a KFP lightweight component (base image: the embed stage's image)."""
    from components.common.images import build_component

    return build_component(embed, "embed", images)
