"""The evaluate stage's parameters: :class:`EvaluateConfig`, the single source of its command line and component.

Light on purpose (stdlib and ``components.common`` only): the pipelines read its defaults and
``--help`` stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.common import schema
from components.common.config import device_param, param, precision_param, threads_param

DECISIONS = ("promote", "candidate")  # the gate's outcome: promote the candidate, or keep it a candidate
PROMOTE, CANDIDATE = DECISIONS
AUTO = "auto"


def parse_eval_splits(splits: str) -> list[str]:
    """Split names from "validation,production"; a ValueError for unknown, repeated or no names."""
    names = [s.strip() for s in splits.split(",") if s.strip()]
    allowed = (schema.VALIDATION, schema.PRODUCTION)
    if not names:
        raise ValueError(f"eval_splits {splits!r}: name at least one of {', '.join(allowed)}")
    unknown = [s for s in names if s not in allowed]
    if unknown:
        raise ValueError(
            f"eval_splits: unknown or not evaluable {', '.join(unknown)}; expected names from "
            f"{', '.join(allowed)} (the training split is what the model learnt from)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"eval_splits {splits!r}: a split is named twice")
    return names


def parse_time_shift(value: str) -> float | None:
    """``drift_time_shift`` as seconds, or None for ``auto``; a ValueError for anything else."""
    if value.strip().lower() == AUTO:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise ValueError(
            f"drift_time_shift {value!r}: give 'auto' or a number of seconds (e.g. the prepare stage's "
            "time_shift_seconds from its manifest.json, or 0 when the drift table is in the data set's clock)"
        )
    return seconds


@dataclass(frozen=True)
class EvaluateConfig:
    """What the evaluate stage compares, how it computes intervals and calibration, and the gate's rule."""

    registry_uri: str = param(
        "",
        "Model registry (local folder, gs://, s3:// or minio:// URI) holding the production model to "
        "compare with; '' = no registry: there is no production model and the candidate is promoted.",
    )
    registered_model: str = param(
        "fashion-mnist-classifier",
        "The model's name in the registry (its production version is the one compared with).",
    )
    drift_uri: str = param(
        "",
        "The drift stage's drift table or the drift history (Parquet; local path, gs://, s3:// or "
        "minio://), or a local folder holding one: production rows inside its flagged windows form the "
        "'drifted' slice. '' = no drift slices.",
    )
    drift_time_shift: str = param(
        AUTO,
        "Seconds to add to the data set's production timestamps to reach the drift table's clock (the "
        "prepare stage shifts them: its manifest's time_shift_seconds), or 'auto': the shift whose row "
        "counts per window best match the drift table's n_rows.",
    )
    eval_splits: str = param(
        f"{schema.VALIDATION},{schema.PRODUCTION}",
        "Comma-separated splits of the data set to evaluate on (labelled rows only; production rows "
        f"without a label yet ({schema.NO_LABEL}) are counted and left out).",
    )
    eval_recent_days: int = param(
        0,
        "Production rows: only the most recent N days (before the newest production timestamp); "
        "0 = every labelled production row.",
    )
    gate_margin: float = param(
        0.01,
        "Accuracy the candidate may lose against production (absolute, e.g. 0.01 = one point) overall "
        "and on every large slice before the gate keeps it a candidate.",
    )
    gate_min_slice_rows: int = param(
        200,
        "A slice (class, degradation, image-feature bin, split, drifted) with at least this many rows "
        "is checked by the gate; smaller ones are reported only.",
    )
    require_better_on_drift: bool = param(
        True,
        "When drift slices exist: promote only if the candidate is more accurate than production on "
        "the drifted rows.",
    )
    gate_use_ci: bool = param(
        False,
        "Judge by the paired confidence interval of the difference instead of its estimate: 'not "
        "worse' needs the interval's lower bound >= -gate_margin, 'better on drift' a lower bound > 0.",
    )
    confidence_level: float = param(
        0.95,
        "Level of every confidence interval (Wilson for an accuracy, paired bootstrap for a difference).",
    )
    calibration_bins: int = param(
        15, "Equal-width confidence bins of the expected calibration error and the reliability diagram."
    )
    feature_bins: int = param(
        3, "Quantile bins of brightness, contrast and sharpness (edges from the validation rows)."
    )
    bootstrap_resamples: int = param(
        2000, "Paired bootstrap resamples of each slice's difference candidate - production."
    )
    seed: int = param(0, "Random seed of the bootstrap.")
    eval_batch_size: int = param(256, "Images per forward pass.")
    allow_cpu: bool = param(
        False,
        "Let a model trained with profile=cluster run on CPU when CUDA is unavailable (False: fail at "
        "once, naming the NVIDIA driver the images need).",
    )
    threads: int = threads_param()
    device: str = device_param()
    precision: str = precision_param()

    def __post_init__(self) -> None:
        parse_eval_splits(self.eval_splits)
        parse_time_shift(self.drift_time_shift)
        if self.registry_uri and not self.registered_model.strip():
            raise ValueError("registered_model is empty: give the model's name in the registry")
        if self.eval_recent_days < 0:
            raise ValueError(f"eval_recent_days {self.eval_recent_days}: give 0 (all) or a number of days")
        if not 0 <= self.gate_margin < 1:
            raise ValueError(
                f"gate_margin {self.gate_margin}: give an accuracy difference in [0, 1), e.g. 0.01"
            )
        if self.gate_min_slice_rows < 1:
            raise ValueError(f"gate_min_slice_rows {self.gate_min_slice_rows}: give at least 1")
        if not 0.5 <= self.confidence_level < 1:
            raise ValueError(f"confidence_level {self.confidence_level}: give a level in [0.5, 1), e.g. 0.95")
        if not 2 <= self.calibration_bins <= 100:
            raise ValueError(f"calibration_bins {self.calibration_bins}: give 2 to 100")
        if not 2 <= self.feature_bins <= 10:
            raise ValueError(f"feature_bins {self.feature_bins}: give 2 to 10")
        if not 100 <= self.bootstrap_resamples <= 100_000:
            raise ValueError(f"bootstrap_resamples {self.bootstrap_resamples}: give 100 to 100000")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size {self.eval_batch_size}: expected at least 1")
        if self.threads < 0:
            raise ValueError(f"threads {self.threads}: give 0 (automatic) or a positive count")

    @property
    def split_names(self) -> list[str]:
        """The splits to evaluate on, in order."""
        return parse_eval_splits(self.eval_splits)

    @property
    def time_shift(self) -> float | None:
        """``drift_time_shift`` in seconds, None for auto."""
        return parse_time_shift(self.drift_time_shift)
