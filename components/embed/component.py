"""KFP wrapper of the embed stage: declares inputs and outputs, calls ``embed_dataset``."""

# No `from __future__ import annotations`: kfp reads the real annotation objects of the body.

from kfp.dsl import Dataset, Input, Markdown, Model, Output

from components.common.config import component_doc, output_names
from components.common.images import ImageSet, build_component
from components.embed.config import EmbedConfig

SUMMARY = (
    "Predictions, scores, probabilities, embeddings (mean of the last hidden state) and image "
    "features for each row of the chosen splits (this shard of each)."
)
CONFIG = EmbedConfig
ARTIFACTS = ("dataset", "model", "embeddings", "summary")
ARTIFACT_HELP = {
    "dataset": "the data stage's folder",
    "model": "the train stage's model folder",
    "embeddings": "a folder: embeddings.parquet (one row per image) and failures.parquet (images that did not decode)",
    "summary": "rows per split, embedded and failed; the failures listed",
}


def embed(
    dataset: Input[Dataset],
    model: Input[Model],
    embeddings: Output[Dataset],
    summary: Output[Markdown],
    splits: str = "training,validation,production",
    shard_index: int = 0,
    num_shards: int = 1,
    embed_batch_size: int = 256,
    allow_cpu: bool = False,
):
    """Predictions, scores, probabilities, embeddings and image features for each row of ``splits``."""
    from components.common.config import config_from
    from components.embed.config import EmbedConfig
    from components.embed.embed import embed_dataset, summary_markdown

    result = embed_dataset(dataset.path, model.path, embeddings.path, config_from(EmbedConfig, locals()))
    embeddings.metadata["model_version"] = result.model_version
    embeddings.metadata["rows"] = result.rows
    embeddings.metadata["failures"] = len(result.failures)
    embeddings.metadata["splits"] = splits
    with open(summary.path, "w") as f:
        f.write(summary_markdown(result))


def component(images: ImageSet | None = None):
    """The embed stage as a lightweight KFP component (base image: the embed stage's image)."""
    return build_component(
        embed, "embed", images, doc=component_doc(SUMMARY, EmbedConfig, ARTIFACT_HELP, output_names(embed))
    )
