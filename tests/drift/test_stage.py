"""The drift stage on prepared folders: flags, table, metrics, bad input, windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.common import schema
from components.drift.stage import DriftConfig, run_drift
from components.drift.synthetic import make_rows, write_prepared, write_table

C = schema.PreparedColumns
FAST = {"projection": "pca", "n_resamples": 300, "thumbnails": False}


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
    assert result.metrics["threshold_mmd2"] > 0
    on_disk = pq.read_table(table_path).to_pandas()
    assert len(on_disk) == 10 and on_disk["flagged"].sum() == 2
    assert {"centroid_score", "mmd2_p_value", "softmax_ks_threshold", "confidence_drop_fired"} <= set(on_disk)
    assert not list(table_path.parent.glob(".*tmp*")), "temporary files left behind"
    assert any("2 of 10 tested daily windows drifted" in s for s in result.summary)


def test_calibrates_on_held_out_baseline_rows_without_validation(tmp_path):
    folder = write_prepared(tmp_path / "p", seed=1, n_train=1500, images=False)
    (folder / schema.prepared_file(schema.VALIDATION)).unlink()
    result = run_drift(folder, folder, None, None, _cfg(reference_size=700, calibration_size=800))
    assert result.table["flagged"].sum() >= 2
    assert any("held out from the reference" in s for s in result.summary)


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
    with pytest.raises(ValueError, match="window='monthly'"):
        DriftConfig(window="monthly")
    with pytest.raises(ValueError, match="baseline_environment='production'"):
        DriftConfig(baseline_environment="production")
    with pytest.raises(ValueError, match="positive_class='Cat'"):
        DriftConfig(positive_class="Cat")
    with pytest.raises(ValueError, match="umap_window='yesterday'"):
        DriftConfig(umap_window="yesterday")


@pytest.mark.parametrize(("window", "count"), [("hourly", 10 * 24 - 1), ("weekly", 3)])
def test_other_window_lengths(prepared_dir, window, count):
    t = run_drift(prepared_dir, prepared_dir, None, None, _cfg(window=window, min_window_rows=3)).table
    assert len(t) >= count - 1
    if window == "weekly":
        assert (t["window_start"].dt.dayofweek == 0).all()
    assert t["n_rows"].sum() == 1200


def test_detectors_can_be_chosen(prepared_dir):
    t = run_drift(prepared_dir, prepared_dir, None, None, _cfg(detectors="mmd2, softmax_ks")).table
    assert "mmd2_score" in t and "softmax_ks_score" in t and "centroid_score" not in t
    assert t["flagged"].sum() == 2
    with pytest.raises(ValueError, match="expected a non-empty list from centroid"):
        DriftConfig(detectors="centroid,wasserstein")
