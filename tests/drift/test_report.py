"""The UMAP view and the HTML report: colourings, clusters, offline HTML with the expected traces."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

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
def report_run(prepared_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("report") / "report.html"
    cfg = DriftConfig(projection="pca", drift_resamples=300, false_alarm_rate=0.02, umap_sample=600)
    result = run_drift(prepared_dir, prepared_dir, path, None, cfg)
    return path.read_text(encoding="utf-8"), result


@pytest.fixture(scope="module")
def report_html(report_run):
    return report_run[0]


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
    assert len(own) == 4  # three figures and the hover script (which also drives the window menu)
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


# -- issue 12: why it drifted, and the view follows the chart -----------------------------------------


class _Page(HTMLParser):
    """The report's explanations, window menu options and their selection, parsed from its HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sentences: list[str] = []
        self.why_ids: list[str] = []
        self.options: list[tuple[str, str, bool]] = []  # value, text, selected
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "p" and a.get("class") == "why-sentence":
            self._in = "sentence"
            self.sentences.append("")
        elif tag == "div" and a.get("class") == "why":
            self.why_ids.append(a.get("id") or "")
        elif tag == "option":
            self._in = "option"
            self.options.append((a.get("value") or "", "", "selected" in a))

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "sentence":
            self.sentences[-1] += data
        elif self._in == "option":
            value, text, sel = self.options[-1]
            self.options[-1] = (value, text + data, sel)


def _page(html: str) -> _Page:
    p = _Page()
    p.feed(html)
    return p


def _script_var(html: str, name: str):
    hover = re.search(r'<script id="hover-script">(.*?)</script>', html, flags=re.S).group(1)
    return json.loads(re.search(rf"var {name} = (.*?);\n", hover).group(1))


def test_one_explanation_per_flagged_window(report_run):
    html, result = report_run
    flagged = result.table[result.table["flagged"]]
    page = _page(html)
    assert len(page.sentences) == len(flagged) == 2
    positions = [int(i) for i in flagged.index]
    assert page.why_ids == [f"why-{i}" for i in positions]
    for sentence, start in zip(page.sentences, flagged["window_start"], strict=True):
        # the fixture's drifted days: every row shifted, sharpness divided by 2 ("blur")
        assert sentence.startswith(f"{start:%Y-%m-%d}: sharpness fell by "), sentence
        assert "(ground truth: blur ×8)" in sentence
    assert html.index("Why it drifted") < html.index("Embedding view")


def test_the_window_menu_lists_the_windows_and_starts_on_the_most_drifted(report_run):
    from components.drift.explain import most_drifted

    html, result = report_run
    options = _page(html).options
    table = result.table
    assert [v for v, _, _ in options] == [str(i) for i in range(len(table))] + ["-1"]
    for (_, text, _), start in zip(options[:-1], table["window_start"], strict=True):
        assert text.startswith(f"{start:%Y-%m-%d} · ")
    selected = [v for v, _, sel in options if sel]
    best = most_drifted(table)
    assert best is not None and table.loc[best, "flagged"]
    assert selected == [str(best)]
    assert _script_var(html, "defaultWindow") == best


def test_each_window_has_its_own_point_set(report_html):
    point_window = _script_var(report_html, "pointWindow")
    thumbs, texts = report_points(report_html)
    assert len(point_window) == len(texts) == 600
    # umap_sample=600: 300 baseline points (-1), then a fixed budget of 30 from each of the 10 windows
    counts = {k: point_window.count(k) for k in set(point_window)}
    assert counts == {-1: 300, **{k: 30 for k in range(10)}}
    for k, text in zip(point_window, texts, strict=True):
        assert text.startswith("baseline" if k < 0 else "production")
    windows = _script_var(report_html, "windows")
    assert [w["pos"] for w in windows] == list(range(10))
    flagged_why = [w for w in windows if w["why"]]
    assert [w["flagged"] for w in flagged_why] == [True, True]


def test_the_umap_figures_hold_plain_lists_the_menu_can_filter(report_html):
    for div in ("umap3d", "umap2d"):
        block = report_html.split(f'id="{div}"', 1)[1].split("</script>", 1)[0]
        assert '"customdata":[' in block and '"bdata"' not in block.split('"layout"', 1)[0]


_PLOTLY_STUB = """
var calls = [];
function gd(id, traces) { var e = mk(id); e.data = traces; return e; }
var Plotly = {
  restyle: function (g, upd, idx) { calls.push(['restyle', g.id, upd, idx]); },
  relayout: function (g, upd) { calls.push(['relayout', g.id, upd]); }
};
"""


def test_choosing_a_window_shows_its_points_against_the_baseline(report_html, tmp_path):
    """The view's script under node, with a stub DOM and a stub Plotly: the default window, a chart click."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run the view's script")
    hover = re.search(r'<script id="hover-script">(.*?)</script>', report_html, flags=re.S).group(1)
    point_window = _script_var(report_html, "pointWindow")
    default = _script_var(report_html, "defaultWindow")
    stub = (
        """
var els = {};
function mk(id) { return els[id] = els[id] || {id: id, style: {}, handlers: {}, textContent: '', value: '',
  on: function (e, f) { this.handlers[e] = f; },
  addEventListener: function (e, f) { this.handlers[e] = f; }}; }
var document = {readyState: 'complete', getElementById: mk};
var window = {addEventListener: function () {}};
"""
        + _PLOTLY_STUB
        + """
var n = N_POINTS;
var all = []; for (var i = 0; i < n; i++) { all.push(i); }
gd('umap3d', [{x: all.slice(), y: all.slice(), z: all.slice(), customdata: all.slice(), name: 'production (600)',
               marker: {color: all.slice()}}]);
gd('umap2d', [{x: all.slice(), y: all.slice(), customdata: all.slice(), name: 'production (600)',
               marker: {color: 'red'}}]);
gd('drift-chart', [{}]);
""".replace("N_POINTS", str(len(point_window)))
    )
    check = """
function shownAfter(call) { return JSON.stringify(call[2].customdata[0]); }
var first = calls.filter(function (c) { return c[0] === 'restyle'; });
console.log(JSON.stringify({
  first3: first[0][2].customdata[0], first2: first[1][2].customdata[0], colour: first[0][2]['marker.color'][0],
  name: first[0][2].name[0], z: first[0][2].z !== undefined, menu: els['window-select'].value,
  caption: els['window-shown'].textContent,
  shapes: calls.filter(function (c) { return c[0] === 'relayout'; })[0][2].shapes.length}));
calls.length = 0;
els['drift-chart'].handlers['plotly_click']({points: [{customdata: [3, 0.5]}]});
console.log(JSON.stringify({after: calls[0][2].customdata[0], menu: els['window-select'].value,
  caption: els['window-shown'].textContent}));
calls.length = 0;
els['window-select'].value = '-1'; els['window-select'].handlers['change']();
console.log(JSON.stringify({all: calls[0][2].customdata[0].length, shapes: calls[2][2].shapes.length}));
"""
    path = tmp_path / "view.js"
    path.write_text(stub + hover + check, encoding="utf-8")
    run = subprocess.run([node, str(path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    first, after, everything = (json.loads(line) for line in run.stdout.splitlines())
    expect = [i for i, k in enumerate(point_window) if k in (-1, default)]
    assert first["first3"] == first["first2"] == expect  # the baseline and the most drifted window
    assert first["colour"] == expect and first["name"] == f"production ({len(expect)})" and first["z"]
    assert first["menu"] == str(default) and first["shapes"] == 1
    assert (
        first["caption"].startswith("Window ")
        and "30 production points against 300 baseline" in first["caption"]
    )
    assert "Why: " in first["caption"]  # the default window is flagged: its explanation follows
    assert after["after"] == [i for i, k in enumerate(point_window) if k in (-1, 3)]
    assert after["menu"] == "3" and "Why:" not in after["caption"]
    assert everything == {"all": len(point_window), "shapes": 0}
