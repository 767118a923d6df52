"""The light report (issue 13): packed payloads, the thumbnail sheet and the filled figures round-trip.

Pure Python: what the page's loader unpacks and draws is unpacked and filled here the same way
(``report.unpack``, ``report.umap_fill``, ``report.atlas_tiles``) and compared with today's report.
The loader itself runs under node in ``test_report.py`` and in Chromium in the last test here.
"""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.drift import report as r
from components.drift import view as v
from components.drift.report import ViewData
from tests.fixtures.drift_rows import _png

HOSTILE = "</script><script>document.title='x'</script><!-- & \u2028"


def _uri(img) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _decode(uri: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(
        Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"), dtype=int
    )


def test_a_packed_payload_round_trips_and_stays_inert():
    value = {"texts": [HOSTILE, "plain"], "xyz": [[0.5, None, -1.25]]}
    packed = r.pack(value)
    assert re.fullmatch(r"[A-Za-z0-9+/=]+", packed)  # nothing in it can end a script element
    assert r.unpack(packed) == value
    # packed from script_json's text: decompressed, it is still safe inside a script
    import gzip

    text = gzip.decompress(base64.b64decode(packed)).decode("utf-8")
    assert "<" not in text and "&" not in text and "\u2028" not in text


def test_rounding_keeps_a_ten_thousandth_of_the_extent():
    rng = np.random.default_rng(0)
    for scale in (0.003, 1.0, 25.0, 4000.0):
        a = rng.normal(size=500) * scale
        out = np.array(r.rounded(a), dtype=float)
        assert np.abs(out - a).max() <= (a.max() - a.min()) / r.AXIS_STEPS
    assert r.rounded(np.array([1.0, np.nan, np.inf])) == [1.0, None, None]
    assert r.rounded(np.array([2.5, 2.5])) == [2.5, 2.5]  # no extent: the value's own size


def test_the_thumbnail_sheet_gives_back_each_points_picture():
    from PIL import Image

    rng = np.random.default_rng(1)
    pngs = [_png(rng, k % 10) for k in range(40)]
    uris = [v.thumbnail_uri(p) for p in pngs]
    assert all(Image.open(io.BytesIO(base64.b64decode(u.split(",")[1]))).size == (28, 28) for u in uris)
    points = uris + ["", uris[3], "data:image/png;base64,bm90IGFuIGltYWdl"]  # none, a repeat, not an image
    atlas = r.thumbnail_atlas(points)
    assert len(atlas.sheets) == 1 and atlas.sheets[0][:4] == b"RIFF" and atlas.sheets[0][8:12] == b"WEBP"
    assert atlas.tile[40] == -1 and atlas.tile[41] == atlas.tile[3] and atlas.tile[42] == -1
    assert sorted(set(atlas.tile) - {-1}) == list(range(40))  # one tile per distinct picture
    tiles = r.atlas_tiles(atlas.facts(), atlas.sheets, atlas.tile)
    assert tiles[40] == tiles[42] == "" and tiles[41] == tiles[3]
    errors = [np.abs(_decode(t) - _decode(u)).mean() for t, u in zip(tiles[:40], uris, strict=True)]
    assert max(errors) < 8.0, errors  # lossy WebP at quality 70: a few grey levels out of 255


def test_tiles_of_other_sizes_and_colours_and_more_than_one_sheet(monkeypatch):
    from PIL import Image

    grey = Image.fromarray(np.full((20, 28), 200, np.uint8), mode="L")
    red = Image.new("RGB", (12, 30), (220, 30, 30))
    uris = [_uri(grey), _uri(red)] * 1 + [_uri(Image.new("L", (28, 28), k * 20)) for k in range(10)]
    monkeypatch.setattr(r, "SHEET_MAX", 64)  # two columns and two rows of 28 x 30 cells a sheet
    atlas = r.thumbnail_atlas(uris)
    assert atlas.cell == (28, 30) and len(atlas.sheets) == 3 and atlas.sizes is not None
    tiles = r.atlas_tiles(atlas.facts(), atlas.sheets, atlas.tile)
    assert _decode(tiles[1]).shape == (30, 12, 3) and _decode(tiles[0]).shape == (20, 28, 3)
    assert np.abs(_decode(tiles[1]) - [220, 30, 30]).mean() < 12  # still red
    assert np.abs(_decode(tiles[0]) - 200).mean() < 4
    assert r.thumbnail_atlas(["", ""]).tile == [-1, -1]


def _view(n: int = 300, seed: int = 0, thumbs: bool = True) -> ViewData:
    rng = np.random.default_rng(seed)
    cats = np.array(["baseline", "production"])[rng.integers(0, 2, n)]
    colourings = [
        v.Colouring("dataset", cats, ("baseline", "production")),
        v.Colouring(
            "label", np.array([HOSTILE, "Bag", "Coat"])[rng.integers(0, 3, n)], (HOSTILE, "Bag", "Coat")
        ),
        v.Colouring("score", rng.uniform(0, 1, n)),
    ]
    pngs = [_png(rng, k % 10) for k in range(n)] if thumbs else []
    return ViewData(
        coords3=rng.normal(size=(n, 3)).astype(np.float32) * 7,
        coords2=rng.normal(size=(n, 2)).astype(np.float32) * 7,
        colourings=colourings,
        hover=[f"{c} · point {i}\n{HOSTILE}" for i, c in enumerate(cats)],
        thumbnails=[v.thumbnail_uri(p) for p in pngs] if thumbs else [""] * n,
        is_production=cats == "production",
        point_window=np.where(cats == "production", np.arange(n) % 3, -1),
        default_window=1,
        title="test view",
    )


def test_a_light_umap_figure_filled_equals_todays(monkeypatch):
    view = _view()
    atlas = r.thumbnail_atlas(view.thumbnails)
    payload = json.loads(json.dumps(r.view_payload(view, [], view.point_window.tolist(), atlas)))
    for dims in (3, 2):
        full = json.loads(r._figure_json(r.umap_figure(view, dims)))
        light = json.loads(r._figure_json(r.umap_figure(view, dims, light=True)))
        filled = r.umap_fill(light, payload)
        assert len(filled["data"]) == len(full["data"]) == 2 + 3 + 1
        assert filled["layout"]["updatemenus"] == full["layout"]["updatemenus"]
        for a, b in zip(filled["data"], full["data"], strict=True):
            assert (a["name"], a["type"], a["visible"], a["customdata"]) == (
                b["name"],
                b["type"],
                b["visible"],
                b["customdata"],
            )
            for axis in "xyz"[:dims]:
                assert np.allclose(a[axis], b[axis], atol=14 * 7 / r.AXIS_STEPS + 1e-9)
            if isinstance(b["marker"].get("color"), list):
                assert np.allclose(a["marker"]["color"], b["marker"]["color"], atol=1 / r.COLOUR_STEPS)
            else:
                assert a["marker"]["color"] == b["marker"]["color"]


def _table(days: int = 3) -> pd.DataFrame:
    start = pd.date_range("2026-11-20", periods=days, freq="D", tz="UTC")
    return pd.DataFrame(
        {
            "window_start": start,
            "window_end": start + pd.Timedelta(days=1),
            "n_rows": [100] * days,
            "status": ["ok"] * days,
            "accuracy": [0.9] * days,
            "mean_score": [0.8] * days,
            "centroid_score": [0.1, 0.9, 0.1][:days],
            "centroid_threshold": [0.5] * days,
            "centroid_p_value": [0.5, 0.001, 0.5][:days],
            "centroid_fired": [False, True, False][:days],
            "flagged": [False, True, False][:days],
            "fired": ["", "centroid", ""][:days],
            "window": ["daily"] * days,
        }
    )


def test_the_light_report_is_smaller_self_contained_and_holds_every_view():
    view = _view(600)
    args = (_table(), ["centroid"], ["Drift: 1 of 3 windows", HOSTILE], view, {"seed": HOSTILE})
    today = r.render(*args, status="drift", light=False)
    light = r.render(*args, status="drift")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", light)
    assert "<script src" not in light and HOSTILE not in light
    # the same sections, menu and cluster table; the figures' traces are the same
    for marker in (
        'id="drift-chart"',
        'id="umap3d"',
        'id="umap2d"',
        'id="window-select"',
        'id="thumb-panel"',
        "Clusters (HDBSCAN)",
        "No drift history",
    ):
        assert marker in light and marker in today, marker
    drift = r.read_figure(light, "drift-chart")
    assert [t["name"] for t in drift["data"]] == ["rows", "centroid", "centroid threshold", "centroid fired"]
    unpacked = r.read_view(light)
    assert unpacked["texts"] == view.hover and unpacked["pointWindow"] == view.point_window.tolist()
    assert unpacked["defaultWindow"] == 1 and len(unpacked["thumbs"]) == 600
    # a known small input: plotly.js (packed, about 2 MB) is most of it; today's is 6-7 MB
    size, old = len(light.encode()), len(today.encode())
    assert size < 2_500_000 and old > 2.5 * size, (size, old)


def test_without_a_view_or_thumbnails_the_light_report_still_draws_its_charts():
    light = r.render(_table(), ["centroid"], ["no view"], None, {})
    assert "No projection: too few points." in light and "view-data" not in r.read_blocks(light)
    assert r.read_figure(light, "drift-chart")["data"]
    bare = r.render(_table(), ["centroid"], ["no thumbnails"], _view(50, thumbs=False), {})
    assert "thumb-sheet-0" not in r.read_blocks(bare) and r.read_view(bare)["thumbs"] == [""] * 50


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_chromium_unpacks_and_draws_the_light_report(tmp_path):
    """In a real browser: DecompressionStream unpacks plotly.js and the view, every figure is drawn."""
    page = tmp_path / "report.html"
    page.write_text(r.render(_table(), ["centroid"], ["x"], _view(200), {}), encoding="utf-8")
    cmd = [
        str(CHROMIUM),
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-unsafe-swiftshader",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=60000",
        "--dump-dom",
        page.as_uri(),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    dom = run.stdout
    assert 'data-drawn="true"' in dom, (run.stderr[-2000:], re.findall(r'id="report-loading"[^<]*<', dom))
    for div in ("drift-chart", "umap3d", "umap2d"):
        drawn = re.search(r'<div id="' + div + r'"[^>]*class="[^"]*js-plotly-plot', dom)
        assert drawn, div
    assert "Window 2026-11-21: " in dom  # the view's caption: the default window chosen after drawing
