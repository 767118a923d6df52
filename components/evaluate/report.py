"""The evaluate stage's HTML report: candidate and production side by side, slice by slice, and the gate.

One self-contained page (no external URL): the decision and its reasons, the models, the overall
figures, a chart of the paired difference per slice (with the gate's margin), the slice table, and
the reliability diagram of both models. The tables are plain HTML (readable without scripts).

plotly.js (4.8 MB) is embedded once, gzip-compressed and base64-encoded (about 2.0 MB), and
decompressed in the browser with ``DecompressionStream`` before the figures are drawn.

Strings from the data (URIs, class and degradation names, reasons) are escaped where they land:
:func:`html.escape` in HTML, :func:`plotly_text` in a figure's text, :func:`script_json` in a script.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.common.html import esc, plotly_js_gzip_base64, plotly_text, script_json

COLOURS = {"candidate": "#1f77b4", "production": "#ff7f0e"}
KIND_TITLES = {
    "overall": "Overall",
    "split": "Split",
    "class": "Class (true label)",
    "degradation": "Degradation kind",
    "brightness": "Brightness bin",
    "contrast": "Contrast bin",
    "sharpness": "Sharpness bin",
    "drift": "Drift (production rows in flagged windows)",
}


def _loader(figures: Mapping[str, dict[str, Any]]) -> str:
    """The script that decompresses plotly.js, runs it, then draws each figure into its div."""
    if not figures:
        return ""
    return (
        f'<script type="application/octet-stream" id="plotly-gz">{plotly_js_gzip_base64()}</script>\n'
        f'<script type="application/json" id="figures">{script_json(figures)}</script>\n'
        "<script>\n(async () => {\n"
        "  const b64 = document.getElementById('plotly-gz').textContent.trim();\n"
        "  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));\n"
        "  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));\n"
        "  const code = await new Response(stream).text();\n"
        "  const s = document.createElement('script'); s.textContent = code; document.head.appendChild(s);\n"
        "  const figs = JSON.parse(document.getElementById('figures').textContent);\n"
        "  for (const [id, f] of Object.entries(figs)) {\n"
        "    Plotly.newPlot(id, f.data, f.layout, {responsive: true, displaylogo: false});\n"
        "  }\n"
        "})().catch(e => { for (const d of document.querySelectorAll('.fig')) d.textContent = "
        "'The charts need a browser with DecompressionStream: ' + e; });\n</script>\n"
    )


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def _acc(fig: Mapping[str, Any] | None) -> str:
    if fig is None:
        return "<td>-</td>"
    return f"<td>{_pct(fig['accuracy'])} <span class=ci>[{_pct(fig['low'])}, {_pct(fig['high'])}]</span></td>"


def _diff(s: Mapping[str, Any]) -> str:
    if s["difference"] is None:
        return "<td>-</td>"
    lo, hi = s["difference_ci"]
    cls = "neg" if s["difference"] < 0 else "pos" if s["difference"] > 0 else ""
    return (
        f"<td class={cls}>{100 * s['difference']:+.2f} "
        f"<span class=ci>[{100 * lo:+.2f}, {100 * hi:+.2f}]</span></td>"
    )


def _gate_cell(s: Mapping[str, Any]) -> str:
    if s["passed"] is None:
        return "<td class=muted>checked</td>" if s["checked_by_gate"] else "<td class=muted>too small</td>"
    return "<td class=pass>pass</td>" if s["passed"] else "<td class=fail>FAIL</td>"


def slice_table(slices: list[Mapping[str, Any]]) -> str:
    """The slice table: kind, slice, rows, both accuracies with intervals, the difference, the gate."""
    head = (
        "<table><thead><tr><th>kind</th><th>slice</th><th>rows</th><th>candidate accuracy [CI]</th>"
        "<th>production accuracy [CI]</th><th>difference, points [CI]</th><th>gate</th></tr></thead><tbody>"
    )
    body = []
    for s in slices:
        body.append(
            f"<tr><td>{esc(KIND_TITLES.get(s['kind'], s['kind']))}</td><td>{esc(s['name'])}</td>"
            f"<td class=num>{int(s['rows'])}</td>{_acc(s['candidate'])}{_acc(s['production'])}"
            f"{_diff(s)}{_gate_cell(s)}</tr>"
        )
    return head + "".join(body) + "</tbody></table>"


def difference_figure(slices: list[Mapping[str, Any]], margin: float) -> dict[str, Any] | None:
    """Paired difference (points) per slice with its interval, and the gate's margin as a line."""
    rows = [s for s in slices if s["difference"] is not None]
    if not rows:
        return None
    labels = [plotly_text(f"{s['kind']}: {s['name']} ({s['rows']})") for s in rows]
    x = [100 * s["difference"] for s in rows]
    lo = [100 * (s["difference"] - s["difference_ci"][0]) for s in rows]
    hi = [100 * (s["difference_ci"][1] - s["difference"]) for s in rows]
    colours = ["#d62728" if s["passed"] is False else "#2ca02c" if s["passed"] else "#999999" for s in rows]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "x": x,
                "y": labels,
                "marker": {"color": colours, "size": 8},
                "error_x": {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo},
                "name": "candidate - production",
                "hovertemplate": "%{y}: %{x:+.2f} points<extra></extra>",
            }
        ],
        "layout": {
            "title": {"text": "Accuracy difference candidate - production, points (paired bootstrap CI)"},
            "height": 120 + 22 * len(rows),
            "margin": {"l": 260, "r": 20, "t": 50, "b": 40},
            "yaxis": {"autorange": "reversed", "automargin": True},
            "xaxis": {"zeroline": True, "title": {"text": "points"}},
            "shapes": [
                {
                    "type": "line",
                    "x0": -100 * margin,
                    "x1": -100 * margin,
                    "y0": 0,
                    "y1": 1,
                    "yref": "paper",
                    "line": {"dash": "dash", "color": "#d62728"},
                }
            ],
            "showlegend": False,
        },
    }


def reliability_figure(calibration: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Reliability diagram: accuracy against mean confidence per bin, each model, and the diagonal."""
    data: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "x": [0, 1],
            "y": [0, 1],
            "line": {"dash": "dot", "color": "#777"},
            "name": "perfectly calibrated",
        }
    ]
    for role, c in calibration.items():
        pts = [
            (conf, acc, n)
            for conf, acc, n in zip(c["bin_confidence"], c["bin_accuracy"], c["bin_rows"], strict=True)
            if n
        ]
        ece = c["ece"]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": [p[0] for p in pts],
                "y": [p[1] for p in pts],
                "text": [f"{p[2]} rows" for p in pts],
                "marker": {"size": [4 + min(14, p[2] ** 0.5 / 3) for p in pts], "color": COLOURS.get(role)},
                "name": plotly_text(f"{role} (ECE {ece:.4f})" if ece is not None else role),
                "hovertemplate": "confidence %{x:.3f}, accuracy %{y:.3f}, %{text}<extra></extra>",
            }
        )
    return {
        "data": data,
        "layout": {
            "title": {"text": "Reliability diagram (top-class confidence)"},
            "height": 420,
            "xaxis": {"range": [0, 1], "title": {"text": "mean confidence"}},
            "yaxis": {"range": [0, 1], "title": {"text": "accuracy"}},
            "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
        },
    }


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}.num{text-align:right}.ci{color:#777;font-size:.85em}.neg{color:#b00}.pos{color:#070}
.pass{color:#070}.fail{color:#b00;font-weight:bold}.muted{color:#999}
.banner{padding:.8em 1em;border-radius:6px;font-size:1.2em;margin:.5em 0}
.promote{background:#e6f4e6;border:1px solid #7c7}.candidate{background:#fdf0e0;border:1px solid #e96}
code{background:#f5f5f5;padding:0 3px}
"""


def render(evaluation: Mapping[str, Any]) -> str:
    """The whole report as one HTML string, from the ``evaluation`` JSON the stage writes."""
    decision = str(evaluation["decision"])
    cand, prod = evaluation["candidate"], evaluation["production"]
    slices = list(evaluation["slices"])
    settings = evaluation["settings"]
    overall = next(s for s in slices if s["kind"] == "overall")
    title = "Promote the candidate" if decision == "promote" else "Keep as a candidate (not promoted)"
    reasons = "".join(f"<li>{esc(r)}</li>" for r in evaluation["reasons"])
    models = (
        "<table><tr><th></th><th>model_version</th><th>where</th></tr>"
        f"<tr><th>candidate</th><td><code>{esc(cand['model_version'])}</code></td><td>{esc(cand['uri'])}</td></tr>"
        + (
            f"<tr><th>production ({esc(prod.get('registry_version') or '')})</th><td><code>"
            f"{esc(prod['model_version'])}</code></td><td>{esc(prod['uri'])}</td></tr>"
            if prod
            else "<tr><th>production</th><td colspan=2>none</td></tr>"
        )
        + "</table>"
    )
    calib = evaluation["calibration"]
    ece = "".join(
        f"<tr><th>{esc(role)}</th><td class=num>{_num(c['ece'])}</td></tr>" for role, c in calib.items()
    )
    figures: dict[str, dict[str, Any]] = {}
    diff_fig = difference_figure(slices, float(settings["gate_margin"]))
    if diff_fig is not None:
        figures["fig-diff"] = diff_fig
    figures["fig-reliability"] = reliability_figure(calib)
    skipped = (
        "".join(f"<li>{esc(k)}: {int(v)}</li>" for k, v in evaluation["skipped"].items()) or "<li>none</li>"
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in evaluation["notes"])
    drift = evaluation.get("drift")
    drift_html = (
        "<p>No drift slices (drift_uri is empty).</p>"
        if not drift
        else f"<p>Drift table <code>{esc(drift['uri'])}</code>: {len(drift['flagged_windows'])} flagged "
        f"window(s) ({esc(', '.join(a[:16] + ' to ' + b[:16] for a, b in drift['flagged_windows'][:10]))}); "
        f"clock alignment: {esc(drift['alignment'])}.</p>"
    )
    settings_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in settings.items())
    figs_html = "".join(f'<div class=fig id="{fid}"></div>' for fid in figures)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Evaluation: {esc(title)}</title>
<style>{_CSS}</style></head><body>
<h1>Evaluation: candidate against production</h1>
<div class="banner {esc(decision)}"><b>{esc(title)}</b> (decision <code>{esc(decision)}</code>)</div>
<ul>{reasons}</ul>
<h2>Models</h2>{models}
<h2>Overall ({int(overall["rows"])} rows)</h2>
<table><tr><th></th><th>accuracy [CI]</th></tr>
<tr><th>candidate</th>{_acc(overall["candidate"])}</tr><tr><th>production</th>{_acc(overall["production"])}</tr>
<tr><th>difference, points [CI]</th>{_diff(overall)}</tr></table>
<table><tr><th>expected calibration error</th><th></th></tr>{ece}</table>
<h2>Slices</h2>
<p>Intervals at {100 * float(settings["confidence_level"]):g}%: Wilson for an accuracy, paired bootstrap
({int(settings["bootstrap_resamples"])} resamples) for the difference on the same rows. The gate checks
the overall figure and every slice of at least {int(settings["gate_min_slice_rows"])} rows against a margin
of {float(settings["gate_margin"]):g}.</p>
{figs_html}
{slice_table(slices)}
<h2>Drift</h2>{drift_html}
<h2>Rows left out</h2><ul>{skipped}</ul>
<h2>Notes</h2><ul>{notes}</ul>
<h2>Settings</h2><table>{settings_rows}</table>
{_loader(figures)}
</body></html>
"""
