"""The evaluate stage on small real data: two trained models, a local registry, a drift table; the report."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from components.common import schema
from components.evaluate.config import EvaluateConfig
from components.evaluate.evaluate import evaluate, evaluation_json, gate, model_ref, slice_results
from components.evaluate.report import render
from tests.evaluate.conftest import registry_with_production

# torchvision's notice that its decoders move to TorchCodec, once per image (the stage silences it too)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision")


def _drift_table(dataset_dir, tmp_path, flagged_day: int):
    """A drift table in the data set's own clock (shift 0): daily windows, one of them flagged."""
    import datasets

    ts = pd.Series(datasets.load_from_disk(str(dataset_dir))[schema.PRODUCTION]["prediction_ts"])
    ts = pd.to_datetime(ts, utc=True)
    days = pd.date_range(ts.min().floor("D"), ts.max().floor("D"), freq="D")
    table = pd.DataFrame(
        {
            "window_start": days,
            "window_end": days + pd.Timedelta(days=1),
            "n_rows": [int(((ts >= d) & (ts < d + pd.Timedelta(days=1))).sum()) for d in days],
            "flagged": [i == flagged_day for i in range(len(days))],
        }
    )
    path = tmp_path / "drift_table.parquet"
    table.to_parquet(path)
    return path, table


def test_candidate_against_itself_differs_nowhere_and_the_drift_rule_keeps_it(
    eval_dataset_dir, model_a, tmp_path
):
    registry = registry_with_production(tmp_path / "registry", model_a)
    drift_path, table = _drift_table(eval_dataset_dir, tmp_path, flagged_day=3)
    cfg = EvaluateConfig(registry_uri=registry, drift_uri=str(drift_path), gate_min_slice_rows=20, threads=1)
    result = evaluate(
        model_a, eval_dataset_dir, tmp_path / "r.html", tmp_path / "e.json", cfg, progress=False
    )
    ev = json.loads((tmp_path / "e.json").read_text())
    assert ev == result.evaluation
    overall = ev["slices"][0]
    assert overall["kind"] == "overall" and overall["rows"] == 60 + 140  # every row is labelled here
    assert all(s["difference"] == 0 and s["difference_ci"] == [0, 0] for s in ev["slices"])
    assert ev["production"]["model_version"] == ev["candidate"]["model_version"]
    # the drifted slice holds exactly the production rows of the flagged day (auto clock: exact match)
    drifted = next(s for s in ev["slices"] if s["kind"] == "drift" and s["name"] == "drifted")
    assert drifted["rows"] == int(table["n_rows"][3]) and ev["drift"]["mismatched_rows"] == 0
    assert result.decision == "candidate" and "NOT better" in result.reasons[-1]
    # per class: the rows of each label, the accuracy of a plain count
    classes = [s for s in ev["slices"] if s["kind"] == "class"]
    assert sum(s["rows"] for s in classes) == overall["rows"]
    assert ev["calibration"]["candidate"]["ece"] == pytest.approx(ev["calibration"]["production"]["ece"])
    assert {s["name"] for s in ev["slices"] if s["kind"] == "degradation"} >= {"none", "rotate"}
    assert result.metrics["accuracy_difference"] == 0.0 and result.metrics["promote"] == 0.0


def test_no_registry_promotes_and_another_model_gets_real_differences(
    eval_dataset_dir, model_a, model_b, tmp_path
):
    first = evaluate(
        model_b,
        eval_dataset_dir,
        None,
        None,
        EvaluateConfig(threads=1, eval_splits="validation"),
        progress=False,
    )
    assert first.decision == "promote" and "no registry" in first.reasons[0]
    assert first.evaluation["production"] is None and "production_accuracy" not in first.metrics
    registry = registry_with_production(tmp_path / "registry", model_a)
    cfg = EvaluateConfig(registry_uri=registry, threads=1, gate_margin=0.0, gate_min_slice_rows=1000)
    second = evaluate(model_b, eval_dataset_dir, None, None, cfg, progress=False)
    o = second.evaluation["slices"][0]
    assert o["candidate"]["accuracy"] != o["production"]["accuracy"]  # two models, two answers
    diff = o["candidate"]["accuracy"] - o["production"]["accuracy"]
    assert o["difference"] == pytest.approx(diff)
    assert second.decision == ("promote" if diff >= 0 else "candidate")


def test_the_report_escapes_strings_from_the_data(tmp_path):
    evil = "</script><img src=x onerror=alert(1)>"
    n = 40
    frame = pd.DataFrame(
        {
            "split": [schema.PRODUCTION] * n,
            "row": range(n),
            "image_id": [f"i{i}" for i in range(n)],
            "label": np.arange(n) % schema.NUM_CLASSES,
            "degradation": [evil] * n,
            "ts_us": range(n),
            "brightness": np.linspace(0, 1, n),
            "contrast": np.linspace(0, 1, n),
            "sharpness": np.linspace(0, 1, n),
        }
    )
    cfg = EvaluateConfig(registry_uri=f"file-{evil}")
    correct = np.arange(n) % 2 == 0
    result = gate(slice_results(frame, correct, ~correct, cfg), True, cfg)
    folder = tmp_path / "m"
    folder.mkdir()
    from components.evaluate.evaluate import Rows, calibration

    class _Ref:  # a model reference whose URI comes from outside
        uri, version, registry_version = f"gs://b/{evil}", "abc", "v1"

    calib = {"candidate": calibration(np.full(n, 0.7), correct, 10)}
    ev = evaluation_json(result, _Ref, _Ref, calib, Rows(None, frame, {evil: 1}), [], None, cfg, [evil])
    page = render(json.loads(json.dumps(ev)))
    assert evil not in page and "<img" not in page
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page  # shown as text
    figures = re.search(r'<script type="application/json" id="figures">(.*?)</script>', page, re.S).group(1)
    assert "</" not in figures and json.loads(figures)["fig-diff"]["data"][0]["y"]
    # plotly.js once, compressed (2.0 MB of base64)
    assert page.count('id="plotly-gz"') == 1 and len(page) < 2_500_000


def test_a_bad_drift_table_is_named(eval_dataset_dir, model_a, tmp_path):
    bad = tmp_path / "not.parquet"
    bad.write_text("hello")
    cfg = EvaluateConfig(drift_uri=str(bad), threads=1, eval_splits="validation")
    with pytest.raises(ValueError, match="not.parquet.*not a readable Parquet"):
        evaluate(model_a, eval_dataset_dir, None, None, cfg, progress=False)
    with pytest.raises(ValueError, match="drift_time_shift 'soon'"):
        EvaluateConfig(drift_time_shift="soon")
    assert model_ref("candidate", model_a).version
