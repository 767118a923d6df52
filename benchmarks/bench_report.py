"""Drift report benchmark: today's report against the light one, size and load time in headless Chromium.

    .venv/bin/python benchmarks/bench_report.py                    # default size, UMAP (a few minutes)
    .venv/bin/python benchmarks/bench_report.py --projection pca   # quicker, the same report sizes

Builds a default-sized prepared folder (30,000 training, 3,000 validation and 9,000 production
rows over 31 daily windows, two of them drifted; each row's image a real Fashion-MNIST picture of
its class from /usr/share/datasets/fashion-mnist), runs the drift stage on it with the default
settings (3,000 points in the view, thumbnails on) and keeps what the stage handed to
``report.render``. Then, in this one process, renders that same input twice:

- **today's report** (``render(light=False)``, thumbnails made the old way: PNG blown up 2x to
  56 px): plotly.js as text, each figure with its own data, one PNG data URI per point;
- **the light report** (``render()``, the default): plotly.js and the view's data gzip+base64,
  unpacked in the browser (DecompressionStream), thumbnails as tiles of one WebP sheet.

It prints each one's size, how long ``render`` took, and its load time in headless Chromium
(``/usr/bin/chromium``, driven through the DevTools protocol): a fresh browser context per load,
from navigation start (``performance.now()`` origin) until every figure of the page has been drawn
by plotly (each plot div has plotly's ``_fullLayout`` and its SVG) and, for the light report,
the loader has finished (``data-drawn`` on the body: the window menu applied); the median of
``--loads`` loads each, alternating, with software WebGL (SwiftShader) as on a machine without a
GPU. It also prints the JS heap in use once drawn.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

# The test fixtures live under tests/ (they never ship in an image); `python benchmarks/bench_report.py`
# puts benchmarks/ on sys.path, not the repository root that holds them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.common import schema  # noqa: E402
from components.drift import report as report_module  # noqa: E402
from components.drift.config import DriftConfig  # noqa: E402
from components.drift.stage import run_drift  # noqa: E402
from components.drift.view import thumbnail_uri  # noqa: E402

C = schema.PreparedColumns
FASHION = Path("/usr/share/datasets/fashion-mnist")
CHROMIUM = "/usr/bin/chromium"
FIGURES = ("drift-chart", "umap3d", "umap2d")


def fashion_images() -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST's 60,000 training images (28 x 28, uint8) and labels."""
    with gzip.open(FASHION / "train-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / "train-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def build_folder(root: Path, seed: int, dim: int) -> Path:
    """A default-sized prepared folder whose image links point at real Fashion-MNIST PNGs."""
    from PIL import Image

    from tests.fixtures.drift_rows import write_prepared

    folder = write_prepared(
        root / "prepared",
        seed=seed,
        dim=dim,
        n_train=30_000,
        n_validation=3_000,
        days=31,
        per_day=290,
        drift_days=(14, 15),
    )
    images, labels = fashion_images()
    by_class = [np.flatnonzero(labels == k) for k in range(schema.NUM_CLASSES)]
    rng = np.random.default_rng(seed)
    for split in (schema.TRAINING, schema.PRODUCTION):
        df = pd.read_parquet(folder / schema.prepared_file(split), columns=[C.IMAGE_LINK, C.ACTUAL_LABEL])
        for link, label in zip(df[C.IMAGE_LINK], df[C.ACTUAL_LABEL], strict=True):
            if link:
                pick = rng.choice(by_class[schema.CLASS_NAMES.index(label)])
                buf = io.BytesIO()
                Image.fromarray(images[pick], mode="L").save(buf, format="PNG")
                Path(link).write_bytes(buf.getvalue())
    return folder


def stage_inputs(folder: Path, projection: str, seed: int, out: Path) -> tuple[tuple, dict]:
    """Run the stage on ``folder`` and keep what it handed to ``report.render``."""
    captured: dict[str, object] = {}
    render = report_module.render

    def keep(*args: object, **kwargs: object) -> str:
        captured["args"], captured["kwargs"] = args, kwargs
        return render(*args, **kwargs)

    report_module.render = keep  # the stage looks render up when it writes the report
    try:
        cfg = DriftConfig(projection=projection, seed=seed)
        run_drift(folder, folder, out / "stage_report.html", None, cfg)
    finally:
        report_module.render = render
    return captured["args"], captured["kwargs"]  # type: ignore[return-value]


def old_thumbnail(uri: str) -> str:
    """A thumbnail as today's code made it (PNG blown up to 56 px), from the stage's native-size one."""
    if not uri:
        return uri
    return thumbnail_uri(base64.b64decode(uri.split(",", 1)[1]), upscale=True)


def old_inputs(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """The same render inputs with every thumbnail encoded the old way."""
    table, detectors, summary, view, facts, *rest = args
    if view is not None:
        view = replace(view, thumbnails=[old_thumbnail(u) for u in view.thumbnails])
    kwargs = dict(kwargs)
    if "explanations" in kwargs:
        kwargs["explanations"] = [
            replace(e, examples=[replace(x, thumbnail=old_thumbnail(x.thumbnail)) for x in e.examples])
            for e in kwargs["explanations"]
        ]
    return (table, detectors, summary, view, facts, *rest), kwargs


# -- headless Chromium through the DevTools protocol --------------------------------------------------

_POLL = """
(function () {
  var ids = IDS, light = LIGHT;
  function drawn() {
    for (var i = 0; i < ids.length; i++) {
      var g = document.getElementById(ids[i]);
      if (!g || !g._fullLayout || !g.querySelector('.main-svg')) { return false; }
    }
    return light ? document.body.getAttribute('data-drawn') === 'true' : document.readyState === 'complete';
  }
  function tick() {
    if (document.body && drawn()) { window.__drawnAt = performance.now(); return; }
    setTimeout(tick, 5);
  }
  tick();
})();
"""


class Browser:
    """One headless Chromium; :meth:`load` opens a page in a fresh browser context and times it."""

    def __init__(self, binary: str = CHROMIUM) -> None:
        import websocket  # websocket-client

        self.profile = tempfile.mkdtemp(prefix="bench-report-chromium-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--enable-unsafe-swiftshader",
                "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}",
                "--no-first-run",
                "--disable-extensions",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + 30
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{binary} did not open its DevTools port")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=300, max_size=None)
        self.next_id = 0

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """One DevTools command; its result (events in between are skipped)."""
        self.next_id += 1
        msg: dict[str, object] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def load(self, path: Path, figures: list[str], light: bool, timeout: float = 300.0) -> dict[str, float]:
        """Open ``path`` in a fresh context: ms until drawn, ms to the load event, JS heap in MB."""
        context = self.call("Target.createBrowserContext")["browserContextId"]
        target = self.call("Target.createTarget", {"url": "about:blank", "browserContextId": context})[
            "targetId"
        ]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self.call("Page.enable", session=session)
            poll = _POLL.replace("IDS", json.dumps(figures)).replace("LIGHT", "true" if light else "false")
            self.call("Page.addScriptToEvaluateOnNewDocument", {"source": poll}, session)
            self.call("Page.navigate", {"url": path.resolve().as_uri()}, session)
            deadline = time.time() + timeout
            while True:
                got = self.call(
                    "Runtime.evaluate",
                    {
                        "expression": "window.__drawnAt === undefined ? -1 : window.__drawnAt",
                        "returnByValue": True,
                    },
                    session,
                )["result"].get("value", -1)
                if got is not None and got >= 0:
                    break
                if time.time() > deadline:
                    note = self.call(
                        "Runtime.evaluate",
                        {
                            "expression": "(document.getElementById('report-loading')||{}).textContent",
                            "returnByValue": True,
                        },
                        session,
                    )["result"].get("value")
                    raise RuntimeError(f"{path.name} not drawn within {timeout:.0f} s ({note})")
                time.sleep(0.05)
            load_end = self.call(
                "Runtime.evaluate",
                {
                    "expression": "performance.getEntriesByType('navigation')[0].loadEventEnd",
                    "returnByValue": True,
                },
                session,
            )["result"]["value"]
            heap = self.call("Runtime.getHeapUsage", session=session)["usedSize"] / 2**20
            return {"drawn_ms": float(got), "load_event_ms": float(load_end), "heap_mb": heap}
        finally:
            self.call("Target.closeTarget", {"targetId": target})
            self.call("Target.disposeBrowserContext", {"browserContextId": context})

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def figures_of(page: str) -> list[str]:
    """The plot divs a report draws (the trend only with a history)."""
    return [f for f in (*FIGURES, "drift-trend") if f'id="{f}"' in page]


def main(argv: list[str] | None = None) -> None:
    """Build the inputs, render both reports, print sizes, render times and load times."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--projection", default="umap", choices=("umap", "pca"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=64, help="embedding length of the synthetic vectors")
    p.add_argument("--loads", type=int, default=3, help="loads of each report in Chromium (median)")
    p.add_argument("--keep", type=Path, default=None, help="also write both reports into this folder")
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="build the inputs here and reuse them next time (default: a temporary folder)",
    )
    a = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        if a.work and (a.work / "prepared" / "ready").exists():
            folder = a.work / "prepared"
        else:
            folder = build_folder(a.work or root, a.seed, a.dim)
            (folder / "ready").write_text("built by benchmarks/bench_report.py\n")
        print(
            f"inputs: default-sized prepared folder with Fashion-MNIST images ({time.perf_counter() - t0:.0f} s)"
        )
        t0 = time.perf_counter()
        args, kwargs = stage_inputs(folder, a.projection, a.seed, root)
        view = args[3]
        n_thumbs = sum(1 for u in view.thumbnails if u) if view is not None else 0
        print(
            f"drift stage ({a.projection}): {len(args[0])} windows, {len(view.hover) if view else 0} view points, "
            f"{n_thumbs} thumbnails ({time.perf_counter() - t0:.0f} s)"
        )
        old_args, old_kwargs = old_inputs(args, kwargs)
        pages: dict[str, Path] = {}
        sizes: dict[str, int] = {}
        render_s: dict[str, float] = {}
        for name, light, (ra, rk) in (
            ("today", False, (old_args, old_kwargs)),
            ("light", True, (args, kwargs)),
        ):
            t0 = time.perf_counter()
            page = report_module.render(*ra, **rk, light=light)
            render_s[name] = time.perf_counter() - t0
            path = root / f"report_{name}.html"
            path.write_text(page, encoding="utf-8")
            pages[name], sizes[name] = path, len(page.encode("utf-8"))
            if a.keep:
                a.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, a.keep / path.name)
        light_page = pages["light"].read_text(encoding="utf-8")
        blocks = report_module.read_blocks(light_page)
        print("\nlight report, what it holds (bytes in the page):")
        for key, text in sorted(blocks.items(), key=lambda kv: -len(kv[1])):
            print(f"  {key:<16} {len(text):>10,}")
        rest = sizes["light"] - sum(len(t) for t in blocks.values())
        print(f"  {'figures + HTML':<16} {rest:>10,}")

        times: dict[str, list[dict[str, float]]] = {"today": [], "light": []}
        if Path(CHROMIUM).exists() or shutil.which("chromium"):
            browser = Browser(CHROMIUM if Path(CHROMIUM).exists() else str(shutil.which("chromium")))
            try:
                for _ in range(a.loads):
                    for name in ("today", "light"):
                        page = pages[name].read_text(encoding="utf-8")
                        times[name].append(browser.load(pages[name], figures_of(page), name == "light"))
            finally:
                browser.close()
        else:
            print(f"\n{CHROMIUM} not found: no load times")

        print(
            f"\n{'report':<8} {'size':>12} {'render':>8} {'drawn (median)':>15} {'load event':>11} {'JS heap':>9}"
        )
        med: dict[str, float] = {}
        for name in ("today", "light"):
            line = f"{name:<8} {sizes[name] / 1e6:>9.2f} MB {render_s[name]:>7.2f}s"
            if times[name]:
                med[name] = statistics.median(t["drawn_ms"] for t in times[name])
                load = statistics.median(t["load_event_ms"] for t in times[name])
                heap = statistics.median(t["heap_mb"] for t in times[name])
                runs = ", ".join(f"{t['drawn_ms']:.0f}" for t in times[name])
                line += f" {med[name]:>11.0f} ms {load:>8.0f} ms {heap:>6.0f} MB   (loads: {runs} ms)"
            print(line)
        print(
            f"\nsize: light / today = {sizes['light'] / sizes['today']:.3f} ({sizes['today'] / sizes['light']:.1f}x smaller)"
        )
        if med:
            print(f"drawn: light / today = {med['light'] / med['today']:.2f}")
        print(f"target: light report <= 3 MB: {'met' if sizes['light'] <= 3_000_000 else 'NOT met'}")


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    main()
