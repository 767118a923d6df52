"""The UMAP view and the HTML report: colourings, clusters, offline HTML with the expected traces."""

from __future__ import annotations

import base64
import gzip
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from plotly.offline import get_plotlyjs

from components.common import schema
from components.drift import view as v
from components.drift.config import DriftConfig
from components.drift.report import read_blocks, read_figure, read_view
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
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", report_html), "external link"
    assert not re.search(r"url\(\s*[\"']?\s*(https?:)?//", report_html), "external stylesheet image"
    assert "cdn.plot.ly" not in report_html
    # plotly.js travels once, packed (gzip + base64), named by its version; never as a second copy
    assert report_html.count('data-library="plotly.js v') == 1 and "var Plotly=" not in report_html
    code = gzip.decompress(base64.b64decode(read_blocks(report_html)["plotly-js"])).decode("utf-8")
    assert code == get_plotlyjs()


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
    assert (
        'id="thumb-sheet-0" data-type="image/webp"' in report_html
    )  # the points' thumbnails: one WebP sheet
    assert [t.split(" ")[0] for t in texts] == ["baseline"] * 300 + ["production"] * 300
    assert "2 of 10 tested daily windows drifted" in report_html
    assert "Clusters (HDBSCAN)" in report_html


def test_inline_scripts_parse(report_html, tmp_path):
    """One script runs (the loader); every other script element is a data block that never runs."""
    import shutil
    import subprocess

    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", report_html, flags=re.S)
    running = [code for attrs, code in scripts if "type=" not in attrs]
    figures = [code for attrs, code in scripts if 'type="application/json"' in attrs]
    packed = [code for attrs, code in scripts if 'type="application/octet-stream"' in attrs]
    assert len(running) == 1 and len(figures) == 3 and len(scripts) == 1 + 3 + len(packed)
    assert all(set(json.loads(code)) == {"data", "layout", "config"} for code in figures)
    assert all(re.fullmatch(r"[A-Za-z0-9+/=]+", code) for code in packed)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot syntax-check the loader")
    path = tmp_path / "loader.js"
    path.write_text(running[0], encoding="utf-8")
    subprocess.run([node, "--check", str(path)], check=True, capture_output=True)


# The light report's loader under node (DecompressionStream, Blob, Response, atob as in a browser), with
# a stub DOM holding the page's real data blocks and a stub Plotly that records what it is asked to draw.
_NODE_PAGE = """
var BLOCKS = __BLOCKS__;
var els = {}, figureBlocks = [], calls = [], drawn = {};
function mk(id) { return els[id] = els[id] || {id: id, style: {}, handlers: {}, textContent: BLOCKS[id] || '',
  value: '', tagName: 'DIV', attrs: {}, getAttribute: function (k) { return this.attrs[k]; },
  on: function (e, f) { this.handlers[e] = f; }, addEventListener: function (e, f) { this.handlers[e] = f; }}; }
Object.keys(BLOCKS).forEach(function (id) { var e = mk(id); e.attrs['data-type'] = 'image/webp'; });
__FIGURES__.forEach(function (f) { figureBlocks.push({textContent: f[1], getAttribute: function () { return f[0]; }}); });
var cluster = mk('cluster-0'); cluster.tagName = 'SPAN'; cluster.attrs['data-point'] = '0';
var body = {attrs: {}, setAttribute: function (k, v) { this.attrs[k] = v; }};
var document = {readyState: 'complete', getElementById: function (id) {
    return (id in els || id in BLOCKS || /^(thumb-|window-|drift-chart|umap|report-loading)/.test(id)) && !/^thumb-sheet-/.test(id) ? mk(id) : (els[id] || null); },
  querySelectorAll: function (q) { return q === 'script.report-figure-data' ? figureBlocks : q.indexOf('span.thumb') === 0 ? [cluster] : []; },
  createElement: function () { return {}; },
  head: {appendChild: function (s) { globalThis.plotlySource = s.textContent; globalThis.Plotly = PlotlyStub; }},
  body: body};
var window = globalThis;
var PlotlyStub = {  // what running the unpacked plotly.js defines, as a stub
  newPlot: function (gd, data, layout) { gd.data = data; drawn[gd.id] = data; return Promise.resolve(gd); },
  restyle: function (g, upd, idx) { calls.push(['restyle', g.id, upd, idx]); },
  relayout: function (g, upd) { calls.push(['relayout', g.id, upd]); }
};
"""


def _run_page(report_html: str, check: str, tmp_path) -> list[dict]:
    """Run the report's loader under node on its real data blocks, then ``check``; its JSON lines."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot run the report's loader")
    loader = re.search(r'<script id="hover-script">(.*?)</script>', report_html, flags=re.S).group(1)
    figures = re.findall(
        r'<script type="application/json" class="report-figure-data" data-div="([\w-]+)">(.*?)</script>',
        report_html,
        flags=re.S,
    )
    page = _NODE_PAGE.replace("__BLOCKS__", json.dumps(read_blocks(report_html))).replace(
        "__FIGURES__", json.dumps(figures)
    )
    # the check runs once the loader has drawn everything (or said why not)
    wait = (
        "\n(function wait(t) { if (body.attrs['data-drawn'] || (els['report-loading'] || {}).textContent || t > 600) {\n"
        + check
        + "\n} else { setTimeout(function () { wait(t + 1); }, 50); } })(0);\n"
    )
    script = page + loader + wait
    path = tmp_path / "page.js"
    path.write_text(script, encoding="utf-8")
    run = subprocess.run([node, str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_the_loader_unpacks_plotly_and_draws_every_figure(report_html, tmp_path):
    (out,) = _run_page(
        report_html,
        """
console.log(JSON.stringify({plotly: globalThis.plotlySource.length, drawn: Object.keys(drawn).sort(),
  body: body.attrs['data-drawn'], notice: els['report-loading'].textContent,
  points3: drawn.umap3d.map(function (t) { return t.x.length; }),
  ids3: drawn.umap3d.map(function (t) { return t.customdata; }),
  z: drawn.umap3d[0].z !== undefined, z2: drawn.umap2d[0].z === undefined}));
""",
        tmp_path,
    )
    assert out["plotly"] == len(get_plotlyjs())  # the whole library, unpacked by DecompressionStream
    assert (
        out["drawn"] == ["drift-chart", "umap2d", "umap3d"] and out["body"] == "true" and out["notice"] == ""
    )
    assert out["z"] and out["z2"]
    # each trace holds exactly the points of its category, as read_figure (the Python twin) fills them
    figure = read_figure(report_html, "umap3d")
    assert out["ids3"] == [t["customdata"] for t in figure["data"]]
    assert out["points3"] == [len(t["x"]) for t in figure["data"]]


def test_hover_shows_the_thumbnail(report_html, tmp_path):
    (out,) = _run_page(
        report_html,
        """
els['umap2d'].handlers['plotly_hover']({points: [{customdata: 0}]});
var img = els['thumb-img'].style;
console.log(JSON.stringify({display: img.display, image: img.backgroundImage, size: img.backgroundSize,
  pos: img.backgroundPosition, width: img.width, text: els['thumb-text'].textContent,
  cluster: cluster.style.display}));
""",
        tmp_path,
    )
    view = read_view(report_html, thumbnails=False)
    atlas = view["atlas"]
    scale = 168 / atlas["cw"]
    assert out["display"] == "block" and out["image"].startswith("url(blob:") and out["width"] == "168px"
    assert out["size"] == f"{atlas['sheets'][0][0] * scale:g}px {atlas['sheets'][0][1] * scale:g}px"
    k = view["tile"][0]
    x, y = (k % atlas["cols"]) * atlas["cw"] * scale, (k // atlas["cols"]) * atlas["ch"] * scale
    assert out["pos"] == f"{0.0 - x:g}px {0.0 - y:g}px"
    assert "predicted" in out["text"] and out["cluster"] == "inline-block"


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
    return read_view(html, thumbnails=False)[name]


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
        block = report_html.split(f'data-div="{div}"', 1)[1].split("</script>", 1)[0]
        raw = json.loads(block.split(">", 1)[1])
        assert '"bdata"' not in block and not any("x" in t or "customdata" in t for t in raw["data"])
        figure = read_figure(report_html, div)
        assert all(isinstance(t["x"], list) and isinstance(t["customdata"], list) for t in figure["data"])


def test_choosing_a_window_shows_its_points_against_the_baseline(report_html, tmp_path):
    """The loader's view under node: the default window, a chart click, "all windows"."""
    point_window = _script_var(report_html, "pointWindow")
    default = _script_var(report_html, "defaultWindow")
    first, after, everything = _run_page(
        report_html,
        """
var first = calls.filter(function (c) { return c[0] === 'restyle'; });
var ids3 = first[0][2].customdata, ids2 = first[1][2].customdata;
console.log(JSON.stringify({
  first3: [].concat.apply([], ids3).sort(function (a, b) { return a - b; }),
  first2: [].concat.apply([], ids2).sort(function (a, b) { return a - b; }),
  z: first[0][2].z !== undefined, menu: els['window-select'].value, caption: els['window-shown'].textContent,
  shapes: calls.filter(function (c) { return c[0] === 'relayout'; })[0][2].shapes.length}));
calls.length = 0;
els['drift-chart'].handlers['plotly_click']({points: [{customdata: [3, 0.5]}]});
console.log(JSON.stringify({after: [].concat.apply([], calls[0][2].customdata).sort(function (a, b) { return a - b; }),
  menu: els['window-select'].value, caption: els['window-shown'].textContent}));
calls.length = 0;
els['window-select'].value = '-1'; els['window-select'].handlers['change']();
var shownNow = calls[0][2].customdata.map(function (c) { return c.length; });
console.log(JSON.stringify({all: shownNow, shapes: calls[2][2].shapes.length}));
""",
        tmp_path,
    )
    # every trace of a colouring together holds each point once: the first colouring's traces
    visible = [t for t in read_figure(report_html, "umap3d")["data"] if t.get("visible")]
    expect = [i for i, k in enumerate(point_window) if k in (-1, default)]
    ours = sorted(i for t in visible for i in t["customdata"] if i in set(expect))
    assert ours == expect
    assert set(expect) <= set(first["first3"]) and set(first["first3"]) == set(first["first2"])
    assert all(point_window[i] in (-1, default) for i in first["first3"])  # the baseline and the most drifted
    assert first["z"] and first["menu"] == str(default) and first["shapes"] == 1
    assert (
        first["caption"].startswith("Window ")
        and "30 production points against 300 baseline" in first["caption"]
    )
    assert "Why: " in first["caption"]  # the default window is flagged: its explanation follows
    assert all(point_window[i] in (-1, 3) for i in after["after"])
    assert {i for i, k in enumerate(point_window) if k in (-1, 3)} <= set(after["after"])
    assert after["menu"] == "3" and "Why:" not in after["caption"]
    full = read_figure(report_html, "umap3d")["data"]
    assert everything == {"all": [len(t["customdata"]) for t in full], "shapes": 0}
