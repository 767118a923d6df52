"""The self-contained HTML report: drift chart, history trend, UMAP view with hover thumbnails, clusters.

Every string that comes from the data (labels, degradation, ids, links, history values) is inert:
HTML-escaped where it lands in HTML (:func:`html.escape`), escaped for plotly's text markup where
it lands in a figure (:func:`plotly_text`), serialised with :func:`script_json` where it lands in
a script, and shown in the hover panel through ``textContent`` (never parsed as HTML). plotly's
own figure JSON (``plotly.io.to_html``) escapes ``<``, ``>`` and ``/`` itself (plotly 7.1).
"""

from __future__ import annotations

import base64
import gzip
import html
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.io.json import to_json_plotly
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from components.common.history import MODEL_VERSION, RECORDED_AT, HistoryUpdate
from components.common.html import gzip_base64, plotly_js_gzip_base64, plotly_text, script_json, script_safe
from components.drift.detectors import DETECTORS
from components.drift.explain import Example, Explanation, named_classes, named_features
from components.drift.view import Cluster, Colouring

# Statuses of a run, shown at the top of the report (the stage's ``status`` output).
STATUS_TITLES = {"drift": "Drift", "no-drift": "No drift", "insufficient-data": "Insufficient data"}


@dataclass
class ViewData:
    """The embedding view's points: 3-D and 2-D coordinates, colourings, hover texts, thumbnails."""

    coords3: np.ndarray
    coords2: np.ndarray
    colourings: list[Colouring]
    hover: list[str]  # plain text per point (lines separated by newlines; never HTML)
    thumbnails: list[str]  # data URIs per point ("" when unreadable)
    clusters: list[Cluster] = field(default_factory=list)
    degradation: np.ndarray | None = None
    predicted: np.ndarray | None = None
    is_production: np.ndarray | None = None
    title: str = ""
    # per point: the drift table's row of its window (-1: baseline); None: one set of points
    point_window: np.ndarray | None = None
    default_window: int | None = None  # the table row shown first (None: every window)


def drift_chart(table: pd.DataFrame, detectors: list[str]) -> go.Figure:
    """Row counts as bars, then one panel per detector with its threshold and flagged windows."""
    rows = 1 + len(detectors)
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.03,
        subplot_titles=["rows per window (red: flagged, orange: too few rows)"]
        + [DETECTORS[d].title if d in DETECTORS else d for d in detectors],
    )
    x = table["window_start"]
    pos = np.arange(len(table))  # customdata[0] of every point: its table row (the view's window menu)
    colours = np.where(table["flagged"], "#d62728", np.where(table["status"] == "ok", "#7f7f7f", "#ff7f0e"))
    fig.add_trace(
        go.Bar(x=x, y=table["n_rows"], marker_color=colours, name="rows", customdata=pos.tolist()),
        row=1,
        col=1,
    )
    for i, det in enumerate(detectors, start=2):
        fired = table[f"{det}_fired"].fillna(False).astype(bool)
        p_values = table[f"{det}_p_value"].to_numpy(dtype=float)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=table[f"{det}_score"],
                mode="lines+markers",
                name=det,
                customdata=[
                    [int(k), None if np.isnan(p) else float(p)] for k, p in zip(pos, p_values, strict=True)
                ],
                hovertemplate="%{x}<br>score %{y:.4g}<br>p %{customdata[1]:.3g}<extra>" + det + "</extra>",
            ),
            row=i,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=table[f"{det}_threshold"],
                mode="lines",
                line={"dash": "dash", "color": "#d62728", "width": 1},
                name=f"{det} threshold",
                hoverinfo="skip",
            ),
            row=i,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x[fired],
                y=table.loc[fired, f"{det}_score"],
                mode="markers",
                marker={"color": "#d62728", "size": 11, "symbol": "x"},
                name=f"{det} fired",
                customdata=pos[fired.to_numpy()].tolist(),
            ),
            row=i,
            col=1,
        )
    fig.update_layout(height=180 * rows + 80, showlegend=False, margin={"t": 40, "l": 60, "r": 20, "b": 40})
    return fig


# The trend's markers: earlier runs' windows, this run's windows, and flagged windows (either run).
EARLIER_STYLE = {"color": "#7f7f7f", "size": 6, "symbol": "circle"}
THIS_RUN_STYLE = {"color": "#1f77b4", "size": 10, "symbol": "diamond"}
FLAGGED_STYLE = {
    "color": "rgba(0,0,0,0)",
    "size": 16,
    "symbol": "circle-open",
    "line": {"color": "#d62728", "width": 2},
}
TREND_TRACES = ("earlier runs", "this run", "flagged")


def min_p_value(table: pd.DataFrame) -> pd.Series:
    """Per window, the smallest p-value of any detector (NaN where no detector was run)."""
    cols = [c for c in table.columns if c.endswith("_p_value")]
    if not cols:
        return pd.Series(np.nan, index=table.index)
    return table[cols].astype(float).min(axis=1, skipna=True)


def trend_hover(history: pd.DataFrame) -> list[str]:
    """Hover text per stored window: start, rows, status, fired detectors, when and by which model.

    Strings from the data (status, detectors, model version) go through :func:`plotly_text`:
    plotly renders hover text as a subset of HTML.
    """
    out = []
    for _, r in history.iterrows():
        recorded = r[RECORDED_AT]
        out.append(
            f"{r['window_start']:%Y-%m-%d %H:%M} ({plotly_text(r['window'])}), {int(r['n_rows'])} rows, "
            f"{plotly_text(r['status'])}<br>fired: {plotly_text(str(r['fired']) or 'none')}<br>"
            f"recorded {recorded:%Y-%m-%d %H:%M} UTC"
            + (f", model {plotly_text(r[MODEL_VERSION])}" if r[MODEL_VERSION] else "")
        )
    return out


def trend_chart(history: pd.DataFrame, this_run: pd.Series) -> go.Figure:
    """The drift of every stored window: smallest p-value (log) and centroid distance.

    Earlier runs' windows are grey circles, this run's blue diamonds on a shaded band, flagged
    windows (of any run) ringed in red; a grey line joins the windows in time.
    """
    panels = (
        ("smallest p-value of any detector (log scale; lower = more drift)", min_p_value(history)),
        ("centroid distance (all rows of the window)", history["centroid_distance"].astype(float)),
    )
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, subplot_titles=[t for t, _ in panels]
    )
    x = history["window_start"]
    hover = np.array(trend_hover(history), dtype=object)
    run = this_run.to_numpy(dtype=bool)
    flagged = history["flagged"].fillna(False).to_numpy(dtype=bool)
    groups = ((TREND_TRACES[0], ~run, EARLIER_STYLE), (TREND_TRACES[1], run, THIS_RUN_STYLE))
    for row, (_, y) in enumerate(panels, start=1):
        y = y.to_numpy(dtype=float)
        first = row == 1
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line={"color": "#c7c7c7", "width": 1},
                name="all windows",
                hoverinfo="skip",
                showlegend=False,
            ),
            row=row,
            col=1,
        )
        for name, mask, style in groups:
            fig.add_trace(
                go.Scatter(
                    x=x[mask],
                    y=y[mask],
                    mode="markers",
                    marker=style,
                    name=name,
                    legendgroup=name,
                    showlegend=first,
                    text=hover[mask],
                    hovertemplate="%{text}<br>%{y:.4g}<extra></extra>",
                ),
                row=row,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=x[flagged],
                y=y[flagged],
                mode="markers",
                marker=FLAGGED_STYLE,
                name=TREND_TRACES[2],
                legendgroup=TREND_TRACES[2],
                showlegend=first,
                hoverinfo="skip",
            ),
            row=row,
            col=1,
        )
    fig.update_yaxes(type="log", row=1, col=1)
    if run.any():
        fig.add_vrect(
            x0=history.loc[run, "window_start"].min(),
            x1=history.loc[run, "window_end"].max(),
            fillcolor="#1f77b4",
            opacity=0.08,
            line_width=0,
            annotation_text="this run",
            annotation_position="top left",
        )
    fig.update_layout(
        height=520, margin={"t": 50, "l": 60, "r": 20, "b": 40}, legend={"orientation": "h", "y": -0.08}
    )
    return fig


def trend_html(history: HistoryUpdate | None, window: str, light: bool = True) -> str:
    """The report's history section: the trend chart over every stored window of this run's length.

    ``light``: the chart as a figure block drawn by the report's loader (:func:`render`); False:
    today's inline ``Plotly.newPlot`` script (the benchmark's baseline).
    """
    if history is None or not history.uri:
        return (
            "<p>No drift history: <code>history_uri</code> is empty, so this run's windows were not "
            "stored and no trend across runs is shown. Give it the URI of one Parquet file to keep one.</p>"
        )
    t, run = history.table, history.this_run
    same = (t["window"] == window).to_numpy()
    other = int((~same).sum())
    earlier = t[same & ~run.to_numpy()]
    note = (
        f"<p>{int(same.sum())} {html.escape(window)} windows stored in <code>{html.escape(history.uri)}</code>: "
        f"this run's {int(run.sum())} (blue diamonds, shaded) and {len(earlier)} of earlier runs (grey), "
        f"{int(earlier['flagged'].sum())} of which flagged (red rings). "
        "<b>The alert is about this run's windows only</b>: flagged windows of earlier runs are shown "
        "here but never raise it again."
        + (f" {other} stored windows of other lengths are not shown." if other else "")
        + "</p>"
    )
    keep = pd.Series(same, index=t.index)
    fig = trend_chart(t[keep].reset_index(drop=True), run[keep].reset_index(drop=True))
    return note + (_fig_block(fig, "drift-trend") if light else _fig_div(fig, "drift-trend"))


def _palette(n: int) -> list[str]:
    base = qualitative.D3 + qualitative.Set3
    return [base[i % len(base)] for i in range(n)]


def _xyz(coords: np.ndarray, mask: np.ndarray | slice, dims: int) -> dict[str, list[float]]:
    """Plain lists (not plotly's binary arrays), so the window menu's script can filter them."""
    axes = ("x", "y", "z")[:dims]
    return {a: coords[mask, i].astype(float).tolist() for i, a in enumerate(axes)}


def umap_figure(view: ViewData, dims: int, light: bool = False) -> go.Figure:
    """One figure holding every colouring as traces; a dropdown switches which are visible.

    Every trace's ``customdata`` is its points' indices; the data are plain lists, so the window
    menu's script (:data:`_HOVER_JS`) can show the points of one window and the baseline.
    ``light``: the traces without their points (no ``x``/``y``/``z``, ``customdata`` or
    continuous colours): the report's loader fills them from the view's shared payload, following
    :func:`umap_fill` (the figure's ``layout.meta["fill"]``).
    """
    coords = view.coords3 if dims == 3 else view.coords2
    scatter = go.Scatter3d if dims == 3 else go.Scattergl
    idx = np.arange(len(coords))
    fig = go.Figure()
    groups: list[tuple[str, list[int]]] = []
    fill: list[list[int]] = []  # per trace: [colouring] (continuous) or [colouring, category code]
    marker_size = 3 if dims == 3 else 5
    for j, col in enumerate(view.colourings):
        members = []
        if col.categorical:
            for code, (cat, colour) in enumerate(
                zip(col.categories, _palette(len(col.categories)), strict=True)
            ):
                mask = col.values == cat
                members.append(len(fig.data))
                fill.append([j, code])
                points = {} if light else {**_xyz(coords, mask, dims), "customdata": idx[mask].tolist()}
                fig.add_trace(
                    scatter(
                        **points,
                        mode="markers",
                        name=f"{plotly_text(cat)} ({int(mask.sum())})",
                        legendgroup=col.name,
                        marker={"size": marker_size, "color": colour},
                        hoverinfo="none",
                        visible=False,
                    )
                )
        else:
            members.append(len(fig.data))
            fill.append([j])
            marker = {
                "size": marker_size,
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"title": {"text": plotly_text(col.name)}},
            }
            points = {}
            if not light:
                points = {**_xyz(coords, slice(None), dims), "customdata": idx.tolist()}
                marker["color"] = np.asarray(col.values, dtype=float).tolist()
            fig.add_trace(
                scatter(
                    **points,
                    mode="markers",
                    name=plotly_text(col.name),
                    marker=marker,
                    hoverinfo="none",
                    visible=False,
                )
            )
        groups.append((col.name, members))
    n = len(fig.data)
    buttons = []
    for name, members in groups:
        vis = [False] * n
        for m in members:
            vis[m] = True
        buttons.append({"label": plotly_text(name), "method": "update", "args": [{"visible": vis}]})
    for m in groups[0][1]:
        fig.data[m].visible = True
    fig.update_layout(
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 0.0, "y": 1.12, "xanchor": "left"}],
        height=620,
        margin={"t": 60, "l": 10, "r": 10, "b": 10},
        legend={"itemsizing": "constant"},
        title={"text": f"{plotly_text(view.title)} ({dims}-D), colour by:", "x": 0.25, "y": 0.98},
    )
    if light:
        fig.update_layout(meta={"fill": {"dims": dims, "traces": fill}})
    return fig


# The view's one script: the hover panel, and the window menu (also driven by clicks on the drift
# chart) that shows one window's points against the baseline. Data arrive through script_json
# and are shown with textContent only.
_HOVER_JS = """
(function() {
  var thumbs = %(thumbs)s;
  var texts = %(texts)s;
  var pointWindow = %(point_window)s;
  var windows = %(windows)s;
  var defaultWindow = %(default_window)s;
  var byPos = {};
  windows.forEach(function(w) { byPos[w.pos] = w; });
  var originals = {};
  function attach(id) {
    var el = document.getElementById(id);
    if (!el || !el.on) { return; }
    el.on('plotly_hover', function(ev) {
      var p = ev.points[0]; var i = p.customdata;
      if (Array.isArray(i)) { i = i[0]; }
      var img = document.getElementById('thumb-img'); var txt = document.getElementById('thumb-text');
      if (thumbs[i]) { img.src = thumbs[i]; img.style.display = 'block'; } else { img.style.display = 'none'; }
      txt.textContent = texts[i] || '';
    });
  }
  function shown(i, w) { var k = pointWindow[i]; return k < 0 || w < 0 || k === w; }
  function filterView(id, w) {
    var gd = document.getElementById(id);
    if (!gd || !gd.data || typeof Plotly === 'undefined') { return; }
    if (!originals[id]) {
      originals[id] = gd.data.map(function(t) {
        var c = t.marker && t.marker.color;
        return {x: t.x, y: t.y, z: t.z, ids: t.customdata || [], name: t.name || '',
                color: Array.isArray(c) ? c : null, colour: c};
      });
    }
    var o3 = originals[id].length && originals[id][0].z !== undefined;
    var upd = {x: [], y: [], customdata: [], name: [], 'marker.color': []};
    if (o3) { upd.z = []; }
    var traces = [];
    originals[id].forEach(function(o, t) {
      var keep = [];
      for (var j = 0; j < o.ids.length; j++) { if (shown(o.ids[j], w)) { keep.push(j); } }
      function pick(a) { return keep.map(function(j) { return a[j]; }); }
      upd.x.push(pick(o.x)); upd.y.push(pick(o.y)); if (o3) { upd.z.push(pick(o.z)); }
      upd.customdata.push(pick(o.ids));
      upd['marker.color'].push(o.color ? pick(o.color) : o.colour);
      upd.name.push(o.name.replace(/\\(\\d+\\)$/, '(' + keep.length + ')'));
      traces.push(t);
    });
    Plotly.restyle(gd, upd, traces);
  }
  function highlight(w) {
    var gd = document.getElementById('drift-chart');
    if (!gd || !gd.data || typeof Plotly === 'undefined') { return; }
    var info = byPos[w];
    var shapes = info ? [{type: 'rect', xref: 'x', yref: 'paper', x0: info.start, x1: info.end, y0: 0, y1: 1,
                          fillcolor: '#1f77b4', opacity: 0.15, line: {width: 0}, layer: 'below'}] : [];
    Plotly.relayout(gd, {shapes: shapes});
  }
  function caption(w) {
    var el = document.getElementById('window-shown');
    if (!el) { return; }
    var nProd = 0, nBase = 0;
    for (var i = 0; i < pointWindow.length; i++) {
      if (pointWindow[i] < 0) { nBase++; } else if (w < 0 || pointWindow[i] === w) { nProd++; }
    }
    var info = byPos[w];
    el.textContent = (info ? 'Window ' + info.label : 'All windows') + ': ' + nProd +
      ' production points against ' + nBase + ' baseline points.' + (info && info.why ? ' Why: ' + info.why : '');
  }
  function select(w) {
    if (typeof w !== 'number' || isNaN(w) || (w >= 0 && !byPos[w])) { return false; }
    var menu = document.getElementById('window-select');
    if (menu) { menu.value = String(w); }
    filterView('umap3d', w); filterView('umap2d', w); highlight(w); caption(w);
    return true;
  }
  function attachAll() {
    attach('umap3d'); attach('umap2d');
    var menu = document.getElementById('window-select');
    if (menu && menu.addEventListener) {
      menu.addEventListener('change', function() { select(parseInt(menu.value, 10)); });
    }
    var chart = document.getElementById('drift-chart');
    if (chart && chart.on) {
      chart.on('plotly_click', function(ev) {
        var c = ev.points[0].customdata;
        if (select(Array.isArray(c) ? c[0] : c)) {
          var view = document.getElementById('window-pick');
          if (view && view.scrollIntoView) { view.scrollIntoView({behavior: 'smooth'}); }
        }
      });
    }
    if (document.querySelectorAll) {
      Array.prototype.forEach.call(document.querySelectorAll('button.show-window'), function(b) {
        b.addEventListener('click', function() {
          if (select(parseInt(b.getAttribute('data-window'), 10))) {
            var view = document.getElementById('window-pick');
            if (view && view.scrollIntoView) { view.scrollIntoView({behavior: 'smooth'}); }
          }
        });
      });
    }
    select(defaultWindow);
  }
  window.driftView = {select: select};
  if (document.readyState === 'complete') { attachAll(); } else { window.addEventListener('load', attachAll); }
})();
"""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:16px;color:#222}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:1.6em}
.summary{background:#f6f6f6;padding:10px 14px;border-left:4px solid #d62728}
.view{display:flex;gap:12px;align-items:flex-start}.view .plots{flex:1;min-width:0}
#thumb-panel{width:190px;position:sticky;top:10px;border:1px solid #ddd;padding:8px;font-size:0.85em}
#thumb-text{white-space:pre-line}
.status{font-size:1.1em;font-weight:bold;padding:8px 14px;margin:8px 0}
.status.drift{background:#fde0e0}.status.no-drift{background:#e0f3e0}
.status.insufficient-data{background:#fff1d6;border:2px solid #ff7f0e}
#thumb-img{width:168px;image-rendering:pixelated;display:none}
table{border-collapse:collapse;font-size:0.85em} td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
.cluster img{width:48px;margin:1px;image-rendering:pixelated}
.why{border-left:4px solid #d62728;padding:4px 12px;margin:10px 0}
.why h3{font-size:1em;margin:4px 0}.why-sentence{font-size:1.02em}
.why-tables{display:flex;gap:16px;flex-wrap:wrap;align-items:flex-start}
.why tr.moved td{font-weight:bold;background:#fff3d6}
.why-examples{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0}
.why-examples figure{margin:0;width:72px;font-size:0.75em;text-align:center}
.why-examples img{width:64px;height:64px;image-rendering:pixelated;border:1px solid #ccc}
.why-examples .noimg{width:64px;height:64px;background:#eee;display:inline-block}
#window-pick{background:#f6f6f6;padding:6px 10px;margin:6px 0}
#window-shown{margin:4px 0 0 0}
"""
# the light report's thumbnails: tiles of one sheet shown as CSS backgrounds, and its loading notice
_LIGHT_CSS = """
div#thumb-img{background-repeat:no-repeat;image-rendering:pixelated;display:none}
.cluster span.thumb{display:inline-block;margin:1px;background-repeat:no-repeat;image-rendering:pixelated;
vertical-align:middle}
#report-loading{background:#fff1d6;padding:6px 12px}
"""


def _fig_div(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(
        fig, include_plotlyjs=False, full_html=False, div_id=div_id, config={"responsive": True}
    )


# -- the light report (issue 13): compressed plotly.js, shared view data, one sheet of thumbnails ------
#
# What makes today's report 11.8 MB at the default size: plotly.js inlined as text (4.8 MB), one PNG
# data URI per point (3 MB), and every colouring's trace repeating the points' coordinates as
# 17-digit floats (3.8 MB). The light report carries plotly.js gzip-compressed (base64), the view's
# data once (coordinates rounded to 1/10,000 of each axis' extent, the colourings as category codes
# or values rounded to 1/1,000 of their extent, the hover texts; gzip-compressed, base64) and the thumbnails as tiles of one
# WebP sheet; a small loader (:data:`_LIGHT_JS`) unpacks them with the browser's DecompressionStream,
# runs plotly.js, fills the figures and draws them. No byte leaves the page.

THUMB_QUALITY = 70  # WebP quality of the thumbnail sheets (mean error about 1% of the grey range)
SHEET_MAX = 16383  # WebP's largest width and height: more tiles go on further sheets
AXIS_STEPS = 10_000  # coordinates are rounded to 1/AXIS_STEPS of their axis' extent (well below a pixel)
COLOUR_STEPS = 1_000  # continuous colour values to 1/COLOUR_STEPS of theirs (a colour scale shows ~256)
PANEL_WIDTH = 168  # the hover panel's thumbnail width (px), as in today's report
CLUSTER_WIDTH = 48  # a cluster example's width (px)


def pack(value: object) -> str:
    """``value`` as JSON (:func:`script_json`), gzip-compressed and base64-encoded (the page unpacks it)."""
    return gzip_base64(script_json(value).encode("utf-8"))


def unpack(text: str) -> object:
    """The value :func:`pack` packed."""
    return json.loads(gzip.decompress(base64.b64decode(text)).decode("utf-8"))


def rounded(values: np.ndarray, steps: int = AXIS_STEPS) -> list[float | None]:
    """``values`` rounded to the decimals that keep 1/``steps`` of their extent (None where not finite)."""
    a = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return [None] * len(a)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    scale = hi - lo if hi > lo else max(abs(lo), 1e-12)
    decimals = max(0, int(np.ceil(np.log10(steps / scale))))
    out = np.round(a, decimals)
    return [float(x) if ok else None for x, ok in zip(out.tolist(), finite.tolist(), strict=True)]


@dataclass(frozen=True)
class Atlas:
    """Thumbnails as tiles of WebP sheets: ``tile[i]`` is point i's tile (-1: none).

    Tile k lies on sheet ``k // (cols * rows)``, at column ``k % cols`` and row
    ``(k % (cols * rows)) // cols`` of cells ``cell`` (width, height) px; its own size is
    ``sizes[k]`` when the tiles differ (else the cell's). Equal thumbnails share a tile.
    """

    sheets: list[bytes]  # WebP files
    sheet_sizes: list[tuple[int, int]]
    cell: tuple[int, int]
    cols: int
    rows: int  # rows of a full sheet
    sizes: list[tuple[int, int]] | None
    tile: list[int]

    def facts(self) -> dict[str, object]:
        """What the page's script needs to cut a tile (everything but the sheets' bytes)."""
        return {
            "cols": self.cols,
            "rows": self.rows,
            "cw": self.cell[0],
            "ch": self.cell[1],
            "sheets": [list(s) for s in self.sheet_sizes],
            "sizes": None if self.sizes is None else [list(s) for s in self.sizes],
        }


def _image_of(uri: str) -> object:
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1], validate=True)))
    img.load()
    return img


def thumbnail_atlas(uris: Sequence[str], quality: int = THUMB_QUALITY) -> Atlas:
    """The thumbnails (data URIs, "" for none) as tiles of as few WebP sheets as WebP's size allows."""
    from PIL import Image

    index: dict[str, int] = {}
    images: list[Image.Image] = []
    tile: list[int] = []
    for uri in uris:
        k = index.get(uri, -1) if uri else -1
        if uri and k < 0:
            try:
                img = _image_of(uri)
            except Exception:  # noqa: BLE001 - not an image we made: shown without a picture
                tile.append(-1)
                continue
            k = index[uri] = len(images)
            images.append(img)  # type: ignore[arg-type]
        tile.append(k)
    if not images:
        return Atlas([], [], (1, 1), 1, 1, None, tile)
    mode = "L" if all(im.mode == "L" for im in images) else "RGB"
    cw, ch = max(im.width for im in images), max(im.height for im in images)
    n = len(images)
    cols = int(min(n, max(1, SHEET_MAX // cw), max(1, np.ceil(np.sqrt(n * ch / cw)))))
    rows = int(max(1, min(SHEET_MAX // ch, -(-n // cols))))
    per = cols * rows
    sheets, sheet_sizes = [], []
    for first in range(0, n, per):
        part = images[first : first + per]
        size = (cols * cw, -(-len(part) // cols) * ch)
        sheet = Image.new(mode, size, 0)
        for k, im in enumerate(part):
            sheet.paste(im.convert(mode), ((k % cols) * cw, (k // cols) * ch))
        buf = io.BytesIO()
        sheet.save(buf, format="WEBP", quality=quality, method=6)
        sheets.append(buf.getvalue())
        sheet_sizes.append(size)
    sizes = [im.size for im in images]
    same = all(sz == (cw, ch) for sz in sizes)
    return Atlas(sheets, sheet_sizes, (cw, ch), cols, rows, None if same else sizes, tile)


def atlas_tiles(facts: Mapping[str, object], sheets: Sequence[bytes], tile: Sequence[int]) -> list[str]:
    """Each point's thumbnail cut from the sheets, as a PNG data URI ("" for none): what the page shows."""
    from PIL import Image

    decoded = [Image.open(io.BytesIO(b)) for b in sheets]
    cols, rows = int(facts["cols"]), int(facts["rows"])  # type: ignore[call-overload]
    cw, ch = int(facts["cw"]), int(facts["ch"])  # type: ignore[call-overload]
    sizes = facts["sizes"]
    out = []
    for k in tile:
        if k < 0:
            out.append("")
            continue
        sheet, r = divmod(k, cols * rows)
        x, y = (r % cols) * cw, (r // cols) * ch
        w, h = (cw, ch) if sizes is None else sizes[k]  # type: ignore[index]
        buf = io.BytesIO()
        decoded[sheet].crop((x, y, x + w, y + h)).save(buf, format="PNG")
        out.append("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


def view_payload(
    view: ViewData, windows: list[dict[str, object]], point_window: list[int], atlas: Atlas
) -> dict:
    """The embedding view's data, once for both figures and the script (see :func:`umap_fill`)."""
    colourings: list[list[int] | list[float | None]] = []
    for col in view.colourings:
        if col.categorical:
            code = {c: i for i, c in enumerate(col.categories)}
            colourings.append([code.get(str(x), -1) for x in col.values.tolist()])
        else:
            colourings.append(rounded(np.asarray(col.values, dtype=float), COLOUR_STEPS))
    return {
        "n": len(view.hover),
        "xyz": [rounded(view.coords3[:, i]) for i in range(3)],
        "xy": [rounded(view.coords2[:, i]) for i in range(2)],
        "colourings": colourings,
        "texts": list(view.hover),
        "pointWindow": point_window,
        "windows": windows,
        "defaultWindow": -1 if view.default_window is None else int(view.default_window),
        "tile": atlas.tile,
        "atlas": atlas.facts(),
    }


def umap_fill(figure: dict, payload: Mapping[str, object]) -> dict:
    """A light UMAP figure with its points put back, as the page's loader does (``fillFigure``)."""
    spec = figure["layout"]["meta"]["fill"]
    coords = payload["xyz" if spec["dims"] == 3 else "xy"]
    colourings = payload["colourings"]
    n = int(payload["n"])  # type: ignore[call-overload]
    for trace, t in zip(figure["data"], spec["traces"], strict=True):
        col = colourings[t[0]]  # type: ignore[index]
        ids = [i for i in range(n) if col[i] == t[1]] if len(t) > 1 else list(range(n))
        for axis, values in zip("xyz", coords, strict=False):  # type: ignore[call-overload]
            trace[axis] = [values[i] for i in ids]
        trace["customdata"] = ids
        if len(t) == 1:
            trace["marker"]["color"] = [col[i] for i in ids]
    return figure


def _figure_json(fig: go.Figure) -> str:
    """A figure as plotly's JSON (which escapes ``<``, ``>``, ``/``), with ``&``, U+2028/9 escaped too."""
    d = fig.to_dict()
    text = to_json_plotly({"data": d["data"], "layout": d["layout"], "config": {"responsive": True}})
    return script_safe(text)


def _fig_block(fig: go.Figure, div_id: str) -> str:
    """An empty plot div and its figure as a JSON data block; the loader draws it (``div_id``: ours)."""
    return (
        f'<div id="{div_id}" class="plotly-graph-div report-figure" style="height:100%; width:100%;"></div>'
        f'<script type="application/json" class="report-figure-data" data-div="{div_id}">{_figure_json(fig)}</script>'
    )


def _data_block(block_id: str, data: str, mime: str = "application/gzip", library: str = "") -> str:
    """A base64 payload (inert: letters, digits, ``+/=``) in a script element the browser never runs."""
    lib = f' data-library="{html.escape(library)}"' if library else ""
    return f'<script type="application/octet-stream" id="{block_id}" data-type="{mime}"{lib}>{data}</script>'


def read_blocks(page: str) -> dict[str, str]:
    """The light report's data blocks by id (base64 text), parsed from its HTML."""
    found = re.findall(
        r'<script type="application/octet-stream" id="([\w-]+)" data-type="[^"]*"[^>]*>([^<]*)</script>', page
    )
    return dict(found)


def read_figure(page: str, div_id: str) -> dict:
    """The figure the light report draws into ``div_id`` (the view's figures with their points back)."""
    m = re.search(
        r'<script type="application/json" class="report-figure-data" data-div="'
        + re.escape(div_id)
        + r'">(.*?)</script>',
        page,
        flags=re.S,
    )
    if m is None:
        raise ValueError(f"the report has no figure {div_id!r}")
    figure = json.loads(m.group(1))
    if "fill" in figure["layout"].get("meta", {}):
        figure = umap_fill(figure, read_view(page, thumbnails=False))
    return figure


def read_view(page: str, thumbnails: bool = True) -> dict:
    """The light report's view payload, unpacked; with ``thumbnails`` each point's as a PNG data URI."""
    blocks = read_blocks(page)
    if "view-data" not in blocks:
        raise ValueError("the report has no embedding view data")
    payload = unpack(blocks["view-data"])
    assert isinstance(payload, dict)
    if thumbnails:
        sheets = [
            base64.b64decode(blocks[f"thumb-sheet-{i}"]) for i in range(len(payload["atlas"]["sheets"]))
        ]
        payload["thumbs"] = atlas_tiles(payload["atlas"], sheets, payload["tile"])
    return payload


# The light report's one script: unpacks plotly.js and the view's data (DecompressionStream),
# draws every figure block, then runs the view (hover panel, window menu, chart clicks) as
# :data:`_HOVER_JS` does. Data reach the page through textContent and CSS only.
_LIGHT_JS = """
(function() {
  'use strict';
  var view = null, sheetUrls = [], originals = {}, byPos = {};
  var notice = document.getElementById('report-loading');
  function say(text) { if (notice) { notice.textContent = text; notice.style.display = text ? 'block' : 'none'; } }
  function bytesOf(id) {
    var text = document.getElementById(id).textContent, bin = atob(text.replace(/\\s+/g, ''));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }
  function gunzip(id) {
    var stream = new Blob([bytesOf(id)]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text();
  }
  function runPlotly(code) {
    if (typeof Plotly !== 'undefined') { return; }
    var s = document.createElement('script');
    s.textContent = code;
    document.head.appendChild(s);
  }
  function fillFigure(fig) {
    var spec = fig.layout.meta.fill, coords = spec.dims === 3 ? view.xyz : view.xy, n = view.n;
    fig.data.forEach(function(trace, k) {
      var t = spec.traces[k], col = view.colourings[t[0]], ids = [];
      for (var i = 0; i < n; i++) { if (t.length < 2 || col[i] === t[1]) { ids.push(i); } }
      ['x', 'y', 'z'].slice(0, coords.length).forEach(function(a, d) {
        trace[a] = ids.map(function(i) { return coords[d][i]; });
      });
      trace.customdata = ids;
      if (t.length < 2) { trace.marker.color = ids.map(function(i) { return col[i]; }); }
    });
  }
  function showThumb(el, i, width) {
    var k = view ? view.tile[i] : -1, a = view && view.atlas;
    if (k === undefined || k === null || k < 0 || !sheetUrls.length) { el.style.display = 'none'; return false; }
    var per = a.cols * a.rows, sheet = Math.floor(k / per), r = k % per;
    var w = a.sizes ? a.sizes[k][0] : a.cw, h = a.sizes ? a.sizes[k][1] : a.ch, scale = width / w;
    var size = a.sheets[sheet];
    el.style.width = width + 'px';
    el.style.height = Math.round(h * scale) + 'px';
    el.style.backgroundImage = 'url(' + sheetUrls[sheet] + ')';
    el.style.backgroundSize = (size[0] * scale) + 'px ' + (size[1] * scale) + 'px';
    el.style.backgroundPosition = (-(r % a.cols) * a.cw * scale) + 'px ' + (-Math.floor(r / a.cols) * a.ch * scale) + 'px';
    el.style.display = el.tagName === 'SPAN' ? 'inline-block' : 'block';
    return true;
  }
  function attach(id) {
    var el = document.getElementById(id);
    if (!el || !el.on) { return; }
    el.on('plotly_hover', function(ev) {
      var p = ev.points[0]; var i = p.customdata;
      if (Array.isArray(i)) { i = i[0]; }
      showThumb(document.getElementById('thumb-img'), i, PANEL_WIDTH);
      document.getElementById('thumb-text').textContent = view.texts[i] || '';
    });
  }
  function shown(i, w) { var k = view.pointWindow[i]; return k < 0 || w < 0 || k === w; }
  function filterView(id, w) {
    var gd = document.getElementById(id);
    if (!gd || !gd.data) { return; }
    if (!originals[id]) {
      originals[id] = gd.data.map(function(t) {
        var c = t.marker && t.marker.color;
        return {x: t.x, y: t.y, z: t.z, ids: t.customdata || [], name: t.name || '',
                color: Array.isArray(c) ? c : null, colour: c};
      });
    }
    var o3 = originals[id].length && originals[id][0].z !== undefined;
    var upd = {x: [], y: [], customdata: [], name: [], 'marker.color': []};
    if (o3) { upd.z = []; }
    var traces = [];
    originals[id].forEach(function(o, t) {
      var keep = [];
      for (var j = 0; j < o.ids.length; j++) { if (shown(o.ids[j], w)) { keep.push(j); } }
      function pick(a) { return keep.map(function(j) { return a[j]; }); }
      upd.x.push(pick(o.x)); upd.y.push(pick(o.y)); if (o3) { upd.z.push(pick(o.z)); }
      upd.customdata.push(pick(o.ids));
      upd['marker.color'].push(o.color ? pick(o.color) : o.colour);
      upd.name.push(o.name.replace(/\\(\\d+\\)$/, '(' + keep.length + ')'));
      traces.push(t);
    });
    Plotly.restyle(gd, upd, traces);
  }
  function highlight(w) {
    var gd = document.getElementById('drift-chart');
    if (!gd || !gd.data) { return; }
    var info = byPos[w];
    var shapes = info ? [{type: 'rect', xref: 'x', yref: 'paper', x0: info.start, x1: info.end, y0: 0, y1: 1,
                          fillcolor: '#1f77b4', opacity: 0.15, line: {width: 0}, layer: 'below'}] : [];
    Plotly.relayout(gd, {shapes: shapes});
  }
  function caption(w) {
    var el = document.getElementById('window-shown');
    if (!el) { return; }
    var nProd = 0, nBase = 0, pw = view.pointWindow;
    for (var i = 0; i < pw.length; i++) {
      if (pw[i] < 0) { nBase++; } else if (w < 0 || pw[i] === w) { nProd++; }
    }
    var info = byPos[w];
    el.textContent = (info ? 'Window ' + info.label : 'All windows') + ': ' + nProd +
      ' production points against ' + nBase + ' baseline points.' + (info && info.why ? ' Why: ' + info.why : '');
  }
  function select(w) {
    if (typeof w !== 'number' || isNaN(w) || (w >= 0 && !byPos[w])) { return false; }
    var menu = document.getElementById('window-select');
    if (menu) { menu.value = String(w); }
    filterView('umap3d', w); filterView('umap2d', w); highlight(w); caption(w);
    return true;
  }
  function toView() {
    var el = document.getElementById('window-pick');
    if (el && el.scrollIntoView) { el.scrollIntoView({behavior: 'smooth'}); }
  }
  function startView() {
    view.windows.forEach(function(w) { byPos[w.pos] = w; });
    attach('umap3d'); attach('umap2d');
    var menu = document.getElementById('window-select');
    if (menu && menu.addEventListener) {
      menu.addEventListener('change', function() { select(parseInt(menu.value, 10)); });
    }
    var chart = document.getElementById('drift-chart');
    if (chart && chart.on) {
      chart.on('plotly_click', function(ev) {
        var c = ev.points[0].customdata;
        if (select(Array.isArray(c) ? c[0] : c)) { toView(); }
      });
    }
    Array.prototype.forEach.call(document.querySelectorAll('button.show-window'), function(b) {
      b.addEventListener('click', function() {
        if (select(parseInt(b.getAttribute('data-window'), 10))) { toView(); }
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll('span.thumb[data-point]'), function(el) {
      showThumb(el, parseInt(el.getAttribute('data-point'), 10), CLUSTER_WIDTH);
    });
    select(view.defaultWindow);
  }
  function draw() {
    var blocks = Array.prototype.slice.call(document.querySelectorAll('script.report-figure-data'));
    return Promise.all(blocks.map(function(b) {
      var fig = JSON.parse(b.textContent);
      if (fig.layout.meta && fig.layout.meta.fill) { fillFigure(fig); }
      return Plotly.newPlot(document.getElementById(b.getAttribute('data-div')), fig.data, fig.layout, fig.config);
    }));
  }
  function sheets() {
    var out = [];
    for (var i = 0; document.getElementById('thumb-sheet-' + i); i++) {
      var el = document.getElementById('thumb-sheet-' + i);
      out.push(URL.createObjectURL(new Blob([bytesOf('thumb-sheet-' + i)], {type: el.getAttribute('data-type')})));
    }
    return out;
  }
  if (typeof DecompressionStream === 'undefined' || typeof Response === 'undefined') {
    say('This browser cannot unpack the report\\'s charts: it needs DecompressionStream ' +
        '(Chrome or Edge 80+, Firefox 113+, Safari 16.4+). The tables and explanations above are complete.');
    return;
  }
  var hasView = !!document.getElementById('view-data');
  Promise.all([gunzip('plotly-js'), hasView ? gunzip('view-data') : Promise.resolve('null')]).then(function(r) {
    runPlotly(r[0]);
    view = JSON.parse(r[1]);
    if (view) { sheetUrls = sheets(); }
    return draw();
  }).then(function() {
    if (view) { startView(); }
    say('');
    window.driftView = {select: select, drawn: true};
    document.body.setAttribute('data-drawn', 'true');
  }).catch(function(e) {
    say('The charts could not be drawn: ' + e);
  });
})();
""".replace("PANEL_WIDTH", str(PANEL_WIDTH)).replace("CLUSTER_WIDTH", str(CLUSTER_WIDTH))


def _table_html(table: pd.DataFrame, detectors: list[str]) -> str:
    cols = ["window_start", "n_rows", "status", "accuracy", "mean_score"]
    cols += [f"{d}_score" for d in detectors] + ["fired"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, r in table.iterrows():
        cells = []
        for c in cols:
            v = r[c]
            if isinstance(v, float):
                v = "" if np.isnan(v) else f"{v + 0.0:.4g}"  # + 0.0 turns -0.0 into 0
            elif isinstance(v, pd.Timestamp):
                v = v.strftime("%Y-%m-%d %H:%M")
            cells.append(f"<td>{html.escape(str(v))}</td>")
        style = ' style="background:#fde0e0"' if r["flagged"] else ""
        body.append(f"<tr{style}>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _clusters_html(view: ViewData, limit: int = 8, examples: int = 10, light: bool = False) -> str:
    if not view.clusters:
        return "<p>No clusters found in the sample.</p>"
    parts = [
        "<table><tr><th>cluster</th><th>points</th><th>production share</th>"
        "<th>vs. overall</th><th>main prediction</th><th>degradation (ground truth)</th>"
        "<th>production examples</th></tr>"
    ]
    for c in view.clusters[:limit]:
        prod = [i for i in c.members if view.is_production is None or view.is_production[i]]
        imgs = "".join(
            f'<span class="thumb" data-point="{int(i)}" title="{html.escape(view.hover[i])}"></span>'
            if light  # a tile of the thumbnail sheet, cut by the loader
            else f'<img src="{html.escape(view.thumbnails[i])}" title="{html.escape(view.hover[i])}">'
            for i in prod[:examples]
            if view.thumbnails[i]
        )
        main = ""
        if view.predicted is not None:
            vals, counts = np.unique(view.predicted[c.members].astype(str), return_counts=True)
            main = f"{vals[counts.argmax()]} ({counts.max() / c.size:.0%})"
        deg = ""
        if view.degradation is not None and prod:
            vals, counts = np.unique(view.degradation[prod].astype(str), return_counts=True)
            deg = ", ".join(
                f"{v} {n / len(prod):.0%}"
                for v, n in sorted(zip(vals, counts, strict=True), key=lambda t: -t[1])
            )
        parts.append(
            f'<tr class="cluster"><td>{int(c.label)}</td><td>{int(c.size)}</td><td>{c.production_share:.0%}</td>'
            f"<td>{c.excess:+.0%}</td><td>{html.escape(main)}</td><td>{html.escape(deg)}</td>"
            f'<td style="text-align:left">{imgs}</td></tr>'
        )
    parts.append("</table>")
    return "".join(parts)


def _num(value: float, fmt: str) -> str:
    return "" if not np.isfinite(value) else format(value + 0.0, fmt)


def _p(value: float) -> str:
    return "" if not np.isfinite(value) else ("< 1e-12" if value < 1e-12 else f"{value:.2g}")


def _example_html(x: Example) -> str:
    deg = f"<br>{html.escape(x.degradation)}" if x.degradation else ""
    title = f"{x.label} ({x.confidence:.2f})" + (f", {x.degradation}" if x.degradation else "")
    img = (
        f'<img src="{html.escape(x.thumbnail)}" title="{html.escape(title)}">'
        if x.thumbnail.startswith("data:image/png;base64,")
        else '<span class="noimg">no image</span>'
    )
    return f"<figure>{img}<figcaption>{html.escape(x.label)} {x.confidence:.2f}{deg}</figcaption></figure>"


def explanation_html(e: Explanation, pos: int | None, classes: int = 5) -> str:
    """One flagged window's explanation: the sentence, the feature and class tables, examples."""
    moved = ' class="moved"'
    feats_named = {f.feature for f in named_features(e.features)}
    feat_rows = "".join(
        f"<tr{moved if f.feature in feats_named else ''}><td>{html.escape(f.feature)}</td>"
        f"<td>{_num(f.baseline_mean, '.3g')}</td><td>{_num(f.window_mean, '.3g')}</td>"
        f"<td>{_num(f.smd, '+.2f')}</td><td>{_num(f.wasserstein, '.2f')}</td><td>{_num(f.ks, '.2f')}</td>"
        f"<td>{_p(f.p_value)}</td></tr>"
        for f in e.features
    )
    feats = (
        '<table class="why-features"><tr><th>image feature</th><th>baseline mean</th><th>window mean</th>'
        "<th>mean shift (baseline SDs)</th><th>Wasserstein (baseline SDs)</th><th>KS</th><th>p-value</th></tr>"
        f"{feat_rows}</table>"
        if e.features
        else "<p>No image features in the data.</p>"
    )
    named = {c.label for c in named_classes(e.classes)}
    class_rows = "".join(
        f"<tr{moved if c.label in named else ''}><td>{html.escape(c.label)}</td>"
        f"<td>{_num(c.baseline_share, '.0%')}</td><td>{_num(c.window_share, '.0%')}</td>"
        f"<td>{_num(c.share_change * 100, '+.0f')} pts</td><td>{_num(c.baseline_confidence, '.2f')}</td>"
        f"<td>{_num(c.window_confidence, '.2f')}</td><td>{_p(c.p_value)}</td></tr>"
        for c in e.classes[:classes]
    )
    cls = (
        '<table class="why-classes"><tr><th>predicted class</th><th>baseline share</th><th>window share</th>'
        "<th>change</th><th>baseline confidence</th><th>window confidence</th><th>p-value</th></tr>"
        f"{class_rows}</table>"
    )
    button = (
        f' <button class="show-window" data-window="{int(pos)}">show in the embedding view</button>'
        if pos is not None
        else ""
    )
    examples = "".join(_example_html(x) for x in e.examples)
    div_id = f' id="why-{int(pos)}"' if pos is not None else ""
    return (
        f'<div class="why"{div_id}>'
        f"<h3>{html.escape(e.label)} ({int(e.n_rows)} rows sampled){button}</h3>"
        f'<p class="why-sentence">{html.escape(e.sentence)}</p>'
        f'<div class="why-tables">{feats}{cls}</div>'
        f"<p>Nearest examples of the drifted group (of the rows farther from the baseline than "
        f"99% of baseline rows: {_num(e.novel_share, '.0%')} of the window), with predicted label, "
        f"confidence and ground-truth degradation when known:</p>"
        f'<div class="why-examples">{examples}</div></div>'
    )


def explanations_html(explanations: Sequence[Explanation], positions: Mapping[pd.Timestamp, int]) -> str:
    """The "why it drifted" section: one explanation per flagged window (``positions``: table rows)."""
    if not explanations:
        return "<p>No window of this run was flagged: nothing to explain.</p>"
    intro = (
        "<p>Per flagged window, against the baseline sample: image features (two-sample KS test; the "
        "mean shift and Wasserstein distance in baseline standard deviations), predicted classes (share "
        "and mean confidence; two-proportion test), and the rows farthest from the baseline (distance "
        "to their 5 nearest baseline rows). Bold rows moved beyond chance (Bonferroni, 1%).</p>"
    )
    return intro + "".join(explanation_html(e, positions.get(e.window_start)) for e in explanations)


def _window_menu(
    table: pd.DataFrame, view: ViewData, why: Mapping[int, str]
) -> tuple[str, list[dict[str, object]]]:
    """The view's window menu (HTML) and the windows' facts for its script."""
    assert view.point_window is not None
    present = sorted({int(k) for k in view.point_window.tolist() if k >= 0})
    fmt = "%Y-%m-%d %H:%M" if (table["window"] == "hourly").any() else "%Y-%m-%d"
    windows: list[dict[str, object]] = []
    options = []
    for pos in present:
        r = table.iloc[pos]
        half = (r["window_end"] - r["window_start"]) / 2
        label = r["window_start"].strftime(fmt)
        state = f"flagged ({r['fired']})" if r["flagged"] else str(r["status"])
        n_points = int((view.point_window == pos).sum())
        text = f"{label} · {state} · {int(r['n_rows'])} rows, {n_points} points"
        windows.append(
            {
                "pos": pos,
                "label": label,
                # the band the drift chart highlights: centred on the window's marks (at its start)
                "start": (r["window_start"] - half).strftime("%Y-%m-%d %H:%M:%S"),
                "end": (r["window_start"] + half).strftime("%Y-%m-%d %H:%M:%S"),
                "flagged": bool(r["flagged"]),
                "why": why.get(pos, ""),
            }
        )
        chosen = " selected" if pos == view.default_window else ""
        options.append(f'<option value="{pos}"{chosen}>{html.escape(text)}</option>')
    chosen = " selected" if view.default_window is None else ""
    options.append(f'<option value="-1"{chosen}>all windows (whole range)</option>')
    menu = (
        '<div id="window-pick"><label for="window-select"><b>Window shown against the baseline:</b></label> '
        f'<select id="window-select">{"".join(options)}</select> '
        "(or click a window on the drift chart; the most drifted window is shown first)"
        '<p id="window-shown"></p></div>'
    )
    return menu, windows


def render(
    table: pd.DataFrame,
    detectors: list[str],
    summary: list[str],
    view: ViewData | None,
    facts: dict[str, str],
    history: HistoryUpdate | None = None,
    status: str = "",
    explanations: Sequence[Explanation] = (),
    light: bool = True,
) -> str:
    """The whole report as one HTML string (plotly.js inlined once, no external URLs).

    ``history``: every stored window with this run's marked, for the trend section (None or without
    a URI: the section says that no history is kept). ``status`` (``drift``, ``no-drift`` or
    ``insufficient-data``) is shown at the top with the summary's first line. ``explanations``: why
    each flagged window drifted (the "Why it drifted" section, and the view's caption per window).
    ``light`` (default): plotly.js and the view's data gzip-compressed, the thumbnails one WebP
    sheet, drawn by :data:`_LIGHT_JS` (about a fifth of the size); False: today's report, every
    figure with its own inline data, plotly.js as text, one PNG per point (the benchmark's baseline).
    """
    positions = {pd.Timestamp(t): i for i, t in enumerate(table["window_start"])}
    why = {  # the sentence without its leading window label: the view's caption names the window
        positions[e.window_start]: e.sentence.removeprefix(f"{e.label}: ")
        for e in explanations
        if e.window_start in positions
    }
    window = str(table["window"].iloc[0]) if len(table) else ""
    facts_html = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts.items()
    )
    summary_html = "".join(f"<p>{html.escape(s)}</p>" for s in summary)
    status_html = ""
    if status:
        title = STATUS_TITLES.get(status, status)
        status_html = (
            f'<p class="status {html.escape(status)}" id="status">{html.escape(title)}'
            f" (status <code>{html.escape(status)}</code>)</p>"
        )
    if light:
        head, chart, view_html, tail = _light_parts(table, detectors, view, why)
    else:
        head, chart, view_html, tail = _full_parts(table, detectors, view, why)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Embedding drift report</title>
<style>{_CSS}{_LIGHT_CSS if light else ""}</style>{head}</head><body>
<h1>Embedding drift report</h1>
{status_html}<div class="summary">{summary_html}</div>
<h2>Drift over time (this run)</h2>{chart}
<h2>Why it drifted (flagged windows of this run)</h2>{explanations_html(explanations, positions)}
<h2>Windows (this run)</h2>{_table_html(table, detectors)}
<h2>Trend over the stored history</h2>{trend_html(history, window, light)}
<h2>Embedding view</h2>{view_html}
<h2>Settings</h2><table>{facts_html}</table>
{tail}</body></html>
"""


def _full_parts(
    table: pd.DataFrame, detectors: list[str], view: ViewData | None, why: Mapping[int, str]
) -> tuple[str, str, str, str]:
    """Today's report: plotly.js as text in the head, each figure drawn by its own inline script."""
    # plotly.js inlined once (what include_plotlyjs=True embeds), so the page works offline
    plotly_js = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    chart = _fig_div(drift_chart(table, detectors), "drift-chart")
    if view is None:
        return plotly_js, chart, "<p>No projection: too few points.</p>", ""
    umap3 = _fig_div(umap_figure(view, 3), "umap3d")
    umap2 = _fig_div(umap_figure(view, 2), "umap2d")
    menu, windows, point_window = _menu_and_windows(table, view, why)
    default = -1 if view.default_window is None else int(view.default_window)
    hover_js = _HOVER_JS % {
        "thumbs": script_json(view.thumbnails),
        "texts": script_json(view.hover),
        "point_window": script_json(point_window),
        "windows": script_json(windows),
        "default_window": script_json(default),
    }
    view_html = (
        f'{menu}<div class="view"><div class="plots">'
        f"{umap3}{umap2}</div>"
        '<div id="thumb-panel"><b>hovered point</b><img id="thumb-img" alt="thumbnail">'
        '<div id="thumb-text">Hover a point to see its image.</div></div></div>'
        f"<h2>Clusters (HDBSCAN), most drifted first</h2>{_clusters_html(view)}"
        f'<script id="hover-script">{hover_js}</script>'
    )
    return plotly_js, chart, view_html, ""


def _menu_and_windows(
    table: pd.DataFrame, view: ViewData, why: Mapping[int, str]
) -> tuple[str, list[dict[str, object]], list[int]]:
    if view.point_window is None:  # one set of points: no window menu
        return "", [], [-1] * len(view.hover)
    menu, windows = _window_menu(table, view, why)
    return menu, windows, [int(k) for k in view.point_window.tolist()]


def _light_parts(
    table: pd.DataFrame, detectors: list[str], view: ViewData | None, why: Mapping[int, str]
) -> tuple[str, str, str, str]:
    """The light report: figure blocks, the packed plotly.js, view data and thumbnail sheets, the loader."""
    notice = (
        '<p id="report-loading">Drawing the charts (plotly.js and the view\'s data are unpacked in the '
        "browser; this needs JavaScript)…</p>"
    )
    chart = notice + _fig_block(drift_chart(table, detectors), "drift-chart")
    tail = [_data_block("plotly-js", plotly_js_gzip_base64(), library=_plotly_banner())]
    view_html = "<p>No projection: too few points.</p>"
    if view is not None:
        menu, windows, point_window = _menu_and_windows(table, view, why)
        atlas = thumbnail_atlas(view.thumbnails)
        tail.append(_data_block("view-data", pack(view_payload(view, windows, point_window, atlas))))
        tail += [
            _data_block(f"thumb-sheet-{i}", base64.b64encode(b).decode("ascii"), "image/webp")
            for i, b in enumerate(atlas.sheets)
        ]
        view_html = (
            f'{menu}<div class="view"><div class="plots">'
            f"{_fig_block(umap_figure(view, 3, light=True), 'umap3d')}"
            f"{_fig_block(umap_figure(view, 2, light=True), 'umap2d')}</div>"
            '<div id="thumb-panel"><b>hovered point</b><div id="thumb-img" role="img" aria-label="thumbnail"></div>'
            '<div id="thumb-text">Hover a point to see its image.</div></div></div>'
            f"<h2>Clusters (HDBSCAN), most drifted first</h2>{_clusters_html(view, light=True)}"
        )
    tail.append(f'<script id="hover-script">{_LIGHT_JS}</script>')
    return "", chart, view_html, "\n".join(tail)


def _plotly_banner() -> str:
    """plotly.js's name and version (``plotly.js v4.1.1``), from the bundle's first comment."""
    m = re.search(r"plotly\.js v[\w.-]+", get_plotlyjs()[:500])
    return m.group(0) if m else "plotly.js"
