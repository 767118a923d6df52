"""Why a window drifted (issue 12, item 4): figures on synthetic windows whose answer is known."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from components.common import schema
from components.drift import explain as ex
from components.drift.io import Rows

C = schema.PreparedColumns
CLASSES = schema.CLASS_NAMES
START = pd.Timestamp("2026-11-24", tz="UTC")


def rows(
    rng: np.random.Generator,
    n: int,
    sharpness: float = 0.0,
    brightness: float = 0.0,
    class_p: np.ndarray | None = None,
    moved: float = 0.0,
    move: float = 0.0,
    degradation: str = "none",
    dim: int = 8,
) -> Rows:
    """``n`` rows: features N(0.5, 0.1) shifted by ``sharpness`` / ``brightness`` baseline SDs; classes
    drawn from ``class_p``; a fraction ``moved`` of rows moved by ``move`` in the embedding."""
    k = len(CLASSES)
    labels = rng.choice(k, n, p=class_p if class_p is not None else np.full(k, 1 / k))
    centres = np.random.default_rng(1).normal(0.0, 3.0, size=(k, dim))
    vec = centres[labels] + rng.normal(size=(n, dim))
    is_moved = np.zeros(n, dtype=bool)
    is_moved[: int(round(moved * n))] = True
    vec[is_moved] += move
    probs = np.full((n, k), 0.02)
    probs[np.arange(n), labels] = 0.82
    scores = np.where(is_moved, 0.5, 0.9).astype(np.float32)
    meta = {
        C.PREDICTION_LABEL: np.array([CLASSES[i] for i in labels], dtype=object),
        C.DEGRADATION: np.where(is_moved, degradation, "none").astype(object),
        C.IMAGE_LINK: np.array([f"/img/{i}.png" for i in range(n)], dtype=object),
        C.BRIGHTNESS: (0.5 + 0.1 * (rng.normal(size=n) + brightness)).astype(np.float32),
        C.CONTRAST: (0.3 + 0.05 * rng.normal(size=n)).astype(np.float32),
        C.SHARPNESS: (0.5 + 0.1 * (rng.normal(size=n) + sharpness)).astype(np.float32),
    }
    return Rows(np.zeros(n, dtype=np.int64), vec.astype(np.float32), probs.astype(np.float32), scores, meta)


@pytest.fixture(scope="module")
def baseline():
    return rows(np.random.default_rng(0), 2000)


def test_a_sharpness_shift_is_named_first_with_its_sign_and_size(baseline):
    window = rows(np.random.default_rng(1), 400, sharpness=-1.8)
    shifts = ex.feature_shifts(ex._features(baseline), ex._features(window))
    assert shifts[0].feature == C.SHARPNESS and shifts[0].direction == "fell"
    assert shifts[0].smd == pytest.approx(-1.8, abs=0.15)
    assert shifts[0].wasserstein == pytest.approx(1.8, abs=0.15)
    assert shifts[0].p_value < 1e-20
    others = {s.feature: s for s in shifts[1:]}
    assert set(others) == {C.BRIGHTNESS, C.CONTRAST}
    assert all(abs(s.smd) < 0.25 for s in others.values())
    e = ex.explain_window(START, "2026-11-24", baseline, window)
    assert [f.feature for f in ex.named_features(e.features)] == [C.SHARPNESS]
    assert e.sentence.startswith("2026-11-24: sharpness fell by 1.8 baseline SDs;")


def test_a_brightness_rise_is_named_with_the_right_sign(baseline):
    window = rows(np.random.default_rng(2), 300, brightness=1.0)
    e = ex.explain_window(START, "d", baseline, window)
    assert e.features[0].feature == C.BRIGHTNESS and e.features[0].direction == "rose"
    assert e.features[0].smd == pytest.approx(1.0, abs=0.15)
    assert f"brightness rose by {e.features[0].smd:.1f} baseline SDs" in e.sentence


def test_feature_shift_against_scipy_and_by_hand():
    from scipy import stats

    b = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    w = b + 2.0
    s = ex.feature_shift("f", b, w)
    assert s is not None
    sd = b.std(ddof=1)
    assert s.smd == pytest.approx(2.0 / sd) and s.wasserstein == pytest.approx(2.0 / sd)
    assert s.ks == pytest.approx(stats.ks_2samp(b, w).statistic) and s.ks == pytest.approx(0.4)
    assert ex.feature_shift("f", np.array([1.0, np.nan]), w) is None  # one finite value: no test


def test_a_clean_window_names_nothing(baseline):
    window = rows(np.random.default_rng(3), 300)
    e = ex.explain_window(START, "d", baseline, window)
    assert ex.named_features(e.features) == [] and ex.named_classes(e.classes) == []
    assert "no image feature moved beyond chance" in e.sentence
    assert "the predicted class mix did not move beyond chance" in e.sentence
    assert e.novel_share < 0.05  # about 1% of clean rows lie beyond the baseline's 99th percentile


def test_a_class_mix_change_names_the_class(baseline):
    p = np.full(len(CLASSES), 0.69 / (len(CLASSES) - 1))
    bag = CLASSES.index("Bag")
    p[bag] = 0.31
    window = rows(np.random.default_rng(4), 400, class_p=p)
    e = ex.explain_window(START, "d", baseline, window)
    top = e.classes[0]
    assert top.label == "Bag" and top.share_change > 0.15
    assert top.baseline_share == pytest.approx(0.1, abs=0.02) and top.window_share == pytest.approx(
        0.31, abs=0.05
    )
    assert [c.label for c in ex.named_classes(e.classes)][:1] == ["Bag"]
    assert f"predicted Bag share rose from {top.baseline_share:.0%} to {top.window_share:.0%}" in e.sentence
    assert "no image feature moved beyond chance" in e.sentence


def test_class_shifts_by_hand():
    shifts = ex.class_shifts(
        np.array(["a", "a", "b", "b"]),
        np.array([0.9, 0.7, 0.8, 0.8]),
        np.array(["a", "c", "c"]),
        np.array([0.5, 0.6, 0.4]),
    )
    by = {c.label: c for c in shifts}
    assert by["c"].window_share == pytest.approx(2 / 3) and by["c"].baseline_share == 0.0
    assert by["a"].baseline_confidence == pytest.approx(0.8) and by["a"].window_confidence == pytest.approx(
        0.5
    )
    assert by["a"].confidence_change == pytest.approx(-0.3)
    assert np.isnan(by["b"].window_confidence)  # no window row predicted b
    assert [c.label for c in shifts] == ["c", "b", "a"]  # |change| 0.67, 0.5, 0.17


def test_the_examples_come_from_the_moved_rows(baseline):
    window = rows(np.random.default_rng(5), 400, moved=0.3, move=4.0, degradation="blur", sharpness=-1.0)
    e = ex.explain_window(START, "d", baseline, window)
    assert len(e.examples) == ex.EXAMPLES
    assert all(x.degradation == "blur" and x.confidence == pytest.approx(0.5) for x in e.examples)
    assert all(x.row < 120 for x in e.examples)  # the first 30% of rows are the moved ones
    assert e.novel_share == pytest.approx(0.3, abs=0.05)
    assert "(ground truth: blur ×8)" in e.sentence and "nearest examples: " in e.sentence
    assert (
        f"{e.novel_share:.0%} of the rows lie farther from the baseline than 99% of baseline rows"
        in e.sentence
    )


def test_knn_distance_by_hand_and_in_chunks():
    ref = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    assert ex.knn_distance(ref, np.array([[0.0, 0.0]]), k=2).tolist() == [1.5]
    assert ex.knn_distance(ref, ref, k=1, skip_self=True).tolist() == [3.0, 3.0, 4.0]
    rng = np.random.default_rng(0)
    big_ref, x = rng.normal(size=(50, 4)), rng.normal(size=(700, 4))  # 3 chunks of 256
    brute = np.sort(np.linalg.norm(x[:, None] - big_ref[None], axis=2), axis=1)[:, :5].mean(axis=1)
    np.testing.assert_allclose(ex.knn_distance(big_ref, x, k=5), brute, rtol=1e-9)


def test_most_drifted_ranks_flagged_windows():
    table = pd.DataFrame(
        {
            "window_start": pd.date_range("2026-11-20", periods=4, tz="UTC"),
            "flagged": [False, True, True, True],
            "a_fired": [False, True, True, True],
            "b_fired": [False, False, True, True],
            "a_p_value": [0.5, 0.001, 0.001, 0.001],
            "b_p_value": [0.5, 0.2, 0.004, 0.001],
            "centroid_distance": [0.1, 3.0, 1.0, 0.5],
        }
    )
    assert ex.most_drifted(table) == 3  # two detectors fired, then the strongest combined evidence
    table.loc[3, "flagged"] = False
    assert ex.most_drifted(table) == 2
    assert ex.most_drifted(table.assign(flagged=False)) is None


def test_explain_flagged_one_per_flagged_window_with_a_sample(baseline):
    starts = pd.date_range("2026-11-20", periods=3, tz="UTC")
    table = pd.DataFrame({"window_start": starts, "flagged": [True, False, True]})
    samples = {
        starts[0]: rows(np.random.default_rng(6), 100, sharpness=-2.0),
        starts[1]: rows(np.random.default_rng(7), 100),
    }
    out = ex.explain_flagged(baseline, samples, table)
    assert [e.label for e in out] == ["2026-11-20"]  # window 3 has no sample
    assert out[0].n_rows == 100 and out[0].window_start == starts[0]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_hostile_labels_stay_text_in_the_explanation_section(baseline):
    from components.drift.report import explanations_html

    payload = "</script><script>document.title='x'</script><img src=x onerror=alert(1)>"
    window = rows(np.random.default_rng(8), 200, moved=0.5, move=4.0, degradation=payload)
    window.meta[C.PREDICTION_LABEL][:] = payload
    e = ex.explain_window(START, "2026-11-24", baseline, window)
    assert payload in e.sentence  # the figures keep the data as it is
    page = explanations_html([e], {START: 0})
    p = _Tags()
    p.feed(page)
    assert "script" not in [tag for tag, _ in p.tags]
    assert all(str(a.get("src")).startswith("data:image/png") for tag, a in p.tags if tag == "img")
    for _, attrs in p.tags:
        assert not any(name.startswith("on") for name in attrs)
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
