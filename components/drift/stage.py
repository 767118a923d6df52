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
from tqdm import tqdm

from components.common import schema
from components.common.files import MANIFEST_FILE, write_text_atomic, write_with_atomic
from components.drift import io as dio
from components.drift.config import DriftConfig
from components.drift.detectors import CalibratedDrift, Sample, default_detectors
from components.drift.history import HistoryUpdate, model_version_of, update_history, without_history
from components.drift.io import C, Rejected, Reservoir, Rows
from components.drift.view import BASELINE, PRODUCTION, ImageScope
from components.drift.windows import WINDOWS, window_keys, window_start_us

if TYPE_CHECKING:
    from components.drift.report import ViewData

# The run's status (the component's ``status`` output; the command line's exit status in brackets):
DRIFT = "drift"  # at least one window of this run flagged (1)
NO_DRIFT = "no-drift"  # windows were tested and none flagged (0)
INSUFFICIENT_DATA = "insufficient-data"  # no window had min_window_rows usable rows: no verdict (3)
STATUSES = (DRIFT, NO_DRIFT, INSUFFICIENT_DATA)


@dataclass(frozen=True)
class DriftInputs:
    """The Parquet files a run reads; ``calibration`` None: calibrate on held-out baseline rows."""

    production: Path
    baseline: Path
    calibration: Path | None


@dataclass(frozen=True)
class Baseline:
    """Samples of the baseline: the reference the detectors compare with, and clean calibration rows."""

    reference: Rows
    calibration: Rows
    calibration_source: str  # in words, for the summary and the report
    centroid: np.ndarray  # mean vector of every valid baseline row
    n_rows: int  # valid baseline rows


@dataclass
class WindowRows:
    """One production window: running sums over all its rows and a bounded uniform sample of them."""

    sample: Reservoir
    total: np.ndarray  # sum of the vectors (float64)
    n_rows: int = 0
    correct: float = 0.0  # rows whose prediction is the actual label (NaN without labels)
    score_sum: float = 0.0

    def add(self, rows: Rows) -> None:
        """Count ``rows`` (all of this window) into the sums and the sample."""
        self.total += rows.vectors.sum(axis=0, dtype=np.float64)
        self.n_rows += len(rows)
        pred, act = rows.meta.get(C.PREDICTION_LABEL), rows.meta.get(C.ACTUAL_LABEL)
        self.correct += float((pred == act).sum()) if pred is not None and act is not None else np.nan
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
    table = build_table(windows, detectors, base.centroid, cfg)
    history = record_history(table, prepared, cfg, recorded_at)
    summary = summarise(table, detectors.names, cfg, base, rejected, history)
    if report_path is not None:
        scope = image_scope(prepared, baseline, cfg, image_roots)
        view, notes = build_view(base.reference, windows, cfg, scope)
        summary.lines.extend(notes)
        facts = report_facts(inputs, base, table, detectors, cfg, rejected)
        write_report(report_path, table, detectors.names, summary.lines, view, facts, history, summary.status)
    if table_path is not None:
        write_with_atomic(table_path, lambda tmp: table.to_parquet(tmp, index=False))
    m = summary.metrics
    print(
        f"drift: {int(m['windows_tested'])} windows tested, {int(m['windows_flagged'])} flagged, "
        f"status={summary.status}, alert={summary.alert}, max centroid distance {m['max_centroid_distance']:.4g}, "
        f"{len(rejected.rows)} rows rejected, {int(m['history_windows'])} windows in the history, "
        f"{time.time() - t0:.1f} s"
    )
    return DriftResult(
        table, summary.metrics, summary.alert, summary.lines, rejected, history, summary.status
    )


# 1. Files and dimensions ---------------------------------------------------------------------------


def _file(folder: str | Path, env: str) -> Path:
    return Path(folder) / schema.prepared_file(env)


def locate_files(prepared: str | Path, baseline: str | Path, cfg: DriftConfig) -> DriftInputs:
    """The production, baseline and calibration files; FileNotFoundError names a missing one.

    Calibration rows: validation rows from the baseline folder, else from ``prepared``, unless the
    baseline is the validation split itself; otherwise none (baseline rows are held out instead).
    """
    production = _file(prepared, schema.PRODUCTION)
    base = _file(baseline, cfg.baseline_environment)
    for path, what in ((production, "production rows"), (base, f"{cfg.baseline_environment} baseline rows")):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; the drift stage needs the {what} there")
    calibration = None
    if cfg.baseline_environment != schema.VALIDATION:
        found = [_file(f, schema.VALIDATION) for f in (baseline, prepared)]
        calibration = next((p for p in found if p.is_file()), None)
    return DriftInputs(production, base, calibration)


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


def load_baseline(inputs: DriftInputs, dim: int, cfg: DriftConfig, rejected: Rejected) -> Baseline:
    """Sample the reference and the calibration rows (disjoint); unusable rows go to ``rejected``."""
    rng = np.random.default_rng(cfg.seed)
    env = cfg.baseline_environment
    if inputs.calibration is not None:
        ref_rows, base_sum, base_n = _sample_file(
            inputs.baseline, env, dim, cfg.reference_size, rng, rejected
        )
        cal_rows, _, _ = _sample_file(
            inputs.calibration, schema.VALIDATION, dim, cfg.calibration_size, rng, rejected
        )
        source = f"validation rows ({inputs.calibration})"
    else:
        cap = cfg.reference_size + cfg.calibration_size
        both, base_sum, base_n = _sample_file(inputs.baseline, env, dim, cap, rng, rejected)
        if both is None or len(both) < 2 * cfg.min_window_rows:
            raise ValueError(
                f"{inputs.baseline}: {0 if both is None else len(both)} usable rows; holding out "
                f"calibration data needs at least {2 * cfg.min_window_rows}"
            )
        perm = rng.permutation(len(both))
        n_ref = min(cfg.reference_size, len(both) // 2)
        ref_rows, cal_rows = both.take(np.sort(perm[:n_ref])), both.take(np.sort(perm[n_ref:]))
        source = f"baseline rows held out from the reference ({len(cal_rows)} rows)"
    if ref_rows is None or cal_rows is None:
        raise ValueError(f"{inputs.baseline}: no usable rows (see the rejected-row reasons)")
    return Baseline(ref_rows, cal_rows, source, base_sum / max(base_n, 1), base_n)


# 3. Calibration ------------------------------------------------------------------------------------


def _to_sample(rows: Rows) -> Sample:
    return Sample(rows.vectors, rows.probabilities, rows.scores)


def calibrate(base: Baseline, cfg: DriftConfig) -> CalibratedDrift:
    """The chosen detectors fitted on the reference, with thresholds calibrated on the clean rows."""
    return CalibratedDrift(
        detectors=default_detectors(cfg.seed, cfg.detector_names),
        false_alarm_rate=cfg.false_alarm_rate,
        n_resamples=cfg.drift_resamples,
        min_rows=cfg.min_window_rows,
        seed=cfg.seed,
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


def window_record(
    key: int, window: WindowRows | None, detectors: CalibratedDrift, centroid: np.ndarray, cfg: DriftConfig
) -> dict[str, object]:
    """The drift table's row of window ``key`` (``window`` None: no production rows there)."""
    start = pd.Timestamp(window_start_us(key, cfg.drift_window), unit="us", tz="UTC")
    end = start + pd.Timedelta(microseconds=WINDOWS[cfg.drift_window])
    rec: dict[str, object] = {"window_start": start, "window_end": end}
    if window is None:
        rec.update(n_rows=0, status="empty", accuracy=np.nan, mean_score=np.nan, centroid_distance=np.nan)
        return rec
    n = window.n_rows
    rec.update(
        n_rows=n,
        accuracy=window.correct / n,
        mean_score=window.score_sum / n,
        centroid_distance=float(np.linalg.norm(window.total / n - centroid)),
    )
    assert window.sample.rows is not None  # a window exists once it has a row
    verdict = detectors.test(_to_sample(window.sample.rows))
    rec["status"] = verdict.status
    for r in verdict.detectors:
        rec[f"{r.name}_score"] = r.score
        rec[f"{r.name}_threshold"] = r.threshold
        rec[f"{r.name}_p_value"] = r.p_value
        rec[f"{r.name}_fired"] = r.drifted
    return rec


def build_table(
    windows: dict[int, WindowRows], detectors: CalibratedDrift, centroid: np.ndarray, cfg: DriftConfig
) -> pd.DataFrame:
    """One row per window from the first to the last (empty ones included), every detector's verdict."""
    keys = range(min(windows), max(windows) + 1)
    records = [
        window_record(k, windows.get(k), detectors, centroid, cfg)
        for k in tqdm(keys, desc="windows", unit="window")
    ]
    table = pd.DataFrame.from_records(records)
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
    columns raises :class:`~components.drift.history.HistoryError` and is left unchanged.
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


def summarise(
    table: pd.DataFrame,
    names: list[str],
    cfg: DriftConfig,
    base: Baseline,
    rejected: Rejected,
    history: HistoryUpdate | None = None,
) -> DriftSummary:
    """The metrics, the alert and the summary in words.

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
    }
    for name in names:
        if len(ok):
            metrics[f"threshold_{name}"] = float(ok[f"{name}_threshold"].median())
            metrics[f"max_{name}"] = float(ok[f"{name}_score"].max())
    lines = summary_lines(table, names, cfg, rejected, base.calibration_source)
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
        f"(false-alarm rate {cfg.false_alarm_rate:g} per window, thresholds calibrated on {source})."
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


def _not_tested_lines(table: pd.DataFrame, cfg: DriftConfig, rejected: Rejected) -> list[str]:
    """The summary's lines about windows not tested and rows that could not be used."""
    out = []
    few = table[table["status"] != "ok"]
    if len(few):
        out.append(
            f"{len(few)} window(s) not tested: {int((few['status'] == 'empty').sum())} empty, "
            f"{int((few['status'] == 'too_few_rows').sum())} with fewer than {cfg.min_window_rows} rows."
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

    The prepared and baseline folders, ``cfg.image_store``, the ``image_store`` each folder's
    ``manifest.json`` names (written by prepare from its own setting, not from the rows) and
    ``extra`` (the artifacts' URIs in a pipeline). Links come from the data; these do not.
    """
    roots = [str(prepared), str(baseline), cfg.image_store, *extra]
    for folder in dict.fromkeys((str(prepared), str(baseline))):
        try:
            manifest = json.loads((Path(folder) / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(manifest, dict) and isinstance(manifest.get("image_store"), str):
            roots.append(manifest["image_store"])
    return ImageScope.of(roots)


def build_view(
    reference: Rows, windows: dict[int, WindowRows], cfg: DriftConfig, scope: ImageScope | None = None
) -> tuple[ViewData | None, list[str]]:
    """The embedding view and its notes for the summary (view None when there are too few points).

    Baseline and production points (the same share from every window), projected, coloured,
    clustered, with hover texts (plain text: the report never parses them as HTML) and
    thumbnails read only from links inside ``scope`` (None: no thumbnail is read).
    """
    from components.drift import view as v
    from components.drift.report import ViewData

    rng = np.random.default_rng([cfg.seed, 7])
    keys, title = _view_keys(windows, cfg)
    notes: list[str] = []
    half = cfg.umap_sample // 2
    per = max(1, half // max(len(keys), 1))
    parts = []
    for k in keys:  # stratified: the same share from every window
        rows = windows[k].sample.rows
        assert rows is not None
        take = rng.choice(len(rows), min(per, len(rows)), replace=False)
        parts.append(rows.take(np.sort(take)))
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
    if cfg.thumbnails:
        loaded = v.load_thumbnails(links, scope or ImageScope())
        thumbs, failed, outside = loaded.uris, loaded.unreadable, loaded.outside
    else:
        thumbs, failed, outside = [""] * n, 0, 0
    if outside:
        notes.append(
            f"{outside} thumbnails skipped: link outside the prepared folder/image store (not read; "
            "give prepare's image_store as the drift stage's image_store if the images live there)."
        )
    if failed:
        notes.append(f"{failed} of {n} thumbnails could not be read (image links missing or unreachable).")
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
    return ViewData(coords3, coords2, cols, hover, thumbs, found, deg, pred, is_prod, title), notes


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
        "calibration": base.calibration_source,
        "window": cfg.drift_window,
        "false-alarm rate per window (family)": f"{cfg.false_alarm_rate:g}",
        "per-detector level holding it": ", ".join(
            f"n={k}: {v:.4f}" for k, v in detectors.family_levels.items()
        ),
        "resamples per window size": str(cfg.drift_resamples),
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
) -> Path:
    """Render the self-contained HTML report and write it atomically to ``path``."""
    from components.drift.report import render

    return write_text_atomic(path, render(table, names, summary, view, facts, history, status))
