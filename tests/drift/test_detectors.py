"""Detectors on plain arrays: hand-computed values, calibrated false-alarm rates, shifts, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from components.drift.detectors import (
    DETECTOR_NAMES,
    DETECTORS,
    MMD2,
    CalibratedDrift,
    CentroidDistance,
    ConfidenceDrop,
    CosineDistance,
    Detector,
    FeatureKS,
    Needs,
    Sample,
    SoftmaxKS,
    centroid_distance,
    cosine_distance,
    default_detectors,
)

DIM = 8


def _sample(rng, n, shift=0.0, scale=1.0):
    x = rng.normal(size=(n, DIM)) * scale
    x[:, 0] += shift
    logits = 1.5 * x[:, :4]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    feats = np.column_stack([rng.uniform(0.2, 0.4, n), rng.normal(0.3, 0.05, n), rng.gamma(2.0, 0.1, n)])
    return Sample(x.astype(np.float32), p, p.max(1), feats)


def test_centroid_distance_matches_the_arize_example():
    # Arize docs: centroids [4, 5, 6] and [5, 4, 2] are sqrt(1 + 1 + 16) = 4.24 apart.
    a = np.array([[3.0, 5.0, 7.0], [5.0, 5.0, 5.0]])  # mean [4, 5, 6]
    b = np.array([[5.0, 4.0, 2.0]])
    assert centroid_distance(a, b) == pytest.approx(4.2426, abs=1e-4)
    det = CentroidDistance().fit(Sample(a))
    assert det.score(Sample(b)) == pytest.approx(np.sqrt(18.0))


def test_cosine_distance_by_hand():
    assert cosine_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)
    assert cosine_distance(np.array([1.0, 1.0]), np.array([2.0, 2.0])) == pytest.approx(0.0, abs=1e-12)
    det = CosineDistance().fit(Sample(np.array([[1.0, 0.0], [1.0, 0.0]])))
    assert det.score(Sample(np.array([[0.0, 3.0]]))) == pytest.approx(1.0)


def test_confidence_drop_and_mmd_by_hand():
    ref = Sample(np.zeros((4, 2)), scores=np.array([0.9, 0.9, 0.8, 0.8]))
    assert ConfidenceDrop().fit(ref).score(
        Sample(np.zeros((2, 2)), scores=np.array([0.5, 0.6]))
    ) == pytest.approx(0.3, abs=1e-6)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    mmd = MMD2().fit(Sample(x))
    same = mmd.score(Sample(rng.normal(size=(200, 3))))
    moved = mmd.score(Sample(rng.normal(size=(200, 3)) + 1.0))
    assert abs(same) < 0.02 < moved


def test_mmd2_by_hand_on_two_points():
    # reference 0 and 2: squared distance 4 is the median, so gamma = 1/4 and k(0, 2) = e^-1;
    # window {4, 4}: k(w, w) = 1, k(4, 0) = e^-4, k(4, 2) = e^-1, so MMD² = 1 + e^-1 - (e^-4 + e^-1).
    mmd = MMD2().fit(Sample(np.array([[0.0], [2.0]])))
    assert mmd.bandwidth == pytest.approx(2.0)
    assert mmd.score(Sample(np.array([[4.0], [4.0]]))) == pytest.approx(1.0 - np.exp(-4.0), rel=1e-6)
    # the same two points: e^-1 + e^-1 - 2 * (1 + e^-1 + e^-1 + 1) / 4 = e^-1 - 1 (unbiased, so below 0)
    assert mmd.score(Sample(np.array([[0.0], [2.0]]))) == pytest.approx(np.exp(-1.0) - 1.0, rel=1e-6)


def test_softmax_ks_p_value_small_for_a_shift_and_large_for_none():
    rng = np.random.default_rng(1)
    ks = SoftmaxKS().fit(_sample(rng, 500))
    assert ks.p_value(_sample(rng, 200)) > 0.01
    assert ks.p_value(_sample(rng, 200, shift=1.5)) < 1e-6


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(2)
    cal = CalibratedDrift(false_alarm_rate=0.05, n_resamples=400, min_rows=10, seed=3)
    return cal.fit(_sample(rng, 800), _sample(rng, 1500))


def test_false_alarm_rates_on_clean_resamples_are_near_the_setting():
    # Three calibrations (different pools), 200 fresh clean windows each, at a 5% family rate.
    flags, per = [], {}
    for seed in (10, 11, 12):
        rng = np.random.default_rng(seed)
        cal = CalibratedDrift(false_alarm_rate=0.05, n_resamples=400, min_rows=10, seed=seed)
        cal.fit(_sample(rng, 800), _sample(rng, 3000))
        for _ in range(200):
            v = cal.test(_sample(rng, 40))
            flags.append(v.flagged)
            for d in v.detectors:
                per.setdefault(d.name, []).append(d.p_value <= 0.05)
    family = np.mean(flags)
    # binomial(600, 0.05) has sd 0.009; the finite calibration pool adds a little more
    assert 0.025 <= family <= 0.085, family
    for name, hits in per.items():
        # each detector alone at the 5% level: its empirical p-values are near uniform
        assert 0.02 <= np.mean(hits) <= 0.09, (name, np.mean(hits))


def test_a_shifted_sample_is_flagged(calibrated):
    rng = np.random.default_rng(5)
    verdict = calibrated.test(_sample(rng, 60, shift=1.5))
    assert verdict.flagged
    assert {"centroid", "mmd2", "softmax_ks"} <= set(verdict.fired)
    # each p-value is (1 + null scores at or above the score) / (1 + resamples), on 60-row windows
    null = calibrated.null(60)
    for d in verdict.detectors:
        at_or_above = int((null.scores[d.name] >= d.score).sum())
        assert d.p_value == pytest.approx((1 + at_or_above) / 401), d.name
        assert d.threshold == null.thresholds(verdict.level)[d.name]
        assert d.drifted == (d.p_value <= null.family_p(verdict.level))
    assert calibrated.family_levels[60] == null.family_p(verdict.level)
    # the window's family p-value: 1 + resamples whose smallest p-value is at or below the window's
    min_p = min(d.p_value for d in verdict.detectors)
    assert verdict.p_value == pytest.approx((1 + int((null.min_p <= min_p).sum())) / 401)


def test_mmd_sees_a_spread_change_that_the_centroid_cannot(calibrated):
    rng = np.random.default_rng(6)
    verdict = calibrated.test(_sample(rng, 60, scale=1.8))
    assert verdict.by_name("mmd2").drifted
    assert not verdict.by_name("centroid").drifted


def test_small_windows_are_marked_not_flagged(calibrated):
    rng = np.random.default_rng(7)
    one = calibrated.test(_sample(rng, 1, shift=5.0))
    assert one.status == "too_few_rows" and not one.flagged and one.detectors == ()
    empty = calibrated.test(Sample(np.zeros((0, DIM), dtype=np.float32)))
    assert empty.status == "too_few_rows" and not empty.flagged


def test_bad_input_gives_clear_errors(calibrated):
    with pytest.raises(ValueError, match="window has 5 dimensions, the baseline 8"):
        calibrated.test(Sample(np.zeros((30, 5))))
    bad = np.zeros((30, DIM))
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="1 row\\(s\\) hold NaN"):
        Sample(bad)
    with pytest.raises(ValueError, match="2-D"):
        Sample(np.zeros(5))
    with pytest.raises(ValueError, match="false_alarm_rate"):
        CalibratedDrift(false_alarm_rate=0.0)
    with pytest.raises(ValueError, match="n_resamples=100: too few"):
        CalibratedDrift(false_alarm_rate=0.01, n_resamples=100)
    with pytest.raises(ValueError, match="calibration data: 3 rows"):
        CalibratedDrift(min_rows=10).fit(Sample(np.zeros((50, 2))), Sample(np.zeros((3, 2))))


def test_detectors_without_probabilities_are_left_out():
    rng = np.random.default_rng(8)
    cal = CalibratedDrift(false_alarm_rate=0.05, n_resamples=200, min_rows=10).fit(
        Sample(rng.normal(size=(300, 4))), Sample(rng.normal(size=(300, 4)))
    )
    assert cal.names == ["centroid", "cosine", "mmd2"]
    assert cal.test(Sample(rng.normal(size=(40, 4)) + 2.0)).flagged


def test_ks_statistic_matches_scipy_with_ties():
    from scipy.stats import ks_2samp

    from components.drift.detectors import _ks_statistics

    rng = np.random.default_rng(9)
    ref = np.round(rng.random(300), 1)  # many ties, like saturated softmax outputs
    win = np.round(rng.random((4, 50)) ** 2, 1)
    got = _ks_statistics(np.sort(ref), win)
    want = [ks_2samp(ref, w).statistic for w in win]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_batched_null_scores_equal_one_window_at_a_time():
    rng = np.random.default_rng(10)
    ref, pool = _sample(rng, 300), _sample(rng, 400)
    idx = np.stack([rng.choice(400, 30, replace=False) for _ in range(7)])
    for det in default_detectors():
        det.fit(ref)
        batched = det.null_scores(pool, idx)
        single = [det.score(pool.take(i)) for i in idx]
        np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-7, err_msg=det.name)


def test_one_registry_gives_the_names_and_the_factory():
    assert DETECTOR_NAMES == ("centroid", "cosine", "mmd2", "softmax_ks", "confidence_drop", "feature_ks")
    assert [type(d) for d in default_detectors()] == [
        CentroidDistance,
        CosineDistance,
        MMD2,
        SoftmaxKS,
        ConfidenceDrop,
        FeatureKS,
    ]
    assert all(cls.name == name and cls.title for name, cls in DETECTORS.items())
    assert [d.name for d in default_detectors(names=["mmd2", "cosine"])] == ["mmd2", "cosine"]
    assert default_detectors(seed=7, names=["mmd2"])[0].seed == 7
    with pytest.raises(
        ValueError, match=r"detectors \['mmd2', 'ks'\]: expected a non-empty list from centroid"
    ):
        default_detectors(names=["mmd2", "ks"])
    with pytest.raises(ValueError, match="expected a non-empty list"):
        default_detectors(names=[])


def test_needs_is_what_a_sample_must_hold():
    assert [DETECTORS[n].needs for n in DETECTOR_NAMES] == [
        Needs.EMBEDDINGS,
        Needs.EMBEDDINGS,
        Needs.EMBEDDINGS,
        Needs.PROBABILITIES,
        Needs.SCORES,
        Needs.FEATURES,
    ]
    bare = Sample(np.zeros((3, 2)))
    full = Sample(np.zeros((3, 2)), np.full((3, 2), 0.5), np.ones(3), np.ones((3, 3)))
    no_values = Sample(np.zeros((3, 2)), features=np.full((3, 3), np.nan))
    assert [bare.has(n) for n in Needs] == [True, False, False, False]
    assert [full.has(n) for n in Needs] == [True, True, True, True]
    assert not no_values.has(Needs.FEATURES)
    with pytest.raises(TypeError):
        Detector()  # abstract: fit and score are required


class FirstCoordinate(Detector):
    """A detector of this test's own: mean of the first coordinate (no batched null_scores)."""

    name = "first"
    title = "mean of the first coordinate"

    def fit(self, reference: Sample) -> FirstCoordinate:
        return self

    def score(self, window: Sample) -> float:
        return float(window.embeddings[:, 0].astype(np.float64).mean())


def test_a_detector_without_batched_null_scores_is_calibrated_window_by_window():
    rng = np.random.default_rng(11)
    pool = Sample(rng.normal(size=(300, 2)))
    idx = np.stack([rng.choice(300, 20, replace=False) for _ in range(5)])
    det = FirstCoordinate()
    np.testing.assert_allclose(det.null_scores(pool, idx), pool.embeddings[idx, 0].mean(axis=1), rtol=1e-6)
    cal = CalibratedDrift([FirstCoordinate()], false_alarm_rate=0.05, n_resamples=200, min_rows=10, seed=1)
    cal.fit(Sample(rng.normal(size=(100, 2))), pool)
    assert cal.names == ["first"]
    moved = rng.normal(size=(20, 2))
    moved[:, 0] += 3.0
    verdict = cal.test(Sample(moved))
    assert verdict.fired == ["first"] and verdict.by_name("first").p_value == pytest.approx(1 / 201)
