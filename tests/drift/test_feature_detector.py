"""The image-feature detector (``feature_ks``): by hand, missing values, and known answers.

Synthetic rows whose answer is known: embeddings and softmax outputs never change, only the
image features (brightness, contrast, sharpness) do. Half a window "blurred" (its sharpness
lowered) is invisible to the five embedding and output detectors and must be flagged by
``feature_ks``; a harmless brightness gap between the training source and production's source
is flagged when calibrated on the training source and held at the rate when calibrated on clean
rows of production's own source; clean windows stay at the rate. Through the stage: the features
of the prepared files reach the detector, and the one day whose sharpness fell is the one flagged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import kolmogorov
from scipy.stats import ks_2samp

from components.common import schema
from components.drift.config import DriftConfig
from components.drift.detectors import CalibratedDrift, FeatureKS, Needs, Sample, default_detectors
from components.drift.stage import run_drift
from tests.fixtures.drift_rows import write_prepared, write_table

C = schema.PreparedColumns
DIM = 8
EMBEDDING_AND_OUTPUT = ["centroid", "cosine", "mmd2", "softmax_ks", "confidence_drop"]


def _features(rng, n, blurred=0.0, brightness_gap=0.0):
    """Brightness, contrast, sharpness of ``n`` rows; the first ``blurred`` share has its sharpness cut."""
    f = np.column_stack([rng.normal(0.29, 0.13, n), rng.normal(0.32, 0.08, n), rng.gamma(4.0, 0.045, n)])
    f[:, 0] += brightness_gap
    k = int(round(blurred * n))
    f[:k, 2] *= 0.3  # a blur lowers the variance of the Laplacian
    return f


def _sample(rng, n, **feature_kw):
    x = rng.normal(size=(n, DIM))
    logits = 1.5 * x[:, :4]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return Sample(x.astype(np.float32), p, p.max(1), _features(rng, n, **feature_kw))


def test_score_is_the_bonferroni_ks_p_value_by_hand():
    rng = np.random.default_rng(1)
    ref, win = _features(rng, 500), _features(rng, 80, blurred=0.5)
    det = FeatureKS().fit(Sample(np.zeros((500, 2)), features=ref))
    p_each = [
        kolmogorov(ks_2samp(ref[:, j], win[:, j]).statistic * np.sqrt(500 * 80 / 580)) for j in range(3)
    ]
    expected = min(1.0, 3 * min(p_each))
    window = Sample(np.zeros((80, 2)), features=win)
    assert det.p_value(window) == pytest.approx(expected, rel=1e-9)
    assert det.score(window) == pytest.approx(-np.log10(expected), rel=1e-9)
    assert np.argmin(p_each) == 2 and expected < 1e-3  # the sharpness moved


def test_rows_or_windows_without_features():
    rng = np.random.default_rng(2)
    ref = _features(rng, 400)
    ref[:5, 1] = np.nan  # a few baseline rows lack a contrast: the others still count
    det = FeatureKS().fit(Sample(np.zeros((400, 2)), features=ref))
    win = _features(rng, 60, blurred=0.3)
    holes = win.copy()
    holes[[3, 7], 0] = np.nan
    # a row with any missing feature is left out of the test
    assert det.score(Sample(np.zeros((60, 2)), features=holes)) == pytest.approx(
        det.score(Sample(np.zeros((58, 2)), features=np.delete(win, [3, 7], axis=0)))
    )
    # a window without features gives no evidence
    assert det.score(Sample(np.zeros((60, 2)))) == 0.0
    # a pool with missing values is scored window by window, with the same numbers
    pool = Sample(np.zeros((300, 2)), features=holes[np.arange(300) % 60])
    idx = np.stack([rng.choice(300, 40) for _ in range(4)])
    np.testing.assert_allclose(det.null_scores(pool, idx), [det.score(pool.take(i)) for i in idx])
    # a feature no baseline row has is left out; no feature at all: the stage leaves the detector out
    one = ref.copy()
    one[:, 1] = np.nan
    det1 = FeatureKS().fit(Sample(np.zeros((400, 2)), features=one))
    assert det1.p_value(Sample(np.zeros((60, 2)), features=win)) <= 1.0
    empty = Sample(np.zeros((50, DIM)), features=np.full((50, 3), np.nan))
    assert not empty.has(Needs.FEATURES)
    with pytest.raises(ValueError, match="no image feature has at least 2 finite values"):
        FeatureKS().fit(empty)
    cal = CalibratedDrift(false_alarm_rate=0.05, n_resamples=200, min_rows=10).fit(empty, _sample(rng, 200))
    assert "feature_ks" not in cal.names and "centroid" in cal.names
    with pytest.raises(ValueError, match=r"features: expected shape \(3, features\)"):
        Sample(np.zeros((3, 2)), features=np.zeros((4, 3)))


def _calibrated(seed, names=None, pool_gap=0.0, level=0.05):
    rng = np.random.default_rng(seed)
    cal = CalibratedDrift(
        default_detectors(seed, names or list(EMBEDDING_AND_OUTPUT) + ["feature_ks"]),
        false_alarm_rate=level,
        n_resamples=400,
        min_rows=10,
        seed=seed,
    )
    return cal.fit(_sample(rng, 1000), _sample(rng, 2000, brightness_gap=pool_gap)), rng


def test_half_a_blurred_window_is_flagged_by_the_features_alone():
    # embeddings, probabilities and scores are clean: only the sharpness of half the rows fell
    with_features, rng = _calibrated(4)
    without, _ = _calibrated(4, EMBEDDING_AND_OUTPUT)
    windows = [_sample(rng, 60, blurred=0.5) for _ in range(40)]
    verdicts = [with_features.test(w) for w in windows]
    assert np.mean([v.flagged for v in verdicts]) >= 0.95
    assert np.mean([v.fired == ["feature_ks"] for v in verdicts]) >= 0.9
    # the five embedding and output detectors see nothing beyond their false-alarm rate
    assert np.mean([without.test(w).flagged for w in windows]) <= 0.2


def test_clean_windows_stay_at_the_rate_with_the_feature_detector():
    flags = []
    for seed in (5, 6):
        cal, rng = _calibrated(seed)
        flags += [cal.test(_sample(rng, 50)).flagged for _ in range(150)]
    # 300 clean windows at a 5% family rate (6 detectors together): binomial sd 0.013
    assert np.mean(flags) <= 0.085, np.mean(flags)


def test_a_harmless_feature_gap_is_absorbed_by_calibrating_on_production_source():
    # production's images are a little brighter (another camera), harmlessly: 0.35 baseline SDs
    gap = 0.35 * 0.13

    def rate(pool_gap: float) -> float:
        flags = []
        for seed in (7, 8):
            cal, rng = _calibrated(seed, ["feature_ks"], pool_gap=pool_gap)
            flags += [cal.test(_sample(rng, 50, brightness_gap=gap)).flagged for _ in range(150)]
        return float(np.mean(flags))

    assert rate(0.0) > 0.3  # calibrated on the training source: the gap looks like drift
    assert rate(gap) <= 0.085  # calibrated on production's source: at the 5% rate
    # and a real shift beyond the gap is still flagged when calibrated on production's source
    cal, rng = _calibrated(9, ["feature_ks"], pool_gap=gap)
    hits = [cal.test(_sample(rng, 50, brightness_gap=gap, blurred=0.5)).flagged for _ in range(40)]
    assert np.mean(hits) >= 0.95


def test_the_stage_reads_the_features_and_flags_the_day_whose_sharpness_fell(tmp_path):
    folder = write_prepared(tmp_path / "p", seed=3, drift_days=(), images=False)
    path = folder / schema.prepared_file(schema.PRODUCTION)
    df = pd.read_parquet(path)
    day = df[C.PREDICTION_TS].dt.strftime("%Y-%m-%d") == "2026-11-24"
    half = df.index[day][::2]
    df.loc[half, C.SHARPNESS] = (df.loc[half, C.SHARPNESS] * 0.4).astype(np.float32)
    write_table(df, path)
    cfg = DriftConfig(projection="pca", thumbnails=False, drift_resamples=500)
    t = run_drift(folder, folder, None, None, cfg).table
    flagged = t.loc[t["flagged"], "window_start"].dt.strftime("%Y-%m-%d").tolist()
    assert flagged == ["2026-11-24"]
    assert t.loc[t["flagged"], "fired"].tolist() == ["feature_ks"]
    assert {"feature_ks_score", "feature_ks_p_value", "feature_ks_fired"} <= set(t.columns)
