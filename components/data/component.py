"""KFP wrapper of the data stage: declares inputs and outputs, calls :func:`build_dataset`."""

# No `from __future__ import annotations`: kfp reads the real annotation objects of the body.

from kfp.dsl import Artifact, Dataset, Markdown, Output

from components.common.images import ImageSet, build_component


def data(
    dataset: Output[Dataset],
    data_card: Output[Markdown],
    sample_grid: Output[Artifact],
    source: str = "/usr/share/datasets/fashion-mnist",
    training_size: int = 30000,
    validation_size: int = 3000,
    production_size: int = 6000,
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
    from components.data.build import DataConfig, build_dataset

    config = DataConfig(
        source=source,
        training_size=training_size,
        validation_size=validation_size,
        production_size=production_size,
        production_days=production_days,
        production_end=production_end,
        window_days=window_days,
        window_start_day=None if window_start_day == -1 else window_start_day,
        degraded_share=degraded_share,
        rotation_min=rotation_min,
        rotation_max=rotation_max,
        blur_min=blur_min,
        blur_max=blur_max,
        seed=seed,
        hub_image_column=hub_image_column,
        hub_label_column=hub_label_column,
        hub_train_split=hub_train_split,
        hub_test_split=hub_test_split,
    )
    summary = build_dataset(config, dataset.path, data_card.path, sample_grid.path, overwrite=True)
    dataset.metadata.update({"rows": summary.rows, "degraded": summary.degraded, "seed": seed})
    sample_grid.metadata["mime_type"] = "image/png"


def component(images: ImageSet | None = None):
    """The data stage as a lightweight KFP component (base image: the data stage's image)."""
    return build_component(data, "data", images)
