"""KFP wrapper of the drift stage: declares inputs and outputs, calls :func:`run_drift`."""

# No `from __future__ import annotations`: kfp reads the real annotation objects of the body.

from typing import NamedTuple

from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.common.config import component_doc, output_names
from components.common.images import ImageSet, build_component
from components.drift.config import DriftConfig

SUMMARY = (
    "Calibrated embedding drift per time window: compares production with a baseline, window by "
    "window, with thresholds calibrated on clean data; writes an HTML report with a UMAP view, "
    "metrics and a drift table, and returns `alert` (true when any window of this run drifted) for "
    "dsl.If and `status` (drift, no-drift, or insufficient-data when no window could be tested). "
    "With history_uri, it keeps every run's windows in one Parquet table and the report shows the "
    "trend over all of them."
)
CONFIG = DriftConfig
ARTIFACTS = ("prepared", "baseline", "report", "metrics", "drift_table")
ARTIFACT_HELP = {
    "prepared": "prepare-stage folder holding the production rows (production.parquet)",
    "baseline": "prepare-stage folder holding the baseline split (<baseline_environment>.parquet)",
    "report": "self-contained HTML report: drift chart, window table, UMAP view, clusters, settings",
    "metrics": "windows tested and flagged, max centroid distance, thresholds, row counts",
    "drift_table": "Parquet file, one row per window: rows, accuracy, every detector's score and verdict",
    "alert": "true when at least one window of this run drifted (the value dsl.If tests)",
    "status": "drift, no-drift, or insufficient-data when no window had enough rows to be tested "
    "(alert is then false: no verdict, not a clean bill)",
}


def drift(
    prepared: Input[Dataset],
    baseline: Input[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    drift_table: Output[Dataset],
    baseline_environment: str = "training",
    drift_window: str = "daily",
    false_alarm_rate: float = 0.01,
    drift_resamples: int = 1000,
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
    detectors: str = "centroid,cosine,mmd2,softmax_ks,confidence_drop,feature_ks",
    seed: int = 0,
    history_uri: str = "",
    image_store: str = "",
    alert_rule: str = "sidak",
    reference_days: int = 0,
    reference_dates: str = "",
) -> NamedTuple("Outputs", [("alert", bool), ("status", str)]):  # type: ignore[valid-type]  # the form KFP reads
    """Calibrated embedding drift per time window, UMAP view and HTML report; `alert` and `status` for dsl.If."""
    from components.common.config import config_from
    from components.drift.config import DriftConfig
    from components.drift.stage import run_drift

    config = config_from(DriftConfig, locals())
    # the artifacts' URIs: their images may be linked under them (an https link of a bucket object)
    roots = (prepared.uri, baseline.uri)
    result = run_drift(prepared.path, baseline.path, report.path, drift_table.path, config, image_roots=roots)
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    drift_table.metadata.update(
        {"windows": len(result.table), "flagged": int(result.table["flagged"].sum()), "status": result.status}
    )
    return (result.alert, result.status)


def component(images: ImageSet | None = None):
    """The drift stage as a lightweight KFP component (base image: the drift stage's image)."""
    return build_component(
        drift, "drift", images, doc=component_doc(SUMMARY, DriftConfig, ARTIFACT_HELP, output_names(drift))
    )
