"""The drift stage on prepared folders: flags, table, metrics, bad input, windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.common import schema
from components.drift.config import DriftConfig
from components.drift.io import Rejected
from components.drift.stage import load_baseline, locate_files, run_drift
from tests.fixtures.drift_rows import make_rows, write_prepared, write_table

C = schema.PreparedColumns
FAST = {"projection": "pca", "drift_resamples": 300, "thumbnails": False}


def _cfg(**kw) -> DriftConfig:
    return DriftConfig(**{**FAST, "false_alarm_rate": 0.02, **kw})


def test_flags_the_shifted_days_and_no_clean_day(prepared_dir, tmp_path):
    table_path = tmp_path / "out" / "drift_table.parquet"
    result = run_drift(prepared_dir, prepared_dir, None, table_path, _cfg())
    t = result.table
    days = t["window_start"].dt.strftime("%Y-%m-%d").tolist()
    flagged = [d for d, f in zip(days, t["flagged"], strict=True) if f]
    assert flagged == ["2026-11-24", "2026-11-25"]
    assert result.alert is True
    assert (t["n_rows"] == 120).all() and (t["status"] == "ok").all()
    assert result.metrics["windows_flagged"] == 2.0
    assert result.metrics["max_centroid_distance"] == pytest.approx(t["centroid_distance"].max())
    ok = t[t["status"] == "ok"]
    assert result.metrics["threshold_mmd2"] == pytest.approx(ok["mmd2_threshold"].median())
    assert result.metrics["production_rows"] == 1200.0 and result.metrics["baseline_rows"] == 1200.0
    on_disk = pq.read_table(table_path).to_pandas()
    assert len(on_disk) == 10 and on_disk["flagged"].sum() == 2
    assert {"centroid_score", "mmd2_p_value", "softmax_ks_threshold", "confidence_drop_fired"} <= set(on_disk)
    assert not list(table_path.parent.glob(".*tmp*")), "temporary files left behind"
    assert any("2 of 10 tested daily windows drifted" in s for s in result.summary)


def test_calibrates_on_held_out_baseline_rows_without_validation(tmp_path):
    folder = write_prepared(tmp_path / "p", seed=1, n_train=1500, images=False)
    (folder / schema.prepared_file(schema.VALIDATION)).unlink()
    cfg = _cfg(reference_size=700, calibration_size=800)
    inputs = locate_files(folder, folder, cfg)
    assert inputs.calibration is None
    base = load_baseline(inputs, 16, cfg, Rejected())
    ref_ids = set(base.reference.meta[C.PREDICTION_ID])
    cal_ids = set(base.calibration.meta[C.PREDICTION_ID])
    assert len(ref_ids) == 700 and len(cal_ids) == 800 and not ref_ids & cal_ids  # disjoint
    result = run_drift(folder, folder, None, None, cfg)
    flagged = set(result.table.loc[result.table["flagged"], "window_start"].dt.strftime("%Y-%m-%d"))
    assert {"2026-11-24", "2026-11-25"} <= flagged
    assert "calibrated on baseline rows held out from the reference (800 rows)" in result.summary[0]


def test_calibrates_on_validation_rows_from_either_folder(tmp_path):
    prepared = write_prepared(tmp_path / "prepared", seed=2, images=False)
    baseline = write_prepared(tmp_path / "baseline", seed=3, images=False)
    validation = schema.prepared_file(schema.VALIDATION)
    assert locate_files(prepared, baseline, _cfg()).calibration == baseline / validation
    (baseline / validation).unlink()
    assert locate_files(prepared, baseline, _cfg()).calibration == prepared / validation
    # the validation split as the baseline: calibration rows are held out from it instead
    cfg = _cfg(baseline_environment=schema.VALIDATION)
    assert locate_files(prepared, prepared, cfg).calibration is None


def test_empty_and_tiny_windows_are_marked_not_flagged(tmp_path):
    rng = np.random.default_rng(3)
    folder = write_prepared(tmp_path / "p", seed=3, drift_days=(), images=False)
    prod = pq.read_table(folder / schema.prepared_file(schema.PRODUCTION)).to_pandas()
    day = prod[C.PREDICTION_TS].dt.floor("D")
    days = sorted(day.unique())
    # remove day 4 entirely; keep a single (shifted) row on day 6
    keep = (day != days[4]) & ((day != days[6]) | (np.arange(len(prod)) == np.flatnonzero(day == days[6])[0]))
    prod = prod[keep].reset_index(drop=True)
    odd = make_rows(rng, 1, days[6] + pd.Timedelta(hours=1), pd.Timedelta(minutes=1), shift=5.0, prefix="odd")
    write_table(pd.concat([prod, odd], ignore_index=True), folder / schema.prepared_file(schema.PRODUCTION))
    t = run_drift(folder, folder, None, None, _cfg()).table.set_index("window_start")
    assert t.loc[days[4], "status"] == "empty" and t.loc[days[4], "n_rows"] == 0
    assert t.loc[days[6], "status"] == "too_few_rows" and t.loc[days[6], "n_rows"] == 2
    assert not t["flagged"].any()
    # The two-row window holds a far-shifted row: its distance must not become the run's maximum.
    tested = t[t["status"] == "ok"]
    assert t.loc[days[6], "centroid_distance"] > tested["centroid_distance"].max()
    result = run_drift(folder, folder, None, None, _cfg())
    assert result.metrics["max_centroid_distance"] == pytest.approx(tested["centroid_distance"].max())


def test_nan_and_short_vectors_are_rejected_and_counted(tmp_path):
    folder = write_prepared(tmp_path / "p", seed=4, drift_days=(), images=False)
    path = folder / schema.prepared_file(schema.PRODUCTION)
    prod = pq.read_table(path).to_pandas()
    prod.at[5, C.IMAGE_VECTOR] = np.full(16, np.nan, dtype=np.float32)
    prod.at[9, C.IMAGE_VECTOR] = np.zeros(3, dtype=np.float32)
    write_table(prod, path)
    result = run_drift(folder, folder, None, None, _cfg())
    assert result.metrics["rejected_rows"] == 2.0
    reasons = {r[3]: r[4] for r in result.rejected.rows}
    assert "NaN" in reasons[prod.at[5, C.PREDICTION_ID]]
    assert "16 values long" in reasons[prod.at[9, C.PREDICTION_ID]]
    assert result.table["n_rows"].sum() == len(prod) - 2
    assert any("2 row(s) could not be used" in s for s in result.summary)


def test_baseline_and_production_of_different_dimensions_fail_clearly(tmp_path):
    a = write_prepared(tmp_path / "a", seed=5, dim=16, images=False)
    b = write_prepared(tmp_path / "b", seed=5, dim=12, images=False)
    with pytest.raises(ValueError, match=r"production.parquet: image_vector has 12 values.*has 16"):
        run_drift(b, a, None, None, _cfg())


def test_missing_files_and_bad_settings_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="production.parquet: missing"):
        run_drift(tmp_path, tmp_path, None, None, _cfg())
    with pytest.raises(ValueError, match="drift_window='monthly'"):
        DriftConfig(drift_window="monthly")
    with pytest.raises(ValueError, match="baseline_environment='production'"):
        DriftConfig(baseline_environment="production")
    with pytest.raises(ValueError, match="positive_class='Cat'"):
        DriftConfig(positive_class="Cat")
    with pytest.raises(ValueError, match="umap_window='yesterday'"):
        DriftConfig(umap_window="yesterday")
    with pytest.raises(
        ValueError, match=r"drift_resamples=300: too few for false_alarm_rate=0.01; use at least 500"
    ):
        DriftConfig(drift_resamples=300)
    with pytest.raises(ValueError, match="false_alarm_rate=0.5: expected a value in"):
        DriftConfig(false_alarm_rate=0.5)
    with pytest.raises(ValueError, match="max_window_rows=10 is below min_window_rows=20"):
        DriftConfig(max_window_rows=10)


def _monday(ts: pd.Series) -> pd.Series:
    return ts.dt.floor("D") - pd.to_timedelta(ts.dt.dayofweek, unit="D")


@pytest.mark.parametrize(
    ("window", "start_of", "step"),
    [
        ("hourly", lambda ts: ts.dt.floor("h"), "1h"),
        ("daily", lambda ts: ts.dt.floor("D"), "1D"),
        ("weekly", _monday, "7D"),  # UTC weeks start on Monday
    ],
)
def test_windows_match_a_calendar_grouping_of_the_timestamps(prepared_dir, window, start_of, step):
    ts = pq.read_table(prepared_dir / schema.prepared_file(schema.PRODUCTION)).to_pandas()[C.PREDICTION_TS]
    starts = start_of(ts)
    every = pd.date_range(starts.min(), starts.max(), freq=step)
    want = starts.value_counts().reindex(every, fill_value=0)
    t = run_drift(prepared_dir, prepared_dir, None, None, _cfg(drift_window=window, min_window_rows=3)).table
    assert t["window_start"].tolist() == list(want.index)  # every window, empty ones included
    assert t["n_rows"].tolist() == want.tolist()
    assert (t["window_end"] - t["window_start"] == pd.Timedelta(step)).all()
    assert (t["window"] == window).all()
    assert t["status"].tolist() == ["empty" if n == 0 else "too_few_rows" if n < 3 else "ok" for n in want]


def test_detectors_can_be_chosen(prepared_dir):
    t = run_drift(prepared_dir, prepared_dir, None, None, _cfg(detectors="mmd2, softmax_ks")).table
    assert "mmd2_score" in t and "softmax_ks_score" in t and "centroid_score" not in t
    assert t["flagged"].sum() == 2
    with pytest.raises(ValueError, match="expected a non-empty list from centroid"):
        DriftConfig(detectors="centroid,wasserstein")


def test_accuracy_counts_labelled_rows_only_and_rows_without_a_served_score_are_kept(tmp_path):
    """Production rows with no label yet (null actual) and served labels without a score (null score)."""
    folder = write_prepared(tmp_path / "p", seed=4, drift_days=(), images=False)
    path = folder / schema.prepared_file(schema.PRODUCTION)
    prod = pq.read_table(path).to_pandas()
    day = prod[C.PREDICTION_TS].dt.floor("D")
    first = prod.index[day == day.min()]
    prod[C.ACTUAL_LABEL] = prod[C.ACTUAL_LABEL].astype(object)
    prod.loc[first[::2], C.ACTUAL_LABEL] = None  # half of the first day's rows: no label yet
    prod[C.PREDICTION_SCORE] = prod[C.PREDICTION_SCORE].astype(object)
    prod.loc[first[:3], C.PREDICTION_SCORE] = None  # served without a score
    write_table(prod, path)
    result = run_drift(folder, folder, None, None, _cfg())
    assert result.metrics["rejected_rows"] == 0.0  # no row lost for a null score
    labelled = prod.loc[first].dropna(subset=[C.ACTUAL_LABEL])
    want = float((labelled[C.PREDICTION_LABEL] == labelled[C.ACTUAL_LABEL]).mean())
    row = result.table[result.table["window_start"] == day.min()].iloc[0]
    assert row["n_rows"] == len(first)
    assert row["accuracy"] == pytest.approx(want)
