"""The drift stage's settings: one typed Config, the single source of every drift parameter.

Light on purpose (stdlib, ``components.common`` and the drift stage's light modules: no pandas,
scipy, sklearn, umap or plotly at import time), so compiling a pipeline and ``--help`` stay fast.
The command line, the KFP component's signature and docstring, and the pipelines' defaults are all
derived from :class:`DriftConfig` (see ``components/common/config.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from components.common import schema
from components.common.config import param
from components.common.storage import REMOTE_SCHEMES
from components.drift.detectors import (
    ALERT_RULES,
    DETECTOR_NAMES,
    SIDAK,
    check_alert_rule,
    check_calibration,
    check_detector_names,
)
from components.drift.view import PROJECTIONS
from components.drift.windows import WINDOWS

# 'production': the reference period's production rows are the baseline (reference_days / reference_dates)
BASELINE_ENVIRONMENTS = (schema.TRAINING, schema.VALIDATION, schema.PRODUCTION)
HISTORY_SCHEMES = REMOTE_SCHEMES  # where the drift history may live, besides a local path
# Settings that are sample sizes: each must be at least 2.
_SIZES = ("min_window_rows", "max_window_rows", "reference_size", "calibration_size", "umap_sample")


@dataclass(frozen=True)
class DriftConfig:
    """What the drift stage compares, how it calibrates its thresholds, and how it draws the view."""

    baseline_environment: str = param(
        schema.TRAINING,
        "Split of the baseline folder that production is compared with: 'training', 'validation', or "
        "'production' (the rows of the reference period, see reference_days / reference_dates; they are "
        "split into a reference and a disjoint calibration sample).",
    )
    drift_window: str = param(
        "daily",
        "Length of the time windows production is cut into (UTC): 'hourly', 'daily' or 'weekly' "
        "(weeks start on Monday).",
    )
    false_alarm_rate: float = param(
        0.01,
        "Chance of a false alert: with alert_rule 'sidak' or 'fdr', that a run whose windows are all clean "
        "raises the alert (split over the windows the run tests); with 'per_window', that one clean window "
        "is flagged. Between 0 and 0.5, e.g. 0.01 = 1 clean run in 100.",
    )
    alert_rule: str = param(
        SIDAK,
        f"How a run's windows share false_alarm_rate, one of {', '.join(ALERT_RULES)}: 'sidak' tests each "
        "of the run's m windows at 1-(1-rate)^(1/m) (no clean window of the run flagged, with probability "
        "1-rate); 'fdr' flags by Benjamini-Hochberg (same bound on an all-clean run, more flags when many "
        "windows drift); 'per_window' tests every window at the rate (a 30-window run of clean data alerts "
        "with up to 1-(1-rate)^30).",
    )
    reference_days: int = param(
        0,
        "Known-good reference period: the first N UTC days of the baseline folder's production rows "
        "(0: none). Its rows calibrate the thresholds (production-source clean data, so the harmless gap "
        "between training data and production is not flagged); its own windows are not tested.",
    )
    reference_dates: str = param(
        "",
        "Known-good reference period as START/END dates (UTC, END excluded), e.g. 2026-10-30/2026-11-06; "
        "used instead of reference_days. Empty: reference_days decides.",
    )
    drift_resamples: int = param(
        1000,
        "Clean windows drawn per window size to calibrate the thresholds; at least "
        "max(100, 5 / false_alarm_rate), e.g. 500 at 0.01, and at most 20000. The stage draws more (up to "
        "20000) when the per-window level of the alert rule needs them. More: finer p-values, slower.",
    )
    min_window_rows: int = param(
        20,
        "Windows with fewer production rows are marked too_few_rows and not tested (rows, at least 2).",
    )
    max_window_rows: int = param(
        1000,
        "The detectors run on a uniform sample of at most this many rows per window (rows, at least "
        "min_window_rows); the table's centroid_distance always uses every row.",
    )
    reference_size: int = param(
        2000, "Baseline rows sampled as the reference the detectors compare with (rows, at least 2)."
    )
    calibration_size: int = param(
        3000,
        "Clean rows sampled to calibrate the thresholds: rows of the reference period when one is given, "
        "else validation rows, or baseline rows held out from the reference when there are none (rows, "
        "at least 2).",
    )
    projection: str = param("umap", "How the embedding view is drawn: 'umap', or 'pca' for a quick look.")
    umap_sample: int = param(
        3000,
        "Points in the embedding view: half baseline, half production, the same share from every "
        "window (points, at least 2).",
    )
    umap_epochs: int = param(200, "UMAP training epochs of the embedding view (more: slower, steadier).")
    umap_window: str = param(
        "",
        "Start of the one window the embedding view shows, e.g. 2026-11-20 (add a time for hourly "
        "windows); empty: the whole range.",
    )
    positive_class: str = param(
        schema.CLASS_NAMES[0],
        "Class taken as positive in the view's confusion colouring (TP, FP, FN, TN): a Fashion-MNIST "
        "class name such as 'T-shirt/top' or 'Ankle boot'.",
    )
    min_cluster_size: int = param(
        15, "Smallest group of points HDBSCAN reports as a cluster in the embedding view (points)."
    )
    thumbnails: bool = param(
        True, "Show each point's image (read from its image link) when hovering over the embedding view."
    )
    detectors: str = param(
        ",".join(DETECTOR_NAMES),
        f"Comma-separated detectors to run, any of {', '.join(DETECTOR_NAMES)} (all by default).",
    )
    seed: int = param(
        0,
        "Random seed of the samples, the calibration resamples and the projection (same seed, same result).",
    )
    history_uri: str = param(
        "",
        "One Parquet file that keeps every run's windows, e.g. gs://bucket/monitoring/drift_history.parquet "
        "(also s3://, minio:// or a local path): each run replaces its own windows there and the report "
        "shows the trend over all of them; empty: no history.",
    )
    image_store: str = param(
        "",
        "Where the report may read thumbnails from besides the prepared and baseline folders: the "
        "image_store given to prepare, e.g. gs://bucket/images (also s3://, minio:// or a local folder); "
        "empty: the folders and the image store their manifest.json names. Links elsewhere are not read.",
    )

    @property
    def has_reference_period(self) -> bool:
        """Whether a known-good reference period is set (``reference_days`` or ``reference_dates``)."""
        return bool(self.reference_dates) or self.reference_days > 0

    @property
    def detector_names(self) -> list[str]:
        """The ``detectors`` setting as a list of names."""
        return [d.strip() for d in self.detectors.split(",") if d.strip()]

    def __post_init__(self) -> None:
        """Check every setting; a ValueError names the setting and what it accepts."""
        check_detector_names(self.detector_names)
        if self.baseline_environment not in BASELINE_ENVIRONMENTS:
            raise ValueError(
                f"baseline_environment={self.baseline_environment!r}: expected one of "
                f"{', '.join(BASELINE_ENVIRONMENTS)}"
            )
        if self.drift_window not in WINDOWS:
            raise ValueError(f"drift_window={self.drift_window!r}: expected one of {', '.join(WINDOWS)}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection={self.projection!r}: expected one of {', '.join(PROJECTIONS)}")
        if self.positive_class not in schema.CLASS_NAMES:
            raise ValueError(
                f"positive_class={self.positive_class!r}: expected one of {', '.join(schema.CLASS_NAMES)}"
            )
        check_calibration(self.false_alarm_rate, self.drift_resamples, resamples_name="drift_resamples")
        check_alert_rule(self.alert_rule)
        if self.reference_days < 0:
            raise ValueError(f"reference_days={self.reference_days}: expected 0 (none) or a number of days")
        reference_period_bounds(self.reference_dates)
        if self.baseline_environment == schema.PRODUCTION and not self.has_reference_period:
            raise ValueError(
                "baseline_environment='production' compares with a known-good reference period: give "
                "reference_days (e.g. 7) or reference_dates (e.g. 2026-10-30/2026-11-06)"
            )
        for name in _SIZES:
            if getattr(self, name) < 2:
                raise ValueError(f"{name}={getattr(self, name)}: expected at least 2")
        if self.max_window_rows < self.min_window_rows:
            raise ValueError(
                f"max_window_rows={self.max_window_rows} is below min_window_rows={self.min_window_rows}"
            )
        check_history_uri(self.history_uri)
        check_image_store(self.image_store)
        if self.umap_window:
            import pandas as pd  # only here: importing this module stays light

            try:
                pd.Timestamp(self.umap_window)
            except ValueError as err:
                raise ValueError(
                    f"umap_window={self.umap_window!r}: expected a date such as 2026-11-20"
                ) from err


def reference_period_bounds(dates: str) -> tuple[str, str] | None:
    """``reference_dates`` as (START, END) ISO strings (None when empty); a ValueError naming the setting."""
    if not dates:
        return None
    example = "e.g. 2026-10-30/2026-11-06 (UTC, END excluded)"
    parts = dates.split("/")
    if len(parts) != 2:
        raise ValueError(f"reference_dates={dates!r}: expected START/END, {example}")
    import pandas as pd  # only here: importing this module stays light

    try:
        start, end = (pd.Timestamp(p.strip()) for p in parts)
    except ValueError as err:
        raise ValueError(f"reference_dates={dates!r}: expected START/END dates, {example}") from err
    if not start < end:
        raise ValueError(f"reference_dates={dates!r}: START must be before END, {example}")
    return parts[0].strip(), parts[1].strip()


def check_history_uri(uri: str) -> None:
    """A ValueError unless ``uri`` is empty, a local file path or a gs://, s3:// or minio:// object URI."""
    if not uri:
        return
    example = "e.g. gs://bucket/monitoring/drift_history.parquet"
    if "://" in uri and not uri.startswith(HISTORY_SCHEMES):
        raise ValueError(
            f"history_uri={uri!r}: expected a local path or a {', '.join(HISTORY_SCHEMES)} URI ({example})"
        )
    if uri.endswith("/") or uri.startswith(HISTORY_SCHEMES) and "/" not in uri.split("://", 1)[1].strip("/"):
        raise ValueError(f"history_uri={uri!r}: give the URI of one Parquet file, not a folder ({example})")


def check_image_store(store: str) -> None:
    """A ValueError unless ``store`` is empty, a local folder, a bucket prefix or a link prefix of one."""
    if store and "://" in store and not store.startswith((*REMOTE_SCHEMES, "http://", "https://")):
        raise ValueError(
            f"image_store={store!r}: expected a local folder or a {', '.join(REMOTE_SCHEMES)} prefix "
            "(e.g. gs://bucket/images), the image_store given to prepare"
        )
