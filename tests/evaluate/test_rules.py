"""Intervals, calibration, slices, the drift clock and the gate on small data whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from components.common import schema
from components.evaluate.config import EvaluateConfig
from components.evaluate.evaluate import (
    DRIFT,
    DRIFTED,
    OVERALL,
    auto_shift,
    calibration,
    gate,
    paired_difference,
    slice_masks,
    slice_results,
    wilson,
)

US = 1_000_000
DAY = 86_400 * US


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = wilson(8, 10, 0.95)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = wilson(0, 10, 0.95)
    assert lo == 0.0 and round(hi, 4) == 0.2775
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_paired_difference_on_the_same_rows():
    rng = np.random.default_rng(0)
    same = rng.random(500) < 0.7
    assert paired_difference(same, same, 0.95, 1000, rng) == (0.0, 0.0, 0.0)
    # 60 rows only the candidate gets right, 20 only production: +40/400 = +0.1
    cand = np.zeros(400, bool)
    prod = np.zeros(400, bool)
    cand[:60] = True
    prod[60:80] = True
    est, lo, hi = paired_difference(cand, prod, 0.95, 4000, np.random.default_rng(1))
    assert est == pytest.approx(0.1)
    # paired standard error sqrt((80/400 - 0.1^2) / 400) = 0.0218: the interval is about +-0.043
    assert lo == pytest.approx(0.1 - 0.0427, abs=0.006) and hi == pytest.approx(0.1 + 0.0427, abs=0.006)


def test_expected_calibration_error_by_hand():
    conf = np.array([0.95] * 10 + [0.55] * 10)
    correct = np.array([True] * 5 + [False] * 5 + [True] * 10)
    c = calibration(conf, correct, 10)
    # bin 0.9-1.0: |0.5 - 0.95| x 10/20; bin 0.5-0.6: |1.0 - 0.55| x 10/20
    assert c.ece == pytest.approx(0.45)
    assert sum(c.bin_rows) == 20 and c.bin_rows[9] == 10 and c.bin_rows[5] == 10
    assert c.bin_accuracy[9] == 0.5 and c.bin_confidence[5] == pytest.approx(0.55)
    assert calibration(np.full(10, 0.8), np.arange(10) < 8, 15).ece == pytest.approx(0.0, abs=1e-9)


def _frame(n: int = 1000, drifted: bool = True) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    split = np.where(np.arange(n) < n // 2, schema.VALIDATION, schema.PRODUCTION)
    frame = pd.DataFrame(
        {
            "split": split,
            "row": np.arange(n),
            "image_id": [f"id-{i}" for i in range(n)],
            "label": np.arange(n) % schema.NUM_CLASSES,
            "degradation": np.where(
                split == schema.PRODUCTION, np.where(np.arange(n) % 2, "rotate", "blur"), "none"
            ),
            "ts_us": np.arange(n) * 1000,
            "brightness": rng.random(n),
            "contrast": rng.random(n),
            "sharpness": rng.random(n),
        }
    )
    if drifted:
        frame["drifted"] = (split == schema.PRODUCTION) & (np.arange(n) >= 3 * n // 4)
    return frame


def test_slices_hold_the_rows_they_name():
    frame = _frame()
    masks = {(k, n): m for k, n, m in slice_masks(frame, EvaluateConfig(feature_bins=4))}
    assert masks[(OVERALL, "all rows")].sum() == 1000
    assert masks[("split", schema.PRODUCTION)].sum() == 500
    assert masks[("class", schema.CLASS_NAMES[3])].sum() == 100
    assert masks[("degradation", "rotate")].sum() == 250 and masks[("degradation", "none")].sum() == 500
    bins = [m for (k, _), m in masks.items() if k == "brightness"]
    assert len(bins) == 4 and sum(int(m.sum()) for m in bins) == 1000  # every row in exactly one bin
    assert [m.sum() for m in bins] == pytest.approx([250] * 4, abs=30)  # quartiles of validation
    assert masks[(DRIFT, DRIFTED)].sum() == 250 and masks[(DRIFT, "not drifted")].sum() == 250


def test_slice_figures_agree_with_a_count_by_hand():
    frame = _frame()
    cand = (np.arange(1000) % 3) != 0
    prod = (np.arange(1000) % 2) == 0
    results = {(s.kind, s.name): s for s in slice_results(frame, cand, prod, EvaluateConfig())}
    o = results[(OVERALL, "all rows")]
    assert o.candidate.correct == int(cand.sum()) and o.production.correct == int(prod.sum())
    assert o.difference == pytest.approx(cand.mean() - prod.mean())
    shirt = results[("class", schema.CLASS_NAMES[0])]
    m = frame["label"].to_numpy() == 0
    assert shirt.rows == 100 and shirt.candidate.accuracy == pytest.approx(cand[m].mean())
    assert shirt.diff_low <= shirt.difference <= shirt.diff_high


# ---- the gate ------------------------------------------------------------------------------------
def _decide(cand, prod, frame=None, **cfg):
    config = EvaluateConfig(**cfg)
    frame = _frame() if frame is None else frame
    return gate(slice_results(frame, cand, prod, config), prod is not None, config, "no registry")


def _base():
    """Both models right on 80% of rows; the candidate also right on the drifted rows."""
    prod = (np.arange(1000) % 5) != 0
    cand = prod.copy()
    cand[750:] = True  # drifted rows: better
    return cand, prod


def test_gate_promotes_a_candidate_that_holds_everywhere_and_is_better_on_drift():
    cand, prod = _base()
    result = _decide(cand, prod)
    assert result.decision == "promote", result.reasons
    assert "better than production" in result.reasons[-1]


def test_gate_refuses_a_candidate_worse_overall():
    cand, prod = _base()
    cand[:500] = False  # worse on validation: overall far below
    result = _decide(cand, prod)
    assert result.decision == "candidate"
    assert (
        result.reasons[0].startswith("kept as a candidate: overall")
        and "is worse than -0.01" in result.reasons[0]
    )


def test_gate_refuses_a_candidate_worse_on_one_large_slice():
    cand, prod = _base()
    cls0 = np.flatnonzero((np.arange(1000) % 10 == 0) & (np.arange(1000) < 750))
    cand[cls0[:30]] = False  # wrong on 30 T-shirt rows...
    prod[cls0[:30]] = True  # ...that production gets right
    others = np.flatnonzero((np.arange(1000) % 10 == 5) & (np.arange(1000) < 750))
    cand[others[:30]] = True  # ...and right on 30 others: overall unchanged
    prod[others[:30]] = False
    result = _decide(cand, prod, gate_min_slice_rows=60)
    assert result.decision == "candidate"
    assert "class=T-shirt/top" in result.reasons[1]
    # the same loss on a slice smaller than gate_min_slice_rows is reported, not gated
    assert _decide(cand, prod, gate_min_slice_rows=101).decision == "promote"


def test_gate_refuses_a_candidate_not_better_where_drift_was_found():
    prod = (np.arange(1000) % 5) != 0
    result = _decide(prod.copy(), prod)
    assert result.decision == "candidate"
    assert "is NOT better than production" in result.reasons[-1]
    assert _decide(prod.copy(), prod, require_better_on_drift=False).decision == "promote"
    # no drift slices: the rule does not apply
    no_drift = _decide(prod.copy(), prod, frame=_frame(drifted=False))
    assert no_drift.decision == "promote" and "rule not applied" in no_drift.reasons[-1]


def test_gate_promotes_when_there_is_no_production_model():
    cand, _ = _base()
    result = _decide(cand, None)
    assert result.decision == "promote"
    assert "no registry" in result.reasons[0] and "first production version" in result.reasons[0]
    assert all(s.production is None and s.passed is None for s in result.slices)


def test_gate_by_interval_asks_for_more_than_the_estimate():
    prod = (np.arange(1000) % 5) != 0
    cand = prod.copy()
    cand[np.flatnonzero(prod)[:8]] = False  # -8/1000 overall: within the margin by its estimate...
    rules = {"gate_min_slice_rows": 1000, "require_better_on_drift": False}
    assert _decide(cand, prod, **rules).decision == "promote"
    # ...but its interval reaches about -0.008 - 1.96 x sqrt(8)/1000 = -0.0135: not shown within -0.01
    by_ci = _decide(cand, prod, gate_use_ci=True, **rules)
    assert by_ci.decision == "candidate" and "lower bound" in by_ci.reasons[0]


# ---- the drift table's clock ---------------------------------------------------------------------
def test_auto_shift_finds_the_clock_of_the_drift_table():
    rng = np.random.default_rng(5)
    start = 1_780_000_000 * US
    ts = start + rng.integers(0, 5 * DAY, 700)
    shift = 3 * DAY + 5 * 3600 * US + 17 * 60 * US + 3 * US  # what prepare added: the newest row -> "now"
    shifted = ts + shift
    origin = (shifted.min() // DAY) * DAY
    keys = (shifted - origin) // DAY
    windows = np.arange(keys.max() + 1)
    table = pd.DataFrame(
        {
            "window_start": pd.to_datetime(origin + windows * DAY, unit="us", utc=True),
            "window_end": pd.to_datetime(origin + (windows + 1) * DAY, unit="us", utc=True),
            "n_rows": np.bincount(keys),
            "flagged": windows == 2,
        }
    )
    found, mismatched = auto_shift(ts, table)
    assert mismatched == 0
    assert np.array_equal((ts + int(found * US) - origin) // DAY, keys)  # every row in its own window
