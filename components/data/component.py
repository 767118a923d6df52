"""KFP wrapper of the data stage: declares inputs and outputs, calls :func:`build_dataset`."""

# No `from __future__ import annotations`: kfp reads the real annotation objects of the body.

from kfp.dsl import Artifact, Dataset, Markdown, Output

from components.common.config import component_doc, output_names
from components.common.images import ImageSet, build_component
from components.data.config import DataConfig

SUMMARY = (
    "Build the data set: Fashion-MNIST training / validation / production splits, with a window of "
    "degraded (rotated, blurred) production images."
)
CONFIG = DataConfig
ARTIFACTS = ("dataset", "data_card", "sample_grid")
ARTIFACT_HELP = {
    "dataset": "the splits training, validation and production (a DatasetDict folder, save_to_disk)",
    "data_card": "the data card: rows per split, class, day and degradation, with the sample grid",
    "sample_grid": "PNG grid of clean and degraded production samples",
}


def data(
    dataset: Output[Dataset],
    data_card: Output[Markdown],
    sample_grid: Output[Artifact],
    source: str = "/usr/share/datasets/fashion-mnist",
    training_size: int = 30000,
    validation_size: int = 3000,
    production_size: int = 6000,
    validation_part: str = "test",
    production_days: int = 30,
    production_end: str = "2026-11-01T00:00:00Z",
    window_days: int = 7,
    window_start_day: int = -1,
    degraded_share: float = 0.5,
    rotation_min: float = 20.0,
    rotation_max: float = 60.0,
    blur_min: float = 1.0,
    blur_max: float = 2.0,
    seed: int = 0,
    hub_image_column: str = "image",
    hub_label_column: str = "label",
    hub_train_split: str = "train",
    hub_test_split: str = "test",
):
    """Build the data set (window_start_day=-1: the window is centred in production)."""
    from components.common.config import config_from
    from components.data.build import build_dataset
    from components.data.config import DataConfig

    config = config_from(DataConfig, locals())
    summary = build_dataset(config, dataset.path, data_card.path, sample_grid.path, overwrite=True)
    dataset.metadata.update({"rows": summary.rows, "degraded": summary.degraded, "seed": seed})
    sample_grid.metadata["mime_type"] = "image/png"


def component(images: ImageSet | None = None):
    """The data stage as a lightweight KFP component (base image: the data stage's image)."""
    return build_component(
        data, "data", images, doc=component_doc(SUMMARY, DataConfig, ARTIFACT_HELP, output_names(data))
    )
