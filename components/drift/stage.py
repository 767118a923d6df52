"""The drift stage: prepared folders in; HTML report, metrics, drift table and alert out."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from components.common import schema
from components.drift import io as dio
from components.drift.detectors import DETECTOR_NAMES, CalibratedDrift, Sample, default_detectors
from components.drift.io import C, Rejected, Reservoir, Rows
from components.drift.view import BASELINE, PRODUCTION, PROJECTIONS

BASELINE_ENVIRONMENTS = (schema.TRAINING, schema.VALIDATION)


@dataclass(frozen=True)
class DriftConfig:
    baseline_environment: str = schema.TRAINING
    window: str = "daily"
    false_alarm_rate: float = 0.01
    n_resamples: int = 1000
    min_window_rows: int = 20
    max_window_rows: int = 1000  # detectors run on a uniform sample of at most this many rows
    reference_size: int = 2000
    calibration_size: int = 3000
    projection: str = "umap"  # or "pca" for a quick look
    umap_sample: int = 3000
    umap_epochs: int = 200
    umap_window: str = ""  # start of one window (e.g. 2026-11-20) or "" for the whole range
    positive_class: str = schema.CLASS_NAMES[0]
    min_cluster_size: int = 15
    thumbnails: bool = True
    detectors: str = ",".join(DETECTOR_NAMES)  # comma-separated subset
    seed: int = 0

    @property
    def detector_names(self) -> list[str]:
        return [d.strip() for d in self.detectors.split(",") if d.strip()]

    def __post_init__(self) -> None:
        default_detectors(0, self.detector_names)  # raises on unknown names
        if self.baseline_environment not in BASELINE_ENVIRONMENTS:
            raise ValueError(
                f"baseline_environment={self.baseline_environment!r}: expected one of "
                f"{', '.join(BASELINE_ENVIRONMENTS)}"
            )
        if self.window not in dio.WINDOWS:
            raise ValueError(f"window={self.window!r}: expected one of {', '.join(dio.WINDOWS)}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"projection={self.projection!r}: expected one of {', '.join(PROJECTIONS)}")
        if self.positive_class not in schema.CLASS_NAMES:
            raise ValueError(
                f"positive_class={self.positive_class!r}: expected one of {', '.join(schema.CLASS_NAMES)}"
            )
        for name in (
            "min_window_rows",
            "max_window_rows",
            "reference_size",
            "calibration_size",
            "umap_sample",
        ):
            if getattr(self, name) < 2:
                raise ValueError(f"{name}={getattr(self, name)}: expected at least 2")
        if self.max_window_rows < self.min_window_rows:
            raise ValueError(
                f"max_window_rows={self.max_window_rows} is below min_window_rows={self.min_window_rows}"
            )
        if self.umap_window:
            try:
                pd.Timestamp(self.umap_window)
            except ValueError as err:
                raise ValueError(
                    f"umap_window={self.umap_window!r}: expected a date such as 2026-11-20"
                ) from err


@dataclass
class DriftResult:
    table: pd.DataFrame
    metrics: dict[str, float]
    alert: bool
    summary: list[str]
    rejected: Rejected


def _file(folder: str | Path, env: str) -> Path:
    return Path(folder) / schema.prepared_file(env)


def _sample_file(
    path: Path, env: str, dim: int, cap: int, rng, rejected: Rejected
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


def _to_sample(rows: Rows) -> Sample:
    return Sample(rows.vectors, rows.probabilities, rows.scores)


def _text(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, "", dtype=object) if values is None else values.astype(object)


def run_drift(
    prepared: str | Path,
    baseline: str | Path,
    report_path: str | Path | None,
    table_path: str | Path | None,
    config: DriftConfig | None = None,
) -> DriftResult:
    """Compare production windows against the baseline; write the report and the drift table."""
    cfg = config or DriftConfig()
    t0 = time.time()
    rng = np.random.default_rng(cfg.seed)
    prod_path = _file(prepared, schema.PRODUCTION)
    base_path = _file(baseline, cfg.baseline_environment)
    for p, what in ((prod_path, "production rows"), (base_path, f"{cfg.baseline_environment} baseline rows")):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing; the drift stage needs the {what} there")
    dim = dio.dominant_dim(base_path)
    if dim == 0:
        raise ValueError(f"{base_path}: no rows with an {C.IMAGE_VECTOR}; the baseline is empty")
    prod_dim = dio.dominant_dim(prod_path)
    if prod_dim and prod_dim != dim:
        raise ValueError(
            f"{prod_path}: {C.IMAGE_VECTOR} has {prod_dim} values, the baseline {base_path} has {dim}; "
            "baseline and production must come from the same model"
        )
    rejected = Rejected()

    # Calibration data: validation rows when present (and not the baseline), else held-out baseline rows.
    cal_path = None
    if cfg.baseline_environment != schema.VALIDATION:
        for folder in (baseline, prepared):
            if _file(folder, schema.VALIDATION).is_file():
                cal_path = _file(folder, schema.VALIDATION)
                break
    if cal_path is not None:
        ref_rows, base_sum, base_n = _sample_file(
            base_path, cfg.baseline_environment, dim, cfg.reference_size, rng, rejected
        )
        cal_rows, _, _ = _sample_file(cal_path, schema.VALIDATION, dim, cfg.calibration_size, rng, rejected)
        calibration_source = f"validation rows ({cal_path})"
    else:
        both, base_sum, base_n = _sample_file(
            base_path, cfg.baseline_environment, dim, cfg.reference_size + cfg.calibration_size, rng, rejected
        )
        if both is None or len(both) < 2 * cfg.min_window_rows:
            raise ValueError(
                f"{base_path}: {0 if both is None else len(both)} usable rows; holding out calibration data "
                f"needs at least {2 * cfg.min_window_rows}"
            )
        perm = rng.permutation(len(both))
        n_ref = min(cfg.reference_size, len(both) // 2)
        ref_rows, cal_rows = both.take(np.sort(perm[:n_ref])), both.take(np.sort(perm[n_ref:]))
        calibration_source = f"baseline rows held out from the reference ({len(cal_rows)} rows)"
    if ref_rows is None or cal_rows is None:
        raise ValueError(f"{base_path}: no usable rows (see the rejected-row reasons)")

    cal = CalibratedDrift(
        detectors=default_detectors(cfg.seed, cfg.detector_names),
        false_alarm_rate=cfg.false_alarm_rate,
        n_resamples=cfg.n_resamples,
        min_rows=cfg.min_window_rows,
        seed=cfg.seed,
    ).fit(_to_sample(ref_rows), _to_sample(cal_rows))
    names = cal.names
    base_centroid = base_sum / max(base_n, 1)

    # One chunked pass over production: per-window sums and a bounded sample per window.
    sums: dict[int, np.ndarray] = {}
    stats: dict[int, list[float]] = {}  # n, correct, score sum
    samples: dict[int, Reservoir] = {}
    for rows in tqdm(
        dio.iter_rows(prod_path, schema.PRODUCTION, dim, rejected), desc="production", unit="chunk"
    ):
        keys = dio.window_keys(rows.ts, cfg.window)
        pred = rows.meta.get(C.PREDICTION_LABEL)
        act = rows.meta.get(C.ACTUAL_LABEL)
        for key in np.unique(keys):
            m = np.flatnonzero(keys == key)
            k = int(key)
            if k not in sums:
                sums[k] = np.zeros(dim, dtype=np.float64)
                stats[k] = [0.0, 0.0, 0.0]
                samples[k] = Reservoir(cfg.max_window_rows, np.random.default_rng([cfg.seed, k & 0xFFFFFFFF]))
            sums[k] += rows.vectors[m].sum(axis=0, dtype=np.float64)
            stats[k][0] += len(m)
            stats[k][1] += (
                float((pred[m] == act[m]).sum()) if pred is not None and act is not None else np.nan
            )
            stats[k][2] += float(rows.scores[m].sum(dtype=np.float64))
            samples[k].add(rows.take(m))
    if not sums:
        raise ValueError(f"{prod_path}: no usable production rows (rejected: {rejected.counts() or 'none'})")

    records = []
    all_keys = range(min(sums), max(sums) + 1)
    for k in tqdm(all_keys, desc="windows", unit="window"):
        start = pd.Timestamp(dio.window_start_us(k, cfg.window), unit="us", tz="UTC")
        end = start + pd.Timedelta(microseconds=dio.WINDOWS[cfg.window])
        rec: dict = {"window_start": start, "window_end": end}
        if k not in sums:
            rec.update(n_rows=0, status="empty", accuracy=np.nan, mean_score=np.nan, centroid_distance=np.nan)
        else:
            n, correct, ssum = stats[k]
            centroid = sums[k] / n
            rec.update(
                n_rows=int(n),
                accuracy=correct / n,
                mean_score=ssum / n,
                centroid_distance=float(np.linalg.norm(centroid - base_centroid)),
            )
            verdict = cal.test(_to_sample(samples[k].rows))
            rec["status"] = verdict.status
            for r in verdict.detectors:
                rec[f"{r.name}_score"] = r.score
                rec[f"{r.name}_threshold"] = r.threshold
                rec[f"{r.name}_p_value"] = r.p_value
                rec[f"{r.name}_fired"] = r.drifted
        records.append(rec)
    table = pd.DataFrame.from_records(records)
    for name in names:
        for suffix in ("score", "threshold", "p_value"):
            col = f"{name}_{suffix}"
            table[col] = table[col].astype(float) if col in table else np.nan
        col = f"{name}_fired"
        table[col] = table[col].eq(True) if col in table else False
    table["flagged"] = (table["status"] == "ok") & table[[f"{n}_fired" for n in names]].any(axis=1)
    table["fired"] = [
        ", ".join(n for n in names if row[f"{n}_fired"])
        for _, row in table[[f"{n}_fired" for n in names]].iterrows()
    ]
    table["window"] = cfg.window
    family = {n_: cal.null(n_).family_p for n_ in sorted(cal._nulls)}

    ok = table[table["status"] == "ok"]
    flagged = table[table["flagged"]]
    metrics: dict[str, float] = {
        "windows": float(len(table)),
        "windows_tested": float(len(ok)),
        "windows_flagged": float(len(flagged)),
        "windows_too_few_rows": float((table["status"] == "too_few_rows").sum()),
        "windows_empty": float((table["status"] == "empty").sum()),
        "max_centroid_distance": float(ok["centroid_distance"].max()) if len(ok) else 0.0,
        "false_alarm_rate": float(cfg.false_alarm_rate),
        "production_rows": float(table["n_rows"].sum()),
        "baseline_rows": float(base_n),
        "rejected_rows": float(len(rejected.rows)),
    }
    for name in names:
        if len(ok):
            metrics[f"threshold_{name}"] = float(ok[f"{name}_threshold"].median())
            metrics[f"max_{name}"] = float(ok[f"{name}_score"].max())
    alert = bool(len(flagged))
    summary = _summary(table, names, cfg, rejected, calibration_source)

    view = None
    if report_path is not None:
        view = _build_view(ref_rows, samples, table, cfg, summary)
        from components.drift.report import render

        facts = {
            "baseline": f"{base_path} ({base_n} rows; reference sample {len(ref_rows)})",
            "production": f"{prod_path} ({int(table['n_rows'].sum())} rows)",
            "calibration": calibration_source,
            "window": cfg.window,
            "false-alarm rate per window (family)": f"{cfg.false_alarm_rate:g}",
            "per-detector level holding it": ", ".join(f"n={k}: {v:.4f}" for k, v in family.items()),
            "resamples per window size": str(cfg.n_resamples),
            "detectors run on at most": f"{cfg.max_window_rows} rows per window",
            "rejected rows": ", ".join(f"{r}: {c}" for r, c in rejected.counts().items()) or "none",
            "settings": ", ".join(f"{k}={v}" for k, v in asdict(cfg).items()),
        }
        html_text = render(table, names, summary, view, facts)
        _atomic_write_text(Path(report_path), html_text)
    if table_path is not None:
        _atomic_write_parquet(table, Path(table_path))
    dt = time.time() - t0
    print(
        f"drift: {len(ok)} windows tested, {len(flagged)} flagged, alert={alert}, "
        f"max centroid distance {metrics['max_centroid_distance']:.4g}, {len(rejected.rows)} rows rejected, {dt:.1f} s"
    )
    return DriftResult(table, metrics, alert, summary, rejected)


def _summary(
    table: pd.DataFrame, names: list[str], cfg: DriftConfig, rejected: Rejected, source: str
) -> list[str]:
    ok = table[table["status"] == "ok"]
    flagged = table[table["flagged"]]
    fmt = "%Y-%m-%d %H:%M" if cfg.window == "hourly" else "%Y-%m-%d"
    out = [
        f"{len(flagged)} of {len(ok)} tested {cfg.window} windows drifted "
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


def _build_view(
    ref_rows: Rows, samples: dict[int, Reservoir], table: pd.DataFrame, cfg: DriftConfig, summary
):
    from components.drift import view as v

    rng = np.random.default_rng([cfg.seed, 7])
    keys = sorted(samples)
    title = "whole range"
    if cfg.umap_window:
        start = pd.Timestamp(cfg.umap_window)
        start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
        k = int(dio.window_keys(np.array([start.value // 1000]), cfg.window)[0])
        if k not in samples:
            raise ValueError(
                f"umap_window={cfg.umap_window!r}: no production rows in that {cfg.window} window"
            )
        keys = [k]
        title = f"window {cfg.umap_window}"
    half = cfg.umap_sample // 2
    per = max(1, half // max(len(keys), 1))
    parts = []
    for k in keys:  # stratified: the same share from every window
        rows = samples[k].rows
        take = rng.choice(len(rows), min(per, len(rows)), replace=False)
        parts.append(rows.take(np.sort(take)))
    prod = Rows.concat(parts)
    base = ref_rows.take(np.sort(rng.choice(len(ref_rows), min(half, len(ref_rows)), replace=False)))
    allr = Rows.concat([base, prod])
    n = len(allr)
    if n < 10:
        summary.append("Too few points for the embedding view.")
        return None
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
        f"{dataset[i]} · {ts[i]:%Y-%m-%d %H:%M}<br>predicted {pred[i]} ({allr.scores[i]:.2f})<br>"
        f"actual {act[i]}<br>cluster {labels[i]}" + (f"<br>degradation {deg[i]}" if deg is not None else "")
        for i in range(n)
    ]
    links = [str(x) if x is not None else "" for x in _text(meta.get(C.IMAGE_LINK), n)]
    thumbs, failed = v.load_thumbnails(links) if cfg.thumbnails else ([""] * n, 0)
    if failed:
        summary.append(f"{failed} of {n} thumbnails could not be read (image links missing or unreachable).")
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
        summary.append(desc + f", against {is_prod.mean():.0%} in the whole sample.")
    from components.drift.report import ViewData

    return ViewData(coords3, coords2, cols, hover, thumbs, found, deg, pred, is_prod, title)


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _atomic_write_parquet(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    table.to_parquet(tmp, index=False)
    tmp.replace(path)
