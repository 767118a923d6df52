"""KFP wrapper of the drift stage: declares inputs and outputs, calls :func:`run_drift`."""

# No `from __future__ import annotations`: kfp reads the real annotation objects of the body.

from typing import NamedTuple

from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.common.images import ImageSet, build_component


def drift(
    prepared: Input[Dataset],
    baseline: Input[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    drift_table: Output[Dataset],
    baseline_environment: str = "training",
    window: str = "daily",
    false_alarm_rate: float = 0.01,
    n_resamples: int = 1000,
    min_window_rows: int = 20,
    max_window_rows: int = 1000,
    reference_size: int = 2000,
    calibration_size: int = 3000,
    projection: str = "umap",
    umap_sample: int = 3000,
    umap_epochs: int = 200,
    umap_window: str = "",
    positive_class: str = "T-shirt/top",
    min_cluster_size: int = 15,
    thumbnails: bool = True,
    detectors: str = "centroid,cosine,mmd2,softmax_ks,confidence_drop",
    seed: int = 0,
) -> NamedTuple("Outputs", [("alert", bool)]):
    """Calibrated embedding drift per time window, UMAP view and HTML report; `alert` for dsl.If."""
    from components.drift.stage import DriftConfig, run_drift

    config = DriftConfig(
        baseline_environment=baseline_environment,
        window=window,
        false_alarm_rate=false_alarm_rate,
        n_resamples=n_resamples,
        min_window_rows=min_window_rows,
        max_window_rows=max_window_rows,
        reference_size=reference_size,
        calibration_size=calibration_size,
        projection=projection,
        umap_sample=umap_sample,
        umap_epochs=umap_epochs,
        umap_window=umap_window,
        positive_class=positive_class,
        min_cluster_size=min_cluster_size,
        thumbnails=thumbnails,
        detectors=detectors,
        seed=seed,
    )
    result = run_drift(prepared.path, baseline.path, report.path, drift_table.path, config)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    drift_table.metadata.update({"windows": len(result.table), "flagged": int(result.table["flagged"].sum())})
    return (result.alert,)


def component(images: ImageSet | None = None):
    """The drift stage as a lightweight KFP component (base image: the drift stage's image)."""
    return build_component(drift, "drift", images)
