"""Candidate against production on the same rows: per-slice accuracy with intervals, calibration, the gate.

:func:`evaluate` runs the named steps in order:

1. :func:`select_rows`: the labelled rows of ``eval_splits`` (production: the most recent
   ``eval_recent_days`` when set); rows without a label yet are counted and left out;
2. :func:`production_model`: the registry's production version (``registry_uri`` +
   ``registered_model``), downloaded from its ``model_uri`` when remote; None when there is none;
3. :func:`predict`: each model run on the same rows exactly as the embed stage runs it
   (:mod:`components.common.inference`); the image features (brightness, contrast, sharpness)
   come from the same decoder; rows whose image does not decode are listed and left out;
4. :func:`drifted_rows`: production rows inside the windows the drift table (or history) flagged,
   after aligning the data set's clock with the drift table's (prepare shifts timestamps);
5. :func:`slice_results`: overall, per split, class, degradation kind, image-feature bin and
   drifted-or-not: accuracy of each model with a Wilson interval, the paired difference
   candidate - production with a paired bootstrap interval; :func:`calibration` (expected
   calibration error and the reliability diagram's bins);
6. :func:`gate`: promote or keep as a candidate, with one reason per rule;
7. the JSON of everything (:func:`evaluation_json`) and the HTML report (:mod:`.report`).
"""

from __future__ import annotations

import io
import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from components.common import schema, storage
from components.common.dataset_folder import load_splits
from components.common.device import require_cuda, trained_for_gpu, wants_cuda
from components.common.files import write_text_atomic
from components.common.model_folder import MODEL_VERSION, check_model_folder, load_summary
from components.common.schema import DatasetColumns as C
from components.evaluate.config import CANDIDATE, PROMOTE, EvaluateConfig

STAGE = "evaluate"
REQUIRED_COLUMNS = (C.IMAGE, C.LABEL, C.IMAGE_ID, C.PREDICTION_TS, C.DEGRADATION)
FEATURES = schema.EmbedColumns.FEATURES  # brightness, contrast, sharpness
# Slice kinds, in the report's order.
OVERALL, SPLIT, CLASS, DEGRADATION, DRIFT = "overall", "split", "class", "degradation", "drift"
KINDS = (OVERALL, SPLIT, CLASS, DEGRADATION, *FEATURES, DRIFT)
DRIFTED, NOT_DRIFTED = "drifted", "not drifted"
DRIFT_COLUMNS = ("window_start", "window_end", "flagged")
US_PER_S = 1_000_000


# ---------------------------------------------------------------------------------------- 1. rows


@dataclass
class Rows:
    """The evaluated rows, one per image, in a fixed order both models are run on."""

    table: pa.Table  # image, image_id and the row's split / row number, for the forward passes
    frame: pd.DataFrame  # split, row, image_id, label, degradation, ts_us (+ features, drifted later)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows left out


def select_rows(dataset_dir: str | Path, cfg: EvaluateConfig) -> Rows:
    """The labelled rows of ``cfg.eval_splits`` (production: the last ``eval_recent_days`` days when set)."""
    names = cfg.split_names
    data = load_splits(
        dataset_dir,
        names,
        REQUIRED_COLUMNS,
        "there is nothing to evaluate on",
        unlabelled_splits=(schema.PRODUCTION,),
    )
    tables, frames = [], []
    skipped: dict[str, int] = {}
    for split in names:
        arrow = data[split].with_format("arrow")[:]
        labels = np.asarray(arrow.column(C.LABEL).to_numpy(zero_copy_only=False), dtype=np.int64)
        ts = arrow.column(C.PREDICTION_TS).cast(schema.TIMESTAMP_TYPE).cast(pa.int64())
        ts_us = np.asarray(ts.to_numpy(zero_copy_only=False), dtype=np.int64)
        keep = labels != schema.NO_LABEL
        if int((~keep).sum()):
            skipped[f"{split}: no label yet"] = int((~keep).sum())
        if split == schema.PRODUCTION and cfg.eval_recent_days:
            newest = int(ts_us.max())
            recent = ts_us > newest - cfg.eval_recent_days * 86_400 * US_PER_S
            old = keep & ~recent
            if int(old.sum()):
                skipped[f"{split}: older than the last {cfg.eval_recent_days} days"] = int(old.sum())
            keep &= recent
        idx = np.flatnonzero(keep)
        if not idx.size:
            skipped[f"{split}: no labelled row"] = skipped.get(f"{split}: no labelled row", 0)
            continue
        taken = arrow.take(pa.array(idx)).select([C.IMAGE, C.IMAGE_ID])
        degradation = arrow.column(C.DEGRADATION).take(pa.array(idx)).fill_null("").to_pylist()
        tables.append(taken)
        frames.append(
            pd.DataFrame(
                {
                    "split": split,
                    "row": idx,
                    "image_id": taken.column(C.IMAGE_ID).to_pylist(),
                    "label": labels[idx],
                    "degradation": [str(d) for d in degradation],
                    "ts_us": ts_us[idx],
                }
            )
        )
    if not frames:
        raise ValueError(
            f"{dataset_dir}: no labelled row in {', '.join(names)} ({skipped}); evaluation needs rows "
            "whose label is known: give other eval_splits, or wait for the production labels"
        )
    table = pa.concat_tables([t.cast(tables[0].schema) for t in tables])
    return Rows(table, pd.concat(frames, ignore_index=True), skipped)


# ----------------------------------------------------------------------------- 2. the models


@dataclass(frozen=True)
class ModelRef:
    """A model folder to run: where it is on disk, where it came from, its version."""

    role: str  # "candidate" or "production"
    path: Path
    uri: str
    version: str
    registry_version: str = ""  # the registry's version name ("v3"), production only


def model_ref(role: str, path: str | Path, uri: str = "", registry_version: str = "") -> ModelRef:
    """A checked model folder (files present, training summary readable)."""
    check_model_folder(path)
    return ModelRef(
        role, Path(path), uri or str(path), str(load_summary(path)[MODEL_VERSION]), registry_version
    )


def production_model(cfg: EvaluateConfig, workdir: Path) -> tuple[ModelRef | None, str]:
    """The registry's production model (downloaded into ``workdir`` when remote) and a sentence saying which.

    None (and why) when ``registry_uri`` is empty or the registry has no production version yet.
    """
    if not cfg.registry_uri:
        return None, "no registry (registry_uri is empty): there is no production model to compare with"
    from components.common import registry

    reg = registry.open_registry(cfg.registry_uri, cfg.registered_model)
    version = reg.production()
    if version is None:
        return None, (
            f"the registry {cfg.registry_uri} has no production version of {cfg.registered_model!r} yet"
        )
    uri = version.model_uri
    if storage.is_remote(uri):
        local = workdir / "production-model"
        copied = storage.download_prefix(uri, local)
        if not copied.files:
            raise ValueError(
                f"registry {cfg.registry_uri}: production version {version.version} of "
                f"{cfg.registered_model!r} points at {uri}, which holds no file; roll back or promote "
                "another version"
            )
    else:
        local = Path(uri)
        if not local.is_dir():
            raise ValueError(
                f"registry {cfg.registry_uri}: production version {version.version} of "
                f"{cfg.registered_model!r} points at {uri}, which is not a folder here; roll back or "
                "promote another version"
            )
    ref = model_ref("production", local, uri, version.version)
    return ref, (
        f"production: version {version.version} of {cfg.registered_model!r} in {cfg.registry_uri} "
        f"(model_version {ref.version})"
    )


def pick_device(model_dir: str | Path, cfg: EvaluateConfig) -> str:
    """The device to run on, after failing at once where a GPU is expected and CUDA is missing (as embed)."""
    device = cfg.device
    if wants_cuda(device):
        why = f"device={device}"
    elif trained_for_gpu(model_dir):
        why = "a model trained with profile=cluster"
    else:
        return device
    if not require_cuda(STAGE, why, cfg.allow_cpu) and wants_cuda(device):
        device = "cpu"
    return device


@dataclass
class ModelRun:
    """One model's outputs on the rows: probabilities, which rows decoded, the image features."""

    probabilities: np.ndarray  # [N, K] float32 (NaN rows: did not decode)
    decoded: np.ndarray  # [N] bool
    features: np.ndarray  # [N, 3] float32: brightness, contrast, sharpness (NaN: did not decode)
    failures: list[dict[str, Any]]
    seconds: float


def predict(ref: ModelRef, rows: Rows, cfg: EvaluateConfig, progress: bool = True) -> ModelRun:
    """Run one model folder on every row, in batches, exactly as the embed stage does."""
    import torch
    from tqdm.auto import tqdm

    from components.common.inference import decode_batch, load_model
    from components.common.preprocess import eval_transform
    from components.common.threads import default_threads

    t0 = time.perf_counter()
    lm = load_model(ref.path, device=pick_device(ref.path, cfg), precision=cfg.precision)
    if lm.device.type == "cpu":
        torch.set_num_threads(cfg.threads or default_threads())
    transform = eval_transform(lm.geometry)
    n = rows.table.num_rows
    probs = np.full((n, schema.NUM_CLASSES), np.nan, np.float32)
    feats = np.full((n, len(FEATURES)), np.nan, np.float32)
    decoded = np.zeros(n, bool)
    failures: list[dict[str, Any]] = []
    bar = tqdm(total=n, desc=f"evaluate {ref.role}", unit="img", disable=not progress)
    for b0 in range(0, n, cfg.eval_batch_size):
        part = rows.table.slice(b0, cfg.eval_batch_size)
        batch = decode_batch(part, "evaluated rows", b0, transform)
        bad = {int(f["row"]) for f in batch.failures}
        ok = np.array([b0 + i for i in range(part.num_rows) if b0 + i not in bad], dtype=np.int64)
        for f in batch.failures:
            r = rows.frame.iloc[int(f["row"])]
            failures.append(
                {"split": r["split"], "row": int(r["row"]), "image_id": f["image_id"], "error": f["error"]}
            )
        if batch.pixel_values is not None and batch.features is not None:
            with torch.inference_mode():
                logits, _ = lm.forward(batch.pixel_values)
            probs[ok] = torch.softmax(logits.cpu(), dim=-1).numpy()
            feats[ok] = np.stack(batch.features, axis=1)
            decoded[ok] = True
        bar.update(part.num_rows)
    bar.close()
    return ModelRun(probs, decoded, feats, failures, time.perf_counter() - t0)


# ------------------------------------------------------------------------------------- 4. drift


@dataclass(frozen=True)
class DriftSlices:
    """Which production rows fall in flagged windows, and how the windows were matched with the rows."""

    uri: str
    flagged_windows: list[tuple[str, str]]  # (start, end) ISO 8601, UTC
    shift_seconds: float
    alignment: str  # in words: how the shift was found
    mismatched_rows: int  # auto alignment: rows whose window count did not match (0 = exact)


def read_drift_table(uri: str) -> pd.DataFrame:
    """The drift table or drift history at ``uri`` (a Parquet file, or a local folder holding one)."""
    path = Path(uri)
    if not storage.is_remote(uri) and path.is_dir():
        found = sorted(p for p in path.rglob("*.parquet") if p.is_file())
        if len(found) != 1:
            raise ValueError(
                f"drift_uri {uri!r}: a folder holding {len(found)} Parquet files "
                f"({', '.join(p.name for p in found[:5]) or 'none'}); give the drift table or history file itself"
            )
        uri = str(found[0])
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError as e:
        raise ValueError(
            f"drift_uri {uri!r}: no such file ({e}); give the drift stage's drift table or its history_uri, "
            "or '' to evaluate without drift slices"
        ) from e
    try:
        table = pd.read_parquet(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a foreign file
        raise ValueError(
            f"drift_uri {uri!r}: not a readable Parquet table ({type(e).__name__}: {e}); give the drift "
            "stage's drift table or history"
        ) from e
    schema.require_columns(table.columns, DRIFT_COLUMNS, f"drift_uri {uri!r} (the drift table)")
    for col in ("window_start", "window_end"):
        table[col] = pd.to_datetime(table[col], utc=True)
    return table


def _us(values: pd.Series) -> np.ndarray:
    return np.asarray(
        values.dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype("int64"), dtype=np.int64
    )


def auto_shift(ts_us: np.ndarray, table: pd.DataFrame) -> tuple[float, int]:
    """The shift (seconds) whose per-window row counts best match the drift table's ``n_rows``.

    The prepare stage adds one offset to every timestamp (the newest production row lands on the
    time it ran), so the data set's rows and the drift table's windows are on two clocks. Each
    non-empty window is tried as the one holding the newest row; within it the shift is swept over
    one window length, every row crossing into the next window being one event (O(N log N) per
    candidate). Returns the middle of the best interval of shifts and the rows mismatched there
    (0: the counts match exactly).
    """
    if "n_rows" not in table.columns:
        raise ValueError(
            "drift_time_shift 'auto' needs the drift table's n_rows column; give drift_time_shift in "
            "seconds (the prepare stage's manifest.json has time_shift_seconds)"
        )
    starts, ends = _us(table["window_start"]), _us(table["window_end"])
    lengths = ends - starts
    w = int(pd.Series(lengths).mode().iloc[0])
    same = lengths == w
    starts, n_rows = starts[same], np.asarray(table["n_rows"], dtype=np.int64)[same]
    origin = int(starts.min())
    k_table = (starts - origin) // w
    expected: dict[int, int] = {}
    for k, n in zip(k_table.tolist(), n_rows.tolist(), strict=True):
        expected[k] = expected.get(k, 0) + n  # a history may hold a window twice (other runs)
    t = np.sort(ts_us.astype(np.int64))
    t_max = int(t[-1])
    best = (math.inf, 0.0)
    for k_anchor in sorted((k for k, n in expected.items() if n > 0), reverse=True)[:400]:
        a = origin + k_anchor * w - t_max  # the shift putting the newest row at the anchor's start
        k = (t + a - origin) // w
        lo, hi = int(k.min()), int(k.max()) + 2
        counts = np.bincount(k - lo, minlength=hi - lo).astype(np.int64)
        want = np.array([expected.get(j, 0) for j in range(lo, hi)], dtype=np.int64)
        outside = sum(n for j, n in expected.items() if not lo <= j < hi)
        mismatch = int(np.abs(counts - want).sum()) + outside
        # row i moves to window k_i + 1 when the shift reaches its next boundary
        events = origin + (k + 1) * w - t
        order = np.argsort(events, kind="stable")
        ev, kk = events[order], (k - lo)[order]
        prev = a
        for e, j in zip(ev.tolist(), kk.tolist(), strict=True):
            if e > prev and mismatch < best[0]:
                best = (mismatch, (prev + e) / 2)
            mismatch -= abs(counts[j] - want[j]) + abs(counts[j + 1] - want[j + 1])
            counts[j] -= 1
            counts[j + 1] += 1
            mismatch += abs(counts[j] - want[j]) + abs(counts[j + 1] - want[j + 1])
            prev = e
        if a + w > prev and mismatch < best[0]:
            best = (mismatch, (prev + a + w) / 2)
    return best[1] / US_PER_S, int(best[0])


def drifted_rows(
    frame: pd.DataFrame, dataset_ts_us: np.ndarray, cfg: EvaluateConfig
) -> tuple[np.ndarray, DriftSlices]:
    """Whether each production row of ``frame`` is inside a flagged window (False elsewhere)."""
    table = read_drift_table(cfg.drift_uri)
    shift = cfg.time_shift
    if shift is None:
        shift, mismatched = auto_shift(dataset_ts_us, table)
        how = f"auto: the shift {shift:.0f} s matches the drift table's row counts per window " + (
            "exactly" if not mismatched else f"with {mismatched} row(s) off"
        )
    else:
        mismatched = 0
        how = f"given: drift_time_shift={cfg.drift_time_shift}"
    flagged = table[table["flagged"].astype(bool)]
    starts, ends = _us(flagged["window_start"]), _us(flagged["window_end"])
    t = frame["ts_us"].to_numpy(np.int64) + int(round(shift * US_PER_S))
    inside = np.zeros(len(frame), bool)
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        inside |= (t >= s) & (t < e)
    inside &= (frame["split"] == schema.PRODUCTION).to_numpy()
    windows = sorted(
        {
            (a.isoformat(), b.isoformat())
            for a, b in zip(flagged["window_start"], flagged["window_end"], strict=True)
        }
    )
    return inside, DriftSlices(cfg.drift_uri, windows, float(shift), how, mismatched)


# -------------------------------------------------------------------------------- 5. statistics


def z_value(level: float) -> float:
    """The two-sided normal quantile of a confidence ``level`` (1.96 at 0.95)."""
    return NormalDist().inv_cdf(1 - (1 - level) / 2)


def wilson(correct: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``correct / n`` (NaN, NaN when ``n`` is 0)."""
    if n <= 0:
        return (math.nan, math.nan)
    z = z_value(level)
    p = correct / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    lo = 0.0 if correct == 0 else max(0.0, centre - half)  # exact at the ends (no rounding residue)
    hi = 1.0 if correct == n else min(1.0, centre + half)
    return (lo, hi)


def paired_difference(
    cand: np.ndarray, prod: np.ndarray, level: float, resamples: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """Accuracy difference candidate - production on the same rows and its paired bootstrap interval.

    Each row's difference is -1, 0 or +1, so a resample of the rows is a multinomial draw of those
    three counts: the bootstrap costs three numbers per resample whatever the slice's size.
    """
    n = len(cand)
    if n == 0:
        return (math.nan, math.nan, math.nan)
    d = cand.astype(np.int8) - prod.astype(np.int8)
    up, down = int((d > 0).sum()), int((d < 0).sum())
    estimate = (up - down) / n
    draws = rng.multinomial(n, [up / n, down / n, max(0.0, 1 - (up + down) / n)], size=resamples)
    diffs = (draws[:, 0] - draws[:, 1]) / n
    alpha = (1 - level) / 2
    return (estimate, float(np.quantile(diffs, alpha)), float(np.quantile(diffs, 1 - alpha)))


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error and the reliability diagram's bins of one model on some rows."""

    ece: float
    bin_edges: list[float]
    bin_rows: list[int]
    bin_confidence: list[float | None]  # mean top probability of the bin's rows
    bin_accuracy: list[float | None]


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int) -> Calibration:
    """ECE = sum over equal-width confidence bins of (rows in bin / rows) x |accuracy - mean confidence|."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    n = len(confidence)
    rows: list[int] = []
    conf: list[float | None] = []
    acc: list[float | None] = []
    ece = 0.0
    for b in range(bins):
        m = which == b
        k = int(m.sum())
        rows.append(k)
        if k:
            c, a = float(confidence[m].mean()), float(correct[m].mean())
            ece += k / n * abs(a - c)
            conf.append(c)
            acc.append(a)
        else:
            conf.append(None)
            acc.append(None)
    return Calibration(ece if n else math.nan, [float(e) for e in edges], rows, conf, acc)


# ---------------------------------------------------------------------------------------- slices


@dataclass(frozen=True)
class ModelFigures:
    """One model's accuracy on a slice with its Wilson interval."""

    correct: int
    accuracy: float
    low: float
    high: float


@dataclass(frozen=True)
class SliceResult:
    """One slice: its rows, both models' accuracy, the paired difference, and the gate's view of it."""

    kind: str
    name: str
    rows: int
    candidate: ModelFigures
    production: ModelFigures | None
    difference: float | None = None  # candidate - production
    diff_low: float | None = None
    diff_high: float | None = None
    checked: bool = False  # large enough for the gate (overall: always)
    passed: bool | None = None  # the gate's verdict on it (None: not checked / no production model)

    @property
    def label(self) -> str:
        """``kind=name`` ("overall" for the whole set)."""
        return OVERALL if self.kind == OVERALL else f"{self.kind}={self.name}"


def feature_edges(values: np.ndarray, reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner quantile edges of one image feature (from the reference rows, e.g. validation)."""
    ref = values[reference & np.isfinite(values)]
    if not ref.size:
        ref = values[np.isfinite(values)]
    return np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1])) if ref.size else np.array([])


def slice_masks(frame: pd.DataFrame, cfg: EvaluateConfig) -> list[tuple[str, str, np.ndarray]]:
    """Every slice as (kind, name, row mask), in the report's order; empty slices left out."""
    out: list[tuple[str, str, np.ndarray]] = [(OVERALL, "all rows", np.ones(len(frame), bool))]
    for split in dict.fromkeys(frame["split"]):
        out.append((SPLIT, str(split), (frame["split"] == split).to_numpy()))
    for k, name in enumerate(schema.CLASS_NAMES):
        out.append((CLASS, name, (frame["label"] == k).to_numpy()))
    known = frame["degradation"].astype(str)
    for kind in sorted(v for v in set(known) if v):
        out.append((DEGRADATION, kind, (known == kind).to_numpy()))
    reference = (frame["split"] == schema.VALIDATION).to_numpy()
    for feat in FEATURES:
        values = frame[feat].to_numpy(np.float64)
        edges = feature_edges(values, reference, cfg.feature_bins)
        bounds = [-math.inf, *edges.tolist(), math.inf]
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            name = f"{i + 1}/{len(bounds) - 1} " + (
                f"< {hi:.3g}"
                if lo == -math.inf
                else f">= {lo:.3g}"
                if hi == math.inf
                else f"[{lo:.3g}, {hi:.3g})"
            )
            out.append((feat, name, (values >= lo) & (values < hi)))
    if "drifted" in frame.columns:
        prod = (frame["split"] == schema.PRODUCTION).to_numpy()
        drifted = frame["drifted"].to_numpy(bool)
        out.append((DRIFT, DRIFTED, prod & drifted))
        out.append((DRIFT, NOT_DRIFTED, prod & ~drifted))
    return [(k, n, m) for k, n, m in out if m.any()]


def _figures(correct: np.ndarray, level: float) -> ModelFigures:
    k, n = int(correct.sum()), len(correct)
    lo, hi = wilson(k, n, level)
    return ModelFigures(k, k / n if n else math.nan, lo, hi)


def slice_results(
    frame: pd.DataFrame, cand_correct: np.ndarray, prod_correct: np.ndarray | None, cfg: EvaluateConfig
) -> list[SliceResult]:
    """Every slice's figures for both models on the same rows (production None: candidate only)."""
    out = []
    for i, (kind, name, mask) in enumerate(slice_masks(frame, cfg)):
        c = cand_correct[mask]
        checked = kind == OVERALL or len(c) >= cfg.gate_min_slice_rows
        if prod_correct is None:
            out.append(
                SliceResult(kind, name, len(c), _figures(c, cfg.confidence_level), None, checked=checked)
            )
            continue
        p = prod_correct[mask]
        rng = np.random.default_rng([cfg.seed, i])
        est, lo, hi = paired_difference(c, p, cfg.confidence_level, cfg.bootstrap_resamples, rng)
        out.append(
            SliceResult(
                kind,
                name,
                len(c),
                _figures(c, cfg.confidence_level),
                _figures(p, cfg.confidence_level),
                est,
                lo,
                hi,
                checked,
            )
        )
    return out


# ------------------------------------------------------------------------------------------- gate


@dataclass(frozen=True)
class GateResult:
    """The decision, one reason per rule, and the slices' verdicts."""

    decision: str  # PROMOTE or CANDIDATE
    reasons: list[str]
    slices: list[SliceResult]  # with checked / passed set

    @property
    def reasons_text(self) -> str:
        """The reasons on one line ("; "-joined), the component's ``reasons`` output."""
        return "; ".join(self.reasons)


def _fmt_diff(s: SliceResult) -> str:
    return f"{s.difference:+.4f} [{s.diff_low:+.4f}, {s.diff_high:+.4f}]"


def gate(
    slices: Sequence[SliceResult], has_production: bool, cfg: EvaluateConfig, why_none: str = ""
) -> GateResult:
    """The gate: promote, or keep the candidate as a candidate, with one reason per rule.

    Promote only when the candidate is not worse overall, nor on any large slice, beyond
    ``gate_margin``, and (``require_better_on_drift``) better on the drifted rows when drift slices exist.

    "Not worse" is judged on the difference's estimate (``gate_use_ci``: on its interval's lower
    bound, i.e. non-inferiority shown); "better" is an estimate above 0 (lower bound above 0).
    Without a production model the candidate is promoted and the reason says so.
    """
    if not has_production:
        return GateResult(
            PROMOTE,
            [
                f"promoted: {why_none or 'there is no production model'}; the candidate becomes the first production version"
            ],
            list(slices),
        )
    margin = cfg.gate_margin
    judged = "the interval's lower bound" if cfg.gate_use_ci else "the estimate"

    def not_worse(s: SliceResult) -> bool:
        value = s.diff_low if cfg.gate_use_ci else s.difference
        return value is not None and value >= -margin - 1e-12

    out: list[SliceResult] = []
    for s in slices:
        if s.checked:
            out.append(SliceResult(**{**asdict_shallow(s), "passed": not_worse(s)}))
        else:
            out.append(s)
    reasons: list[str] = []
    overall = next(s for s in out if s.kind == OVERALL)
    ok_overall = bool(overall.passed)
    reasons.append(
        f"overall ({overall.rows} rows): difference {_fmt_diff(overall)} "
        + (
            f"is not worse than -{margin:g} ({judged})"
            if ok_overall
            else f"is worse than -{margin:g} ({judged})"
        )
    )
    large = [s for s in out if s.checked and s.kind != OVERALL]
    worse = [s for s in large if not s.passed]
    if worse:
        reasons.append(
            f"worse beyond {margin:g} on {len(worse)} of {len(large)} slices with >= {cfg.gate_min_slice_rows} "
            "rows: "
            + ", ".join(f"{s.label} {s.difference:+.4f} ({s.rows} rows)" for s in worse[:8])
            + (f" and {len(worse) - 8} more" if len(worse) > 8 else "")
        )
    else:
        reasons.append(
            f"not worse beyond {margin:g} on any of the {len(large)} slices with >= {cfg.gate_min_slice_rows} rows"
        )
    ok_drift = True
    drifted = next((s for s in out if s.kind == DRIFT and s.name == DRIFTED), None)
    if not cfg.require_better_on_drift:
        reasons.append("better on drift: not required (require_better_on_drift=False)")
    elif drifted is None:
        reasons.append(
            "better on drift: no drifted rows (no drift_uri, or no flagged window covers a row): rule not applied"
        )
    else:
        value = drifted.diff_low if cfg.gate_use_ci else drifted.difference
        ok_drift = value is not None and value > 0
        reasons.append(
            f"drifted rows ({drifted.rows}): difference {_fmt_diff(drifted)} "
            + ("is better than production" if ok_drift else "is NOT better than production")
            + f" ({judged} {'>' if ok_drift else '<='} 0)"
        )
    decision = PROMOTE if ok_overall and not worse and ok_drift else CANDIDATE
    head = "promoted" if decision == PROMOTE else "kept as a candidate"
    return GateResult(decision, [f"{head}: {reasons[0]}", *reasons[1:]], out)


def asdict_shallow(s: SliceResult) -> dict[str, Any]:
    """A SliceResult's fields without converting the nested figures (for a copy with changes)."""
    return {f: getattr(s, f) for f in s.__dataclass_fields__}


# ------------------------------------------------------------------------------------------ stage


@dataclass
class EvaluateResult:
    """What :func:`evaluate` found and wrote."""

    decision: str
    reasons: list[str]
    metrics: dict[str, float]
    evaluation: dict[str, Any]
    report_path: Path | None = None

    @property
    def reasons_text(self) -> str:
        """The reasons on one line ("; "-joined)."""
        return "; ".join(self.reasons)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars -> Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def evaluation_json(
    result: GateResult,
    cand: ModelRef,
    prod: ModelRef | None,
    calib: dict[str, Calibration],
    rows: Rows,
    failures: list[dict[str, Any]],
    drift: DriftSlices | None,
    cfg: EvaluateConfig,
    notes: list[str],
) -> dict[str, Any]:
    """Everything the stage found, as one JSON-ready dict (the ``evaluation`` artifact)."""
    return _clean(
        {
            "decision": result.decision,
            "reasons": result.reasons,
            "candidate": {"uri": cand.uri, "model_version": cand.version},
            "production": None
            if prod is None
            else {"uri": prod.uri, "model_version": prod.version, "registry_version": prod.registry_version},
            "rows": {
                "evaluated": int(len(rows.frame)),
                "per_split": {
                    str(k): int(v) for k, v in rows.frame["split"].value_counts(sort=False).items()
                },
            },
            "skipped": {**rows.skipped, **({"image did not decode": len(failures)} if failures else {})},
            "failures": failures[:100],
            "drift": None if drift is None else asdict(drift),
            "slices": [
                {
                    "kind": s.kind,
                    "name": s.name,
                    "rows": s.rows,
                    "candidate": asdict(s.candidate),
                    "production": None if s.production is None else asdict(s.production),
                    "difference": s.difference,
                    "difference_ci": None if s.difference is None else [s.diff_low, s.diff_high],
                    "checked_by_gate": s.checked,
                    "passed": s.passed,
                }
                for s in result.slices
            ],
            "calibration": {role: asdict(c) for role, c in calib.items()},
            "notes": notes,
            "settings": asdict(cfg),
        }
    )


def evaluate(
    candidate_dir: str | Path,
    dataset_dir: str | Path,
    report_path: str | Path | None,
    evaluation_path: str | Path | None,
    config: EvaluateConfig | None = None,
    candidate_uri: str = "",
    progress: bool = True,
) -> EvaluateResult:
    """Evaluate the candidate model folder against the registry's production model; write the outputs.

    ``report_path`` / ``evaluation_path`` None: that output is not written. ``candidate_uri``: where
    the candidate lives (its artifact URI in a pipeline), shown in the report.
    """
    cfg = config or EvaluateConfig()
    t0 = time.perf_counter()
    cand = model_ref("candidate", candidate_dir, candidate_uri)
    rows = select_rows(dataset_dir, cfg)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="evaluate-") as work:
        prod, why = production_model(cfg, Path(work))
        notes.append(why)
        cand_run = predict(cand, rows, cfg, progress)
        prod_run = predict(prod, rows, cfg, progress) if prod is not None else None
    failures = cand_run.failures
    keep = cand_run.decoded & (prod_run.decoded if prod_run is not None else True)
    frame = rows.frame.copy()
    for j, feat in enumerate(FEATURES):
        frame[feat] = cand_run.features[:, j]
    drift: DriftSlices | None = None
    if cfg.drift_uri:
        prod_ts = _production_times(dataset_dir)
        inside, drift = drifted_rows(frame, prod_ts, cfg)
        frame["drifted"] = inside
        notes.append(
            f"drift: {len(drift.flagged_windows)} flagged window(s) in {cfg.drift_uri}; "
            f"{int(inside.sum())} evaluated production row(s) inside them ({drift.alignment})"
        )
    frame = frame[keep].reset_index(drop=True)
    labels = frame["label"].to_numpy(np.int64)
    cand_probs = cand_run.probabilities[keep]
    cand_correct = cand_probs.argmax(axis=1) == labels
    prod_correct = None
    calib = {"candidate": calibration(cand_probs.max(axis=1), cand_correct, cfg.calibration_bins)}
    if prod_run is not None:
        prod_probs = prod_run.probabilities[keep]
        prod_correct = prod_probs.argmax(axis=1) == labels
        calib["production"] = calibration(prod_probs.max(axis=1), prod_correct, cfg.calibration_bins)
    slices = slice_results(frame, cand_correct, prod_correct, cfg)
    result = gate(slices, prod is not None, cfg, why)
    evaluation = evaluation_json(result, cand, prod, calib, rows, failures, drift, cfg, notes)
    metrics = overall_metrics(result, calib)
    if evaluation_path is not None:
        write_text_atomic(evaluation_path, json.dumps(evaluation, indent=2, allow_nan=False) + "\n")
    if report_path is not None:
        from components.evaluate.report import render

        write_text_atomic(report_path, render(evaluation))
    o = next(s for s in result.slices if s.kind == OVERALL)
    print(
        f"evaluate: {o.rows} rows, candidate {cand.version} accuracy {o.candidate.accuracy:.4f}"
        + (
            f", production {prod.version} accuracy {o.production.accuracy:.4f} (difference {o.difference:+.4f})"
            if prod is not None and o.production is not None and o.difference is not None
            else ", no production model"
        )
        + f", {len(slices)} slices, decision {result.decision}, {time.perf_counter() - t0:.1f} s"
    )
    return EvaluateResult(
        result.decision, result.reasons, metrics, evaluation, Path(report_path) if report_path else None
    )


def _production_times(dataset_dir: str | Path) -> np.ndarray:
    """Every production timestamp of the data set (labelled or not: the drift table counted them all)."""
    data = load_splits(
        dataset_dir, [schema.PRODUCTION], (C.PREDICTION_TS,), "", unlabelled_splits=(schema.PRODUCTION,)
    )
    ts = data[schema.PRODUCTION].with_format("arrow")[:].column(C.PREDICTION_TS)
    return np.asarray(pc.cast(pc.cast(ts, schema.TIMESTAMP_TYPE), pa.int64()).to_numpy(zero_copy_only=False))


def overall_metrics(result: GateResult, calib: dict[str, Calibration]) -> dict[str, float]:
    """The overall figures for the KFP UI (no NaN: production figures only when there is one)."""
    o = next(s for s in result.slices if s.kind == OVERALL)
    m = {
        "rows": float(o.rows),
        "candidate_accuracy": o.candidate.accuracy,
        "candidate_ece": calib["candidate"].ece,
        "slices_checked": float(sum(s.checked for s in result.slices)),
        "slices_failed": float(sum(s.passed is False for s in result.slices)),
        "promote": 1.0 if result.decision == PROMOTE else 0.0,
    }
    if o.production is not None and o.difference is not None:
        m.update(
            production_accuracy=o.production.accuracy,
            production_ece=calib["production"].ece,
            accuracy_difference=o.difference,
            accuracy_difference_low=float(o.diff_low if o.diff_low is not None else math.nan),
            accuracy_difference_high=float(o.diff_high if o.diff_high is not None else math.nan),
        )
    return {k: float(v) for k, v in m.items() if math.isfinite(float(v))}


def summary_lines(result: EvaluateResult) -> list[str]:
    """The decision and its reasons, one line each (the command line's output)."""
    return [f"decision: {result.decision}", *(f"- {r}" for r in result.reasons)]
