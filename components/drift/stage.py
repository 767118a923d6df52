"""The drift stage: prepared folders in; HTML report, metrics, drift table and alert out.

:func:`run_drift` runs the named steps in order, each a function of its own with a small result:

1. :func:`locate_files` and :func:`embedding_dim`: the Parquet files to read and their vector length;
2. :func:`load_baseline`: reference and calibration samples of the baseline, and its centroid;
3. :func:`calibrate`: the detectors fitted on the reference, calibrated on the clean sample;
4. :func:`scan_windows`: one chunked pass over production, window by window;
5. :func:`build_table`: one row per window (empty ones included) with every detector's verdict;
6. :func:`record_history`: this run's windows recorded in the drift history (``history_uri``),
   replacing the rows of the same windows; the whole history comes back for the report's trend;
7. :func:`summarise`: the metrics, the alert (about THIS run's windows only) and the summary in words;
8. :func:`build_view` and :func:`write_report`: the embedding view and the HTML report.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from components.common import schema
from components.common.files import MANIFEST_FILE, write_text_atomic, write_with_atomic
from components.common.history import HistoryUpdate, model_version_of, update_history, without_history
from components.drift import io as dio
from components.drift.config import DriftConfig, reference_period_bounds
from components.drift.detectors import (
    FDR,
    PER_WINDOW,
    SIDAK,
    CalibratedDrift,
    Sample,
    default_detectors,
    fdr_level,
    run_false_alarm,
    window_level,
)
from components.drift.io import C, Rejected, Reservoir, Rows
from components.drift.view import BASELINE, PRODUCTION, ImageScope
from components.drift.windows import WINDOWS, window_keys, window_start_us

if TYPE_CHECKING:
    from components.drift.explain import Explanation
    from components.drift.report import ViewData

# The run's status (the component's ``status`` output; the command line's exit status in brackets):
DRIFT = "drift"  # at least one window of this run flagged (1)
NO_DRIFT = "no-drift"  # windows were tested and none flagged (0)
INSUFFICIENT_DATA = "insufficient-data"  # no window had min_window_rows usable rows: no verdict (3)
STATUSES = (DRIFT, NO_DRIFT, INSUFFICIENT_DATA)
# A window's status in the drift table: tested, too small, without rows, or inside the reference period
# (its rows calibrated the thresholds, so it is not tested against them).
WINDOW_OK, WINDOW_TOO_FEW, WINDOW_EMPTY, WINDOW_REFERENCE = "ok", "too_few_rows", "empty", "reference"


@dataclass(frozen=True)
class DriftInputs:
    """The Parquet files a run reads; ``calibration`` None: calibrate on held-out baseline rows.

    ``period``: the production file holding the known-good reference period (the baseline folder's,
    else the prepared folder's), None without a reference period.
    """

    production: Path
    baseline: Path
    calibration: Path | None
    period: Path | None = None


@dataclass(frozen=True)
class Baseline:
    """Samples of the baseline: the reference the detectors compare with, and clean calibration rows."""

    reference: Rows
    calibration: Rows
    calibration_source: str  # in words, for the summary and the report
    centroid: np.ndarray  # mean vector of every valid baseline row
    n_rows: int  # valid baseline rows
    baseline_source: str = ""  # in words: which rows the reference sample comes from
    period: tuple[int, int] | None = None  # the reference period [start, end) in UTC microseconds
    period_in_production: bool = False  # the period's rows are production's own: its windows are not tested


@dataclass(frozen=True)
class CalibrationFacts:
    """Which baseline and calibration a run used and what false-alarm rate they promise (report, summary)."""

    baseline: str  # where the reference sample comes from, in words
    calibration: str  # where the clean calibration rows come from, in words
    reference_period: str  # "START/END" (UTC, END excluded) or "" when none
    alert_rule: str  # sidak, fdr or per_window
    false_alarm_rate: float  # the setting
    run_false_alarm_rate: float  # chance that a run of this many clean windows raises a false alert
    window_level: float  # the per-window level applied (fdr: the Benjamini-Hochberg level reached)
    windows_tested: int  # m, the windows the rate is split over
    resamples: int  # clean windows drawn per window size (the most drawn)
    same_source: bool  # calibration rows come from production's source (reference period)

    @property
    def promise(self) -> str:
        """The promise in one sentence."""
        if not self.windows_tested:
            return "No window was tested, so no false-alarm promise applies."
        m = self.windows_tested
        if self.alert_rule == PER_WINDOW:
            rule = (
                f"each of the {m} windows tested at {self.false_alarm_rate:g} (rule per_window): a run of "
                f"{m} clean windows raises a false alert with probability up to {self.run_false_alarm_rate:.3g}"
            )
        elif self.alert_rule == SIDAK:
            rule = (
                f"a false alert on this run's {m} windows with probability {self.false_alarm_rate:g} "
                f"(rule sidak: each window tested at {self.window_level:.3g})"
            )
        else:
            rule = (
                f"a false alert when all of this run's {m} windows are clean with probability "
                f"{self.false_alarm_rate:g}, and at most that share of false flags among flagged windows "
                f"(rule fdr, Benjamini-Hochberg: windows flagged at p <= {self.window_level:.3g})"
            )
        source = (
            "on clean rows of the same source as production (the reference period)"
            if self.same_source
            else "on the calibration rows named above: it holds for production from their source. The data "
            "stage draws validation rows from production's source (validation_part='test'), so the harmless "
            "gap between the training data and production is inside the calibration; rows from the training "
            "data's source (validation_part='train') hold it only for production like the training data, "
            "and production from another source (other cameras, another test set) can be flagged more "
            "often: give reference_days or reference_dates to calibrate on production's own rows"
        )
        return f"Promised: {rule}, calibrated {source}."


@dataclass
class WindowRows:
    """One production window: running sums over all its rows and a bounded uniform sample of them."""

    sample: Reservoir
    total: np.ndarray  # sum of the vectors (float64)
    n_rows: int = 0
    correct: float = 0.0  # labelled rows whose prediction is the actual label (NaN without labels)
    labelled: int = 0  # rows with an actual label (production rows may have none yet)
    score_sum: float = 0.0

    def add(self, rows: Rows) -> None:
        """Count ``rows`` (all of this window) into the sums and the sample."""
        self.total += rows.vectors.sum(axis=0, dtype=np.float64)
        self.n_rows += len(rows)
        pred, act = rows.meta.get(C.PREDICTION_LABEL), rows.meta.get(C.ACTUAL_LABEL)
        if pred is None or act is None:
            self.correct = np.nan
        else:
            has_label = np.array([a is not None and a == a and a != "" for a in act], dtype=bool)
            self.labelled += int(has_label.sum())
            self.correct += float((pred[has_label] == act[has_label]).sum())
        self.score_sum += float(rows.scores.sum(dtype=np.float64))
        self.sample.add(rows)


@dataclass
class DriftSummary:
    """The run's figures: metrics (the KFP Metrics artifact), the alert, and the summary in words."""

    metrics: dict[str, float]
    alert: bool
    lines: list[str] = field(default_factory=list)
    status: str = NO_DRIFT  # one of STATUSES


@dataclass
class DriftResult:
    """What :func:`run_drift` returns: the drift table, metrics, alert, summary, rejected rows, history."""

    table: pd.DataFrame  # this run's windows only
    metrics: dict[str, float]
    alert: bool  # any of THIS run's windows flagged
    summary: list[str]
    rejected: Rejected
    history: HistoryUpdate | None = None  # every stored window (this run's marked); None: not recorded
    status: str = NO_DRIFT  # drift, no-drift or insufficient-data (no window tested: no verdict)
    calibration: CalibrationFacts | None = None  # baseline, calibration, alert rule and promised rate


def run_drift(
    prepared: str | Path,
    baseline: str | Path,
    report_path: str | Path | None,
    table_path: str | Path | None,
    config: DriftConfig | None = None,
    recorded_at: datetime | None = None,
    image_roots: Sequence[str] = (),
) -> DriftResult:
    """Compare production windows against the baseline; write the report and the drift table.

    ``prepared`` holds the production rows, ``baseline`` the baseline split (both prepare-stage
    folders, often the same); ``report_path`` / ``table_path`` None: that output is not written.
    With ``config.history_uri`` this run's windows are recorded there, stamped with ``recorded_at``
    (default: now, UTC). Thumbnails are read only from the two folders, ``config.image_store``, the
    image stores their manifests name and ``image_roots`` (the artifacts' URIs in a pipeline); see
    :func:`image_scope`.
    """
    cfg = config or DriftConfig()
    t0 = time.time()
    rejected = Rejected()
    inputs = locate_files(prepared, baseline, cfg)
    dim = embedding_dim(inputs)
    base = load_baseline(inputs, dim, cfg, rejected)
    detectors = calibrate(base, cfg)
    windows = scan_windows(inputs.production, dim, cfg, rejected)
    table = build_table(windows, detectors, base.centroid, cfg, reference_keys(windows, base, cfg))
    history = record_history(table, prepared, cfg, recorded_at)
    facts = calibration_facts(base, table, detectors, cfg)
    summary = summarise(table, detectors.names, cfg, base, rejected, history, facts)
    why: list[Explanation] = []
    if report_path is not None:
        scope = image_scope(prepared, baseline, cfg, image_roots)
        view, notes = build_view(base.reference, windows, cfg, scope, table)
        summary.lines.extend(notes)
        settings = report_facts(inputs, base, table, detectors, cfg, rejected)
        why = explain_windows(base.reference, windows, table, cfg, scope)
        write_report(
            report_path, table, detectors.names, summary.lines, view, settings, history, summary.status, why
        )
    if table_path is not None:
        write_with_atomic(table_path, lambda tmp: write_drift_table(table, tmp, why))
    m = summary.metrics
    print(
        f"drift: {int(m['windows_tested'])} windows tested, {int(m['windows_flagged'])} flagged, "
        f"status={summary.status}, alert={summary.alert}, max centroid distance {m['max_centroid_distance']:.4g}, "
        f"{len(rejected.rows)} rows rejected, {int(m['history_windows'])} windows in the history, "
        f"{time.time() - t0:.1f} s"
    )
    return DriftResult(
        table, summary.metrics, summary.alert, summary.lines, rejected, history, summary.status, facts
    )


def write_drift_table(table: pd.DataFrame, path: str | Path, why: Sequence[Explanation] = ()) -> None:
    """The drift table as Parquet, the flagged windows' feature shifts in its metadata (train's augment=auto).

    Key ``components.common.augment.EXPLANATION_KEY``: per explained window its label, sentence and
    each feature's shift (``named``: the explanation named it, ``explain.named_features``).
    """
    from components.common.augment import EXPLANATION_KEY, explanation_json
    from components.drift.explain import named_features

    arrow = pa.Table.from_pandas(table, preserve_index=False)
    windows = [
        {
            "window": e.label,
            "sentence": e.sentence,
            "features": [
                {
                    "feature": f.feature,
                    "smd": f.smd,
                    "wasserstein": f.wasserstein,
                    "p_value": f.p_value,
                    "named": f in named_features(e.features),
                }
                for f in e.features
                if np.isfinite([f.smd, f.wasserstein, f.p_value]).all()
            ],
        }
        for e in why
    ]
    meta = {**(arrow.schema.metadata or {}), EXPLANATION_KEY.encode(): explanation_json(windows).encode()}
    pq.write_table(arrow.replace_schema_metadata(meta), path)


# 1. Files and dimensions ---------------------------------------------------------------------------


def _file(folder: str | Path, env: str) -> Path:
    return Path(folder) / schema.prepared_file(env)


def locate_files(prepared: str | Path, baseline: str | Path, cfg: DriftConfig) -> DriftInputs:
    """The production, baseline and calibration files; FileNotFoundError names a missing one.

    Calibration rows: validation rows from the baseline folder, else from ``prepared``, unless the
    baseline is the validation split itself; otherwise none (baseline rows are held out instead).
    """
    production = _file(prepared, schema.PRODUCTION)
    base = _file(
        baseline,
        schema.PRODUCTION if cfg.baseline_environment == schema.PRODUCTION else cfg.baseline_environment,
    )
    for path, what in ((production, "production rows"), (base, f"{cfg.baseline_environment} baseline rows")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; the drift stage needs the {what} there")
    calibration = None
    if cfg.baseline_environment != schema.VALIDATION:
        found = [_file(f, schema.VALIDATION) for f in (baseline, prepared)]
        calibration = next((p for p in found if p.is_file()), None)
    period = None
    if cfg.has_reference_period:
        found = [_file(f, schema.PRODUCTION) for f in (baseline, prepared)]
        period = next(p for p in found if p.is_file())  # production's own file is there at least
    return DriftInputs(production, base, calibration, period)


def embedding_dim(inputs: DriftInputs) -> int:
    """The baseline's vector length; ValueError when there is none or production's differs."""
    dim = dio.dominant_dim(inputs.baseline)
    if dim == 0:
        raise ValueError(f"{inputs.baseline}: no rows with an {C.IMAGE_VECTOR}; the baseline is empty")
    prod_dim = dio.dominant_dim(inputs.production)
    if prod_dim and prod_dim != dim:
        raise ValueError(
            f"{inputs.production}: {C.IMAGE_VECTOR} has {prod_dim} values, the baseline {inputs.baseline} "
            f"has {dim}; baseline and production must come from the same model"
        )
    return dim


# 2. Baseline samples -------------------------------------------------------------------------------


def _sample_file(
    path: Path, env: str, dim: int, cap: int, rng: np.random.Generator, rejected: Rejected
) -> tuple[Rows | None, np.ndarray, int]:
    """A uniform sample of ``cap`` valid rows, plus the sum of all valid vectors and their count."""
    res = Reservoir(cap, rng)
    total = np.zeros(dim, dtype=np.float64)
    count = 0
    for rows in dio.iter_rows(path, env, dim, rejected):
        res.add(rows)
        total += rows.vectors.sum(axis=0, dtype=np.float64)
        count += len(rows)
    return res.rows, total, count


_US_PER_DAY = 86_400_000_000


def reference_period(path: Path, cfg: DriftConfig) -> tuple[int, int]:
    """The known-good reference period [start, end) in UTC microseconds.

    ``reference_dates`` as given, else the first ``reference_days`` UTC days from the day of the
    earliest timestamp in ``path`` (read one column, chunk by chunk).
    """
    bounds = reference_period_bounds(cfg.reference_dates)
    if bounds is not None:
        start, end = (_utc_us(b) for b in bounds)
        return start, end
    earliest = None
    pf = pq.ParquetFile(path, pre_buffer=False)
    for batch in pf.iter_batches(batch_size=65_536, columns=[C.PREDICTION_TS]):
        ts = batch.column(0).cast(pa.int64()).drop_null().to_numpy()
        if len(ts):
            low = int(ts.min())
            earliest = low if earliest is None else min(earliest, low)
    if earliest is None:
        raise ValueError(
            f"{path}: no production timestamps, so reference_days={cfg.reference_days} has no period"
        )
    start = earliest // _US_PER_DAY * _US_PER_DAY
    return start, start + cfg.reference_days * _US_PER_DAY


def _utc_us(when: str) -> int:
    t = pd.Timestamp(when)
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    return int(t.value // 1000)


def period_text(period: tuple[int, int] | None) -> str:
    """``START/END`` of a period in UTC (END excluded), ``""`` for None."""
    if period is None:
        return ""
    a, b = (pd.Timestamp(x, unit="us", tz="UTC") for x in period)
    fmt = "%Y-%m-%d" if a == a.normalize() and b == b.normalize() else "%Y-%m-%d %H:%M"
    return f"{a:{fmt}}/{b:{fmt}}"


def _sample_period(
    path: Path, dim: int, period: tuple[int, int], cap: int, rng: np.random.Generator, rejected: Rejected
) -> tuple[Rows | None, np.ndarray, int]:
    """A uniform sample of ``cap`` valid production rows inside ``period``, plus their vector sum and count."""
    res = Reservoir(cap, rng)
    total = np.zeros(dim, dtype=np.float64)
    count = 0
    for rows in dio.iter_rows(path, schema.PRODUCTION, dim, rejected):
        inside = np.flatnonzero((rows.ts >= period[0]) & (rows.ts < period[1]))
        if len(inside):
            part = rows.take(inside)
            res.add(part)
            total += part.vectors.sum(axis=0, dtype=np.float64)
            count += len(part)
    return res.rows, total, count


def _split(both: Rows, cfg: DriftConfig, rng: np.random.Generator) -> tuple[Rows, Rows]:
    """Disjoint reference and calibration samples of ``both`` (the reference at most half of it)."""
    perm = rng.permutation(len(both))
    n_ref = min(cfg.reference_size, len(both) // 2)
    return both.take(np.sort(perm[:n_ref])), both.take(np.sort(perm[n_ref:]))


def load_baseline(inputs: DriftInputs, dim: int, cfg: DriftConfig, rejected: Rejected) -> Baseline:
    """Sample the reference and the calibration rows (disjoint); unusable rows go to ``rejected``.

    | baseline_environment | reference period | reference sample | calibration rows |
    |---|---|---|---|
    | training | none | training rows | validation rows (training source) |
    | training / validation | given | that split's rows | the period's production rows |
    | validation | none | validation rows | validation rows held out from the reference |
    | production | given (required) | the period's rows | the period's other rows |
    """
    rng = np.random.default_rng(cfg.seed)
    env = cfg.baseline_environment
    period: tuple[int, int] | None = None
    in_production = False
    ref_rows: Rows | None
    cal_rows: Rows | None
    if inputs.period is not None:
        period = reference_period(inputs.period, cfg)
        in_production = inputs.period.resolve() == inputs.production.resolve()
        # production's own rejected rows are counted once, by scan_windows
        period_rejected = Rejected() if in_production else rejected
        what = f"reference period {period_text(period)} of {inputs.period}"
    if inputs.period is not None and period is not None and env == schema.PRODUCTION:
        cap = cfg.reference_size + cfg.calibration_size
        both, base_sum, base_n = _sample_period(inputs.period, dim, period, cap, rng, period_rejected)
        _enough(both, cfg, what)
        assert both is not None
        ref_rows, cal_rows = _split(both, cfg, rng)
        baseline_source = f"production rows of the {what} ({len(ref_rows)} sampled of {base_n})"
        source = (
            f"other rows of the same reference period ({len(cal_rows)} rows, disjoint from the reference)"
        )
    elif inputs.period is not None and period is not None:
        ref_rows, base_sum, base_n = _sample_file(
            inputs.baseline, env, dim, cfg.reference_size, rng, rejected
        )
        cal_rows, _, n_period = _sample_period(
            inputs.period, dim, period, cfg.calibration_size, rng, period_rejected
        )
        _enough(cal_rows, cfg, what)
        baseline_source = f"{env} rows ({inputs.baseline})"
        source = (
            f"production rows of the {what} ({0 if cal_rows is None else len(cal_rows)} of {n_period}; "
            "same source as production, so the harmless gap to the training data is not flagged)"
        )
    elif inputs.calibration is not None:
        ref_rows, base_sum, base_n = _sample_file(
            inputs.baseline, env, dim, cfg.reference_size, rng, rejected
        )
        cal_rows, _, _ = _sample_file(
            inputs.calibration, schema.VALIDATION, dim, cfg.calibration_size, rng, rejected
        )
        baseline_source = f"{env} rows ({inputs.baseline})"
        source = f"validation rows ({inputs.calibration})"
    else:
        cap = cfg.reference_size + cfg.calibration_size
        both, base_sum, base_n = _sample_file(inputs.baseline, env, dim, cap, rng, rejected)
        if both is None or len(both) < 2 * cfg.min_window_rows:
            raise ValueError(
                f"{inputs.baseline}: {0 if both is None else len(both)} usable rows; holding out "
                f"calibration data needs at least {2 * cfg.min_window_rows}"
            )
        ref_rows, cal_rows = _split(both, cfg, rng)
        baseline_source = f"{env} rows ({inputs.baseline})"
        source = f"baseline rows held out from the reference ({len(cal_rows)} rows)"
    if ref_rows is None or cal_rows is None:
        raise ValueError(f"{inputs.baseline}: no usable rows (see the rejected-row reasons)")
    return Baseline(
        ref_rows,
        cal_rows,
        source,
        base_sum / max(base_n, 1),
        base_n,
        f"{baseline_source}; reference sample {len(ref_rows)}",
        period,
        in_production,
    )


def _enough(rows: Rows | None, cfg: DriftConfig, what: str) -> None:
    """A ValueError naming the reference period when it holds too few rows to calibrate on."""
    n = 0 if rows is None else len(rows)
    need = 2 * cfg.min_window_rows
    if n < need:
        raise ValueError(
            f"{what}: {n} usable production rows, at least {need} needed (2 x min_window_rows); "
            "give a longer reference_days or other reference_dates"
        )


# 3. Calibration ------------------------------------------------------------------------------------


def _to_sample(rows: Rows) -> Sample:
    """The detectors' view of ``rows``: vectors, probabilities, scores, image features.

    The features (brightness, contrast, sharpness; NaN where a row lacks one) only when the file has them.
    """
    features = None
    if all(f in rows.meta for f in C.FEATURES):
        features = np.column_stack([np.asarray(rows.meta[f], dtype=np.float64) for f in C.FEATURES])
    return Sample(rows.vectors, rows.probabilities, rows.scores, features)


# Windows are tested on samples whose sizes lie on a grid 10% apart (at most 9% of a window's rows
# left out), so that windows of similar sizes share one null distribution: daily windows of 170-230
# rows need 4 calibrations, not 60.
SIZE_STEP = 1.1


def calibrate(base: Baseline, cfg: DriftConfig) -> CalibratedDrift:
    """The chosen detectors fitted on the reference, with thresholds calibrated on the clean rows."""
    return CalibratedDrift(
        detectors=default_detectors(cfg.seed, cfg.detector_names),
        false_alarm_rate=cfg.false_alarm_rate,
        n_resamples=cfg.drift_resamples,
        min_rows=cfg.min_window_rows,
        seed=cfg.seed,
        size_step=SIZE_STEP,
    ).fit(_to_sample(base.reference), _to_sample(base.calibration))


# 4. Production windows -----------------------------------------------------------------------------


def scan_windows(path: Path, dim: int, cfg: DriftConfig, rejected: Rejected) -> dict[int, WindowRows]:
    """One chunked pass over production: each window's sums and sample, by window key."""
    windows: dict[int, WindowRows] = {}
    for rows in tqdm(dio.iter_rows(path, schema.PRODUCTION, dim, rejected), desc="production", unit="chunk"):
        keys = window_keys(rows.ts, cfg.drift_window)
        for key in np.unique(keys):
            k = int(key)
            if k not in windows:
                rng = np.random.default_rng([cfg.seed, k & 0xFFFFFFFF])
                windows[k] = WindowRows(Reservoir(cfg.max_window_rows, rng), np.zeros(dim, dtype=np.float64))
            windows[k].add(rows.take(np.flatnonzero(keys == key)))
    if not windows:
        raise ValueError(f"{path}: no usable production rows (rejected: {rejected.counts() or 'none'})")
    return windows


# 5. The drift table --------------------------------------------------------------------------------


def reference_keys(windows: dict[int, WindowRows], base: Baseline, cfg: DriftConfig) -> frozenset[int]:
    """Windows inside the reference period whose rows are production's own: they are not tested."""
    if base.period is None or not base.period_in_production:
        return frozenset()
    start, end = base.period
    length = WINDOWS[cfg.drift_window]
    return frozenset(
        k
        for k in windows
        if start <= window_start_us(k, cfg.drift_window)
        and window_start_us(k, cfg.drift_window) + length <= end
    )


def window_record(
    key: int,
    window: WindowRows | None,
    detectors: CalibratedDrift,
    centroid: np.ndarray,
    cfg: DriftConfig,
    level: float | None = None,
    reference: bool = False,
) -> dict[str, object]:
    """The drift table's row of window ``key`` (``window`` None: no production rows there).

    Tested at the per-window ``level`` (default ``cfg.false_alarm_rate``); ``reference``: the window
    lies in the reference period, whose rows calibrated the thresholds, and is not tested.
    """
    start = pd.Timestamp(window_start_us(key, cfg.drift_window), unit="us", tz="UTC")
    end = start + pd.Timedelta(microseconds=WINDOWS[cfg.drift_window])
    rec: dict[str, object] = {"window_start": start, "window_end": end, "p_value": np.nan, "level": np.nan}
    if window is None:
        rec.update(
            n_rows=0, status=WINDOW_EMPTY, accuracy=np.nan, mean_score=np.nan, centroid_distance=np.nan
        )
        return rec
    n = window.n_rows
    rec.update(
        n_rows=n,
        accuracy=window.correct / window.labelled if window.labelled else np.nan,  # labelled rows only
        mean_score=window.score_sum / n,
        centroid_distance=float(np.linalg.norm(window.total / n - centroid)),
    )
    if reference:
        rec["status"] = WINDOW_REFERENCE
        return rec
    assert window.sample.rows is not None  # a window exists once it has a row
    verdict = detectors.test(_to_sample(window.sample.rows), cfg.false_alarm_rate if level is None else level)
    rec["status"] = verdict.status
    if verdict.status == WINDOW_OK:
        rec["p_value"], rec["level"] = verdict.p_value, verdict.level
    for r in verdict.detectors:
        rec[f"{r.name}_score"] = r.score
        rec[f"{r.name}_threshold"] = r.threshold
        rec[f"{r.name}_p_value"] = r.p_value
        rec[f"{r.name}_fired"] = r.drifted
    return rec


def testable(window: WindowRows | None, key: int, cfg: DriftConfig, skip: frozenset[int]) -> bool:
    """Whether window ``key`` will be tested: enough rows and not in the reference period."""
    return window is not None and key not in skip and window.n_rows >= cfg.min_window_rows


def build_table(
    windows: dict[int, WindowRows],
    detectors: CalibratedDrift,
    centroid: np.ndarray,
    cfg: DriftConfig,
    skip: frozenset[int] = frozenset(),
) -> pd.DataFrame:
    """One row per window from the first to the last (empty ones included), every detector's verdict.

    The run's ``false_alarm_rate`` is shared by the m windows it tests (``cfg.alert_rule``): each
    is tested at :func:`~components.drift.detectors.window_level`, or, for ``fdr``, at the
    Benjamini-Hochberg level its windows' family p-values reach. ``skip``: windows of the reference
    period (status ``reference``, not tested). Columns ``p_value`` (the window's family p-value) and
    ``level`` (the per-window level it was tested at) say how each verdict came about.
    """
    keys = range(min(windows), max(windows) + 1)
    m = sum(testable(windows.get(k), k, cfg, skip) for k in keys)
    level = window_level(cfg.alert_rule, cfg.false_alarm_rate, m)

    def records(at: float) -> list[dict[str, object]]:
        return [
            window_record(k, windows.get(k), detectors, centroid, cfg, at, k in skip)
            for k in tqdm(keys, desc="windows", unit="window")
        ]

    recs = records(level)
    if cfg.alert_rule == FDR and m:
        p_values = [float(r["p_value"]) for r in recs if r["status"] == WINDOW_OK]  # type: ignore[arg-type]
        reached = fdr_level(p_values, cfg.false_alarm_rate)
        if reached > level:
            recs = records(reached)
    table = pd.DataFrame.from_records(recs)
    names = detectors.names
    for name in names:  # every detector's columns, also when no window was tested
        for suffix in ("score", "threshold", "p_value"):
            col = f"{name}_{suffix}"
            table[col] = table[col].astype(float) if col in table else np.nan
        col = f"{name}_fired"
        table[col] = table[col].eq(True) if col in table else False
    fired = table[[f"{n}_fired" for n in names]]
    table["flagged"] = (table["status"] == "ok") & fired.any(axis=1)
    table["fired"] = [", ".join(n for n in names if row[f"{n}_fired"]) for _, row in fired.iterrows()]
    table["window"] = cfg.drift_window
    return table


# 6. The drift history -----------------------------------------------------------------------------


def record_history(
    table: pd.DataFrame, prepared: str | Path, cfg: DriftConfig, recorded_at: datetime | None = None
) -> HistoryUpdate:
    """Record this run's windows in ``cfg.history_uri`` and return the whole history.

    The stored rows of the windows ``table`` holds (same start, same length) are replaced, so a
    re-run of the same batch never duplicates them. The rows carry when they were recorded and the
    model version of the prepared folder's manifest. Without ``history_uri`` nothing is read or
    written: the "history" is this run's windows. A stored history that cannot be read or has other
    columns raises :class:`~components.common.history.HistoryError` and is left unchanged.
    """
    version = model_version_of(prepared)
    if not cfg.history_uri:
        return without_history(table, recorded_at, version)
    update = update_history(cfg.history_uri, table, recorded_at, version)
    print(
        f"drift history {cfg.history_uri}: {len(update.table)} windows stored "
        f"({update.previous_rows} before, {update.replaced_rows} replaced by this run's {len(table)})"
    )
    return update


def history_lines(history: HistoryUpdate, cfg: DriftConfig) -> list[str]:
    """The history's part of the summary: what is stored and what the alert is about."""
    fmt = "%Y-%m-%d %H:%M" if cfg.drift_window == "hourly" else "%Y-%m-%d"
    n_run = int(history.this_run.sum())
    earlier = history.table[~history.this_run]
    rule = (
        f"The alert is about this run's {n_run} window(s) only: windows of earlier runs "
        f"({int(earlier['flagged'].sum())} of them flagged) never raise it again."
    )
    if not history.uri:
        return [f"No drift history (history_uri is empty): nothing was stored. {rule}"]
    t = history.table
    replaced = f", replacing {history.replaced_rows} stored earlier" if history.replaced_rows else ""
    return [
        f"Drift history {history.uri}: {len(t)} windows from {t['window_start'].min():{fmt}} to "
        f"{t['window_start'].max():{fmt}}, {int(t['flagged'].sum())} flagged; this run recorded "
        f"{n_run}{replaced}. {rule}"
    ]


# 7. Metrics and summary ----------------------------------------------------------------------------


def calibration_facts(
    base: Baseline, table: pd.DataFrame, detectors: CalibratedDrift, cfg: DriftConfig
) -> CalibrationFacts:
    """Which baseline and calibration this run used, its alert rule and the false-alarm rate promised."""
    ok = table[table["status"] == WINDOW_OK]
    m = len(ok)
    applied = float(ok["level"].max()) if m else window_level(cfg.alert_rule, cfg.false_alarm_rate, 1)
    drawn = detectors.resamples_drawn
    return CalibrationFacts(
        baseline=base.baseline_source,
        calibration=base.calibration_source,
        reference_period=period_text(base.period),
        alert_rule=cfg.alert_rule,
        false_alarm_rate=cfg.false_alarm_rate,
        run_false_alarm_rate=run_false_alarm(cfg.alert_rule, cfg.false_alarm_rate, m) if m else 0.0,
        window_level=applied,
        windows_tested=m,
        resamples=max(drawn.values()) if drawn else cfg.drift_resamples,
        same_source=base.period is not None,
    )


def summarise(
    table: pd.DataFrame,
    names: list[str],
    cfg: DriftConfig,
    base: Baseline,
    rejected: Rejected,
    history: HistoryUpdate | None = None,
    facts: CalibrationFacts | None = None,
) -> DriftSummary:
    """The metrics, the alert and the summary in words.

    With ``facts``, the metrics and the summary also say which baseline and calibration were used,
    the alert rule, the per-window level and the false-alarm rate promised for this run.

    The alert is true when any window of THIS run (``table``) is flagged; windows stored in the
    history by earlier runs are shown in the report's trend but never raise it again, so yesterday's
    drift does not alarm today. ``history_windows`` counts the stored windows (0 without a history).
    """
    ok = table[table["status"] == "ok"]
    flagged = table[table["flagged"]]  # this run's windows only: the alert's scope
    metrics: dict[str, float] = {
        "windows": float(len(table)),
        "windows_tested": float(len(ok)),
        "windows_flagged": float(len(flagged)),
        "windows_too_few_rows": float((table["status"] == "too_few_rows").sum()),
        "windows_empty": float((table["status"] == "empty").sum()),
        "max_centroid_distance": float(ok["centroid_distance"].max()) if len(ok) else 0.0,
        "false_alarm_rate": float(cfg.false_alarm_rate),
        "production_rows": float(table["n_rows"].sum()),
        "baseline_rows": float(base.n_rows),
        "rejected_rows": float(len(rejected.rows)),
        "history_windows": float(len(history.table)) if history is not None and history.uri else 0.0,
        "windows_reference": float((table["status"] == WINDOW_REFERENCE).sum()),
    }
    if facts is not None:
        metrics.update(
            run_false_alarm_rate=facts.run_false_alarm_rate,
            window_level=facts.window_level,
            calibration_resamples=float(facts.resamples),
            calibrated_on_production_source=float(facts.same_source),
        )
    for name in names:
        if len(ok):
            metrics[f"threshold_{name}"] = float(ok[f"{name}_threshold"].median())
            metrics[f"max_{name}"] = float(ok[f"{name}_score"].max())
    lines = summary_lines(table, names, cfg, rejected, base.calibration_source)
    if facts is not None and len(ok):
        lines.insert(1, calibration_line(facts))
    if history is not None:
        lines.extend(history_lines(history, cfg))
    status = DRIFT if len(flagged) else NO_DRIFT if len(ok) else INSUFFICIENT_DATA
    return DriftSummary(metrics, bool(len(flagged)), lines, status)


def summary_lines(
    table: pd.DataFrame, names: list[str], cfg: DriftConfig, rejected: Rejected, source: str
) -> list[str]:
    """The summary in words: what drifted, when, how accuracy moved, which detectors fired.

    The first line names the status: ``Drift:``, ``No drift:`` or ``Insufficient data:`` (no
    window had ``min_window_rows`` usable rows, so there is no verdict either way).
    """
    ok = table[table["status"] == "ok"]
    flagged = table[table["flagged"]]
    fmt = "%Y-%m-%d %H:%M" if cfg.drift_window == "hourly" else "%Y-%m-%d"
    if not len(ok):
        rejected_note = f", {len(rejected.rows)} row(s) could not be used" if rejected.rows else ""
        return [
            f"Insufficient data: no window was tested ({int(table['n_rows'].sum())} usable production "
            f"rows in {len(table)} {cfg.drift_window} window(s), each under min_window_rows="
            f"{cfg.min_window_rows}{rejected_note}); there is no drift verdict, and the alert stays "
            "false because nothing was tested, not because production looks like the baseline.",
            *_not_tested_lines(table, cfg, rejected),
        ]
    out = [
        ("Drift: " if len(flagged) else "No drift: ")
        + f"{len(flagged)} of {len(ok)} tested {cfg.drift_window} windows drifted "
        f"({_rate_words(cfg, len(ok))}, thresholds calibrated on {source})."
    ]
    if len(flagged):
        clean = ok[~ok["flagged"]]
        base_acc = clean["accuracy"].mean() if len(clean) else np.nan
        parts = []
        for _, r in flagged.iterrows():
            parts.append(
                f"{r['window_start'].strftime(fmt)} ({int(r['n_rows'])} rows, accuracy {r['accuracy']:.2f}, "
                f"centroid distance {r['centroid_distance']:.3g}; fired: {r['fired']})"
            )
        out.append("Drifted windows: " + "; ".join(parts) + ".")
        if not np.isnan(base_acc):
            out.append(
                f"Mean accuracy in drifted windows {flagged['accuracy'].mean():.2f} against "
                f"{base_acc:.2f} in the others."
            )
        counts = {n: int(flagged[f"{n}_fired"].sum()) for n in names}
        out.append(
            "Detectors that fired (windows): " + ", ".join(f"{n} {c}" for n, c in counts.items()) + "."
        )
    else:
        out.append("No window drifted: no alert.")
    return out + _not_tested_lines(table, cfg, rejected)


def _rate_words(cfg: DriftConfig, m: int) -> str:
    """The false-alarm setting in words: per run (split over ``m`` windows) or per window."""
    if cfg.alert_rule == PER_WINDOW:
        return f"false-alarm rate {cfg.false_alarm_rate:g} per window"
    return f"false-alarm rate {cfg.false_alarm_rate:g} for the run's {m} windows, rule {cfg.alert_rule}"


def calibration_line(facts: CalibrationFacts) -> str:
    """The summary's line on the baseline, the calibration and the promised false-alarm rate."""
    period = (
        f" Reference period {facts.reference_period} (UTC, end excluded)." if facts.reference_period else ""
    )
    return (
        f"Baseline: {facts.baseline}. Calibration: {facts.calibration}, {facts.resamples} clean windows "
        f"drawn per window size.{period} {facts.promise}"
    )


def _not_tested_lines(table: pd.DataFrame, cfg: DriftConfig, rejected: Rejected) -> list[str]:
    """The summary's lines about windows not tested and rows that could not be used."""
    out = []
    few = table[table["status"] != WINDOW_OK]
    if len(few):
        ref = int((few["status"] == WINDOW_REFERENCE).sum())
        out.append(
            f"{len(few)} window(s) not tested: {int((few['status'] == WINDOW_EMPTY).sum())} empty, "
            f"{int((few['status'] == WINDOW_TOO_FEW).sum())} with fewer than {cfg.min_window_rows} rows"
            + (f", {ref} in the reference period (their rows calibrated the thresholds)" if ref else "")
            + "."
        )
    if rejected.rows:
        out.append(
            f"{len(rejected.rows)} row(s) could not be used: "
            + ", ".join(f"{r} ({c})" for r, c in rejected.counts().items())
            + "."
        )
    return out


# 8. The embedding view and the report --------------------------------------------------------------


def _text(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, "", dtype=object) if values is None else values.astype(object)


def _view_keys(windows: dict[int, WindowRows], cfg: DriftConfig) -> tuple[list[int], str]:
    """The windows the view shows (all, or ``umap_window``'s) and the view's title."""
    if not cfg.umap_window:
        return sorted(windows), "whole range"
    start = pd.Timestamp(cfg.umap_window)
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    k = int(window_keys(np.array([start.value // 1000]), cfg.drift_window)[0])
    if k not in windows:
        raise ValueError(
            f"umap_window={cfg.umap_window!r}: no production rows in that {cfg.drift_window} window"
        )
    return [k], f"window {cfg.umap_window}"


def image_scope(
    prepared: str | Path, baseline: str | Path, cfg: DriftConfig, extra: Sequence[str] = ()
) -> ImageScope:
    """Where thumbnails may be read from; a link anywhere else is refused, never read.

    First the images files inside the prepared and baseline folders (``images-<environment>.parquet``,
    looked up by prediction ID); then links inside the two folders, ``cfg.image_store``, the
    ``image_store`` each folder's ``manifest.json`` names (written by prepare from its own setting,
    not from the rows) and ``extra`` (the artifacts' URIs in a pipeline). Links come from the data;
    these do not.
    """
    roots = [str(prepared), str(baseline), cfg.image_store, *extra]
    for folder in dict.fromkeys((str(prepared), str(baseline))):
        try:
            manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("image_store"), str):
            roots.append(manifest["image_store"])
    return ImageScope.of(roots, artifacts=(prepared, baseline))


def build_view(
    reference: Rows,
    windows: dict[int, WindowRows],
    cfg: DriftConfig,
    scope: ImageScope | None = None,
    table: pd.DataFrame | None = None,
) -> tuple[ViewData | None, list[str]]:
    """The embedding view and its notes for the summary (view None when there are too few points).

    Baseline and production points (a fixed budget from every window: ``umap_sample // 2`` over
    the windows), projected together, coloured, clustered, with hover texts (plain text: the report
    never parses them as HTML) and thumbnails read only from links inside ``scope`` (None: no
    thumbnail is read). With ``table`` (the drift table) each production point carries its window's
    row, so the report's window menu shows one window against the baseline; the first one shown is
    the most drifted flagged window (:func:`~components.drift.explain.most_drifted`), else all.
    """
    from components.drift import view as v
    from components.drift.explain import most_drifted
    from components.drift.report import ViewData

    rng = np.random.default_rng([cfg.seed, 7])
    keys, title = _view_keys(windows, cfg)
    notes: list[str] = []
    half = cfg.umap_sample // 2
    per = max(1, half // max(len(keys), 1))
    parts = []
    part_keys: list[int] = []
    for k in keys:  # stratified: the same share from every window
        rows = windows[k].sample.rows
        assert rows is not None
        take = rng.choice(len(rows), min(per, len(rows)), replace=False)
        parts.append(rows.take(np.sort(take)))
        part_keys += [k] * len(take)
    prod = Rows.concat(parts)
    base = reference.take(np.sort(rng.choice(len(reference), min(half, len(reference)), replace=False)))
    allr = Rows.concat([base, prod])
    n = len(allr)
    if n < 10:
        return None, ["Too few points for the embedding view."]
    dataset = np.array([BASELINE] * len(base) + [PRODUCTION] * len(prod))
    is_prod = dataset == PRODUCTION
    coords3 = v.project(allr.vectors, 3, cfg.projection, cfg.umap_epochs, cfg.seed)
    coords2 = v.project(allr.vectors, 2, cfg.projection, cfg.umap_epochs, cfg.seed)
    meta = allr.meta
    pred, act = _text(meta.get(C.PREDICTION_LABEL), n), _text(meta.get(C.ACTUAL_LABEL), n)
    feats = {f: meta[f].astype(float) for f in C.FEATURES if f in meta}
    deg = meta.get(C.DEGRADATION)
    cols = v.colourings(dataset, pred, act, allr.scores, feats, cfg.positive_class, deg)
    labels, found = v.clusters(coords3, is_prod, cfg.min_cluster_size)
    cats = tuple(str(c) for c in sorted(set(labels.tolist())))
    cols.insert(1, v.Colouring("cluster (HDBSCAN, -1 = noise)", labels.astype(str), cats))
    ts = pd.to_datetime(allr.ts, unit="us", utc=True)
    hover = [
        f"{dataset[i]} · {ts[i]:%Y-%m-%d %H:%M}\npredicted {pred[i]} ({allr.scores[i]:.2f})\n"
        f"actual {act[i]}\ncluster {labels[i]}" + (f"\ndegradation {deg[i]}" if deg is not None else "")
        for i in range(n)
    ]
    links = [str(x) if x is not None else "" for x in _text(meta.get(C.IMAGE_LINK), n)]
    image_keys = [str(x) if x is not None else "" for x in _text(meta.get(C.PREDICTION_ID), n)]
    if cfg.thumbnails:
        loaded = v.load_thumbnails(links, scope or ImageScope(), keys=image_keys)
        thumbs, failed, outside = loaded.uris, loaded.unreadable, loaded.outside
    else:
        thumbs, failed, outside = [""] * n, 0, 0
    if outside:
        notes.append(
            f"{outside} thumbnails skipped: link outside the prepared folder/image store (not read; "
            "give prepare's image_store as the drift stage's image_store if the images live there)."
        )
    if failed:
        notes.append(
            f"{failed} of {n} thumbnails could not be read (not in the prepared folders' images files; "
            "image links missing or unreachable)."
        )
    if found:
        top = found[0]
        desc = f"The most drifted cluster ({top.size} points) is {top.production_share:.0%} production"
        if deg is not None:
            d_vals, d_counts = np.unique(
                deg[top.members][is_prod[top.members]].astype(str), return_counts=True
            )
            if len(d_vals):
                desc += (
                    " (ground-truth degradation there: "
                    + ", ".join(f"{a} {b}" for a, b in zip(d_vals, d_counts, strict=True))
                    + ")"
                )
        notes.append(desc + f", against {is_prod.mean():.0%} in the whole sample.")
    data = ViewData(coords3, coords2, cols, hover, thumbs, found, deg, pred, is_prod, title)
    if table is not None:
        row_of = {pd.Timestamp(t): i for i, t in enumerate(table["window_start"])}
        pos = {k: row_of.get(_window_start(k, cfg), -1) for k in keys}
        data.point_window = np.array([-1] * len(base) + [pos[k] for k in part_keys], dtype=int)
        drifted = most_drifted(table)
        shown = {p for p in pos.values() if p >= 0}
        data.default_window = drifted if drifted in shown else (min(shown) if len(shown) == 1 else None)
        if cfg.umap_window == "" and data.default_window is not None:
            data.title = "baseline and the chosen window"
    return data, notes


def _window_start(key: int, cfg: DriftConfig) -> pd.Timestamp:
    return pd.Timestamp(window_start_us(key, cfg.drift_window), unit="us", tz="UTC")


def explain_windows(
    reference: Rows,
    windows: dict[int, WindowRows],
    table: pd.DataFrame,
    cfg: DriftConfig,
    scope: ImageScope | None = None,
) -> list[Explanation]:
    """Why each flagged window drifted (:mod:`components.drift.explain`), from the bounded samples.

    The examples' thumbnails are read only from links inside ``scope`` (None or ``thumbnails``
    off: none is read).
    """
    from components.drift import explain

    samples = {_window_start(k, cfg): w.sample.rows for k, w in windows.items() if w.sample.rows is not None}
    fmt = "%Y-%m-%d %H:%M" if cfg.drift_window == "hourly" else "%Y-%m-%d"
    out = explain.explain_flagged(reference, samples, table, fmt, cfg.seed)
    return explain.with_thumbnails(out, scope) if cfg.thumbnails and scope is not None else out


def report_facts(
    inputs: DriftInputs,
    base: Baseline,
    table: pd.DataFrame,
    detectors: CalibratedDrift,
    cfg: DriftConfig,
    rejected: Rejected,
) -> dict[str, str]:
    """The report's settings table: inputs, calibration, levels per window size, every setting."""
    return {
        "baseline": f"{inputs.baseline} ({base.n_rows} rows; reference sample {len(base.reference)})",
        "production": f"{inputs.production} ({int(table['n_rows'].sum())} rows)",
        "reference sample": base.baseline_source,
        "calibration": base.calibration_source,
        "reference period": period_text(base.period) or "none",
        "window": cfg.drift_window,
        "alert rule": cfg.alert_rule,
        "false-alarm rate": _rate_words(cfg, int((table["status"] == WINDOW_OK).sum())),
        "per-window level": ", ".join(f"n={k}: {v:.3g}" for k, v in detectors.window_levels.items()),
        "per-detector level holding it": ", ".join(
            f"n={k}: {v:.3g}" for k, v in detectors.family_levels.items()
        ),
        "resamples per window size": ", ".join(f"n={k}: {v}" for k, v in detectors.resamples_drawn.items())
        or str(cfg.drift_resamples),
        "detectors run on at most": f"{cfg.max_window_rows} rows per window",
        "rejected rows": ", ".join(f"{r}: {c}" for r, c in rejected.counts().items()) or "none",
        "drift history": cfg.history_uri or "none (history_uri is empty)",
        "settings": ", ".join(f"{k}={v}" for k, v in asdict(cfg).items()),
    }


def write_report(
    path: str | Path,
    table: pd.DataFrame,
    names: list[str],
    summary: list[str],
    view: ViewData | None,
    facts: dict[str, str],
    history: HistoryUpdate | None = None,
    status: str = "",
    explanations: Sequence[Explanation] = (),
) -> Path:
    """Render the self-contained HTML report and write it atomically to ``path``."""
    from components.drift.report import render

    page = render(table, names, summary, view, facts, history, status, explanations)
    return write_text_atomic(path, page)
