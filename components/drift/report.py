"""The self-contained HTML report: drift chart, history trend, UMAP view with hover thumbnails, clusters.

Every string that comes from the data (labels, degradation, ids, links, history values) is inert:
HTML-escaped where it lands in HTML (:func:`html.escape`), escaped for plotly's text markup where
it lands in a figure (:func:`plotly_text`), serialised with :func:`script_json` where it lands in
a script, and shown in the hover panel through ``textContent`` (never parsed as HTML). plotly's
own figure JSON (``plotly.io.to_html``) escapes ``<``, ``>`` and ``/`` itself (plotly 7.1).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import qualitative
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from components.common.history import MODEL_VERSION, RECORDED_AT, HistoryUpdate
from components.drift.detectors import DETECTORS
from components.drift.explain import Example, Explanation, named_classes, named_features
from components.drift.view import Cluster, Colouring

# What :func:`script_json` replaces: what could end the script element or open a comment
# (``</script>``, ``<!--``), ``&`` (for XHTML readers), and the two line separators older
# JavaScript engines do not accept inside a string literal.
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE_RE = re.compile("[<>&\u2028\u2029]")

# Statuses of a run, shown at the top of the report (the stage's ``status`` output).
STATUS_TITLES = {"drift": "Drift", "no-drift": "No drift", "insufficient-data": "Insufficient data"}


def script_json(value: object) -> str:
    r"""``value`` as JSON that is safe inside a ``<script>`` element of an HTML page.

    ``<``, ``>``, ``&``, U+2028 and U+2029 become ``\uXXXX`` escapes: still the same JSON value,
    but no data string can close the script (``</script>``) or start a comment. Every script
    payload of the report goes through here.
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    return _SCRIPT_UNSAFE_RE.sub(lambda m: _SCRIPT_UNSAFE[m.group(0)], text)


def plotly_text(value: object) -> str:
    """A data string for plotly's text (trace names, hover text, titles): its markup made inert.

    plotly renders text as a small HTML subset (``<b>``, ``<br>``, ``<a href>``, ...) and decodes
    ``&lt;``, ``&gt;`` and ``&amp;``, so escaping those three shows the string as it is.
    """
    return html.escape(str(value), quote=False)


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


def trend_html(history: HistoryUpdate | None, window: str) -> str:
    """The report's history section: the trend chart over every stored window of this run's length."""
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
    chart = _fig_div(
        trend_chart(t[keep].reset_index(drop=True), run[keep].reset_index(drop=True)), "drift-trend"
    )
    return note + chart


def _palette(n: int) -> list[str]:
    base = qualitative.D3 + qualitative.Set3
    return [base[i % len(base)] for i in range(n)]


def _xyz(coords: np.ndarray, mask: np.ndarray | slice, dims: int) -> dict[str, list[float]]:
    """Plain lists (not plotly's binary arrays), so the window menu's script can filter them."""
    axes = ("x", "y", "z")[:dims]
    return {a: coords[mask, i].astype(float).tolist() for i, a in enumerate(axes)}


def umap_figure(view: ViewData, dims: int) -> go.Figure:
    """One figure holding every colouring as traces; a dropdown switches which are visible.

    Every trace's ``customdata`` is its points' indices; the data are plain lists, so the window
    menu's script (:data:`_HOVER_JS`) can show the points of one window and the baseline.
    """
    coords = view.coords3 if dims == 3 else view.coords2
    scatter = go.Scatter3d if dims == 3 else go.Scattergl
    idx = np.arange(len(coords))
    fig = go.Figure()
    groups: list[tuple[str, list[int]]] = []
    marker_size = 3 if dims == 3 else 5
    for col in view.colourings:
        members = []
        if col.categorical:
            for cat, colour in zip(col.categories, _palette(len(col.categories)), strict=True):
                mask = col.values == cat
                members.append(len(fig.data))
                fig.add_trace(
                    scatter(
                        **_xyz(coords, mask, dims),
                        mode="markers",
                        name=f"{plotly_text(cat)} ({int(mask.sum())})",
                        legendgroup=col.name,
                        marker={"size": marker_size, "color": colour},
                        customdata=idx[mask].tolist(),
                        hoverinfo="none",
                        visible=False,
                    )
                )
        else:
            members.append(len(fig.data))
            fig.add_trace(
                scatter(
                    **_xyz(coords, slice(None), dims),
                    mode="markers",
                    name=plotly_text(col.name),
                    marker={
                        "size": marker_size,
                        "color": np.asarray(col.values, dtype=float).tolist(),
                        "colorscale": "Viridis",
                        "showscale": True,
                        "colorbar": {"title": {"text": plotly_text(col.name)}},
                    },
                    customdata=idx.tolist(),
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


def _fig_div(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(
        fig, include_plotlyjs=False, full_html=False, div_id=div_id, config={"responsive": True}
    )


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


def _clusters_html(view: ViewData, limit: int = 8, examples: int = 10) -> str:
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
            f'<img src="{html.escape(view.thumbnails[i])}" title="{html.escape(view.hover[i])}">'
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
) -> str:
    """The whole report as one HTML string (plotly.js inlined once, no external URLs).

    ``history``: every stored window with this run's marked, for the trend section (None or without
    a URI: the section says that no history is kept). ``status`` (``drift``, ``no-drift`` or
    ``insufficient-data``) is shown at the top with the summary's first line. ``explanations``: why
    each flagged window drifted (the "Why it drifted" section, and the view's caption per window).
    """
    positions = {pd.Timestamp(t): i for i, t in enumerate(table["window_start"])}
    why = {  # the sentence without its leading window label: the view's caption names the window
        positions[e.window_start]: e.sentence.removeprefix(f"{e.label}: ")
        for e in explanations
        if e.window_start in positions
    }
    # plotly.js inlined once (what include_plotlyjs=True embeds), so the page works offline
    plotly_js = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    chart = _fig_div(drift_chart(table, detectors), "drift-chart")
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
    window = str(table["window"].iloc[0]) if len(table) else ""
    if view is not None:
        umap3 = _fig_div(umap_figure(view, 3), "umap3d")
        umap2 = _fig_div(umap_figure(view, 2), "umap2d")
        windows: list[dict[str, object]] = []
        if view.point_window is None:  # one set of points: no window menu
            menu, point_window = "", [-1] * len(view.hover)
        else:
            menu, windows = _window_menu(table, view, why)
            point_window = [int(k) for k in view.point_window.tolist()]
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
    else:
        view_html = "<p>No projection: too few points.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Embedding drift report</title>
<style>{_CSS}</style>{plotly_js}</head><body>
<h1>Embedding drift report</h1>
{status_html}<div class="summary">{summary_html}</div>
<h2>Drift over time (this run)</h2>{chart}
<h2>Why it drifted (flagged windows of this run)</h2>{explanations_html(explanations, positions)}
<h2>Windows (this run)</h2>{_table_html(table, detectors)}
<h2>Trend over the stored history</h2>{trend_html(history, window)}
<h2>Embedding view</h2>{view_html}
<h2>Settings</h2><table>{facts_html}</table>
</body></html>
"""
