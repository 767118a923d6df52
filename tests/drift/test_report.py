"""The UMAP view and the HTML report: colourings, clusters, offline HTML with the expected traces."""

from __future__ import annotations

import re

import numpy as np
import pytest

from components.common import schema
from components.drift import view as v
from components.drift.config import DriftConfig
from components.drift.stage import run_drift
from tests.fixtures.drift_rows import report_points


def test_colourings_have_the_right_categories():
    dataset = np.array(["baseline", "production", "production", "baseline"])
    pred = np.array(["Trouser", "Bag", "Trouser", "Coat"])
    act = np.array(["Trouser", "Trouser", "Bag", "Coat"])
    cols = {
        c.name: c
        for c in v.colourings(
            dataset,
            pred,
            act,
            np.array([0.9, 0.5, 0.7, 0.8]),
            {"brightness": np.arange(4.0)},
            "Trouser",
            np.array(["none", "blur", "rotate", "none"]),
        )
    }
    assert cols["dataset"].categories == ("baseline", "production")
    assert cols["prediction label"].categories == schema.CLASS_NAMES
    assert cols["actual label"].categories == schema.CLASS_NAMES
    assert cols["correctness"].values.tolist() == ["correct", "wrong", "wrong", "correct"]
    assert cols["confusion (Trouser positive)"].values.tolist() == ["TP", "FN", "FP", "TN"]
    assert cols["degradation (ground truth)"].categories == ("none", "rotate", "blur")
    assert not cols["brightness"].categorical and not cols["prediction score"].categorical
    with pytest.raises(ValueError, match="positive_class='Cat'"):
        v.colourings(dataset, pred, act, np.zeros(4), {}, "Cat")


def test_umap_projects_and_hdbscan_finds_the_separate_group():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(120, 8))
    b = rng.normal(size=(60, 8)) + 8.0
    coords = v.project(np.vstack([a, b]).astype(np.float32), 3, "umap", epochs=30, seed=0)
    assert coords.shape == (180, 3) and np.isfinite(coords).all()
    is_prod = np.r_[np.zeros(120, bool), np.ones(60, bool)]
    labels, found = v.clusters(coords, is_prod, min_cluster_size=10)
    assert found and found[0].production_share > 0.9 and found[0].excess > 0.5
    assert len(labels) == 180
    with pytest.raises(ValueError, match="projection='tsne'"):
        v.project(a, 2, "tsne")


def test_thumbnails_of_missing_links_are_counted(tmp_path):
    loaded = v.load_thumbnails(
        ["", str(tmp_path / "x.png"), "/nonexistent/x.png"], v.ImageScope.of([str(tmp_path)])
    )
    assert loaded.uris == ["", "", ""] and loaded.unreadable == 2 and loaded.outside == 1


@pytest.fixture(scope="module")
def report_html(prepared_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    cfg = DriftConfig(projection="pca", drift_resamples=300, false_alarm_rate=0.02, umap_sample=600)
    run_drift(prepared_dir, prepared_dir, path, None, cfg)
    return path.read_text(encoding="utf-8")


def test_report_is_self_contained(report_html):
    assert not re.search(r"<script[^>]+src=", report_html), "external script"
    assert not re.search(r"<link[^>]+href=[\"']https?:", report_html), "external stylesheet"
    assert "cdn.plot.ly" not in report_html.split("</head>")[1]
    assert report_html.count("plotly.js v") == 1  # the library itself is inlined, once


def test_report_holds_the_expected_traces_and_sections(report_html):
    for div in ("drift-chart", "umap3d", "umap2d"):
        assert f'id="{div}"' in report_html
    assert '"type":"scatter3d"' in report_html and '"type":"bar"' in report_html
    for name in ("mmd2 threshold", "centroid fired", "softmax_ks", "confidence_drop"):
        assert f'"name":"{name}' in report_html
    for label in (
        "dataset",
        "prediction label",
        "actual label",
        "correctness",
        "confusion (T-shirt",
        "brightness",
        "prediction score",
        "degradation (ground truth)",
        "cluster (HDBSCAN",
    ):
        assert f'"label":"{label}' in report_html, label
    assert "plotly_hover" in report_html
    # umap_sample=600: 300 baseline points, 30 from each of the 10 production days, each with its image
    thumbs, texts = report_points(report_html)
    assert len(thumbs) == len(texts) == 600
    assert all(t.startswith("data:image/png;base64,") for t in thumbs)
    assert [t.split(" ")[0] for t in texts] == ["baseline"] * 300 + ["production"] * 300
    assert "2 of 10 tested daily windows drifted" in report_html
    assert "Clusters (HDBSCAN)" in report_html


def test_inline_scripts_parse(report_html, tmp_path):
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot syntax-check the inline scripts")
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", report_html, flags=re.S)
    own = [s for s in scripts if "var Plotly=" not in s and ("plotly_hover" in s or "Plotly.newPlot" in s)]
    assert len(own) == 4  # three figures and the hover script
    for i, code in enumerate(own):
        path = tmp_path / f"s{i}.js"
        path.write_text(code, encoding="utf-8")
        subprocess.run([node, "--check", str(path)], check=True, capture_output=True)


def test_hover_shows_the_thumbnail(report_html, tmp_path):
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run the hover script")
    hover = re.search(r'<script id="hover-script">(.*?)</script>', report_html, flags=re.S).group(1)
    stub = """
var els = {};
function mk(id) { return els[id] = els[id] || {id: id, style: {}, handlers: {}, textContent: '',
  on: function (e, f) { this.handlers[e] = f; }}; }
var document = {readyState: 'complete', getElementById: mk};
var window = {addEventListener: function () {}};
"""
    check = """
els['umap2d'].handlers['plotly_hover']({points: [{customdata: 0}]});
if (!String(els['thumb-img'].src).startsWith('data:image/png;base64,')) { throw new Error('no thumbnail'); }
if (els['thumb-img'].style.display !== 'block') { throw new Error('thumbnail hidden'); }
if (els['thumb-text'].textContent.indexOf('predicted') < 0) { throw new Error('no labels'); }
"""
    path = tmp_path / "hover.js"
    path.write_text(stub + hover + check, encoding="utf-8")
    run = subprocess.run([node, str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
