"""The drift stage under hostile or thin input: inert data strings, images only from the store, no verdict
without data.

Each test here failed before issue 14's changes: payloads in the data became live script elements,
a link to any readable image was embedded, and a run that tested no window said "no alert".
"""

from __future__ import annotations

import gzip
import json
import os
import re
from base64 import b64decode
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.common import schema
from components.drift import view as v
from components.drift.__main__ import main
from components.drift.config import DriftConfig
from components.drift.report import read_blocks, script_json
from components.drift.stage import INSUFFICIENT_DATA, NO_DRIFT, run_drift
from tests.fixtures.drift_rows import _png, report_points, write_prepared, write_table

C = schema.PreparedColumns
FAST = {"projection": "pca", "drift_resamples": 300, "false_alarm_rate": 0.02}

CLOSE_SCRIPT = "</script><script>document.title='x'</script>"
IMG = "<img src=x onerror=alert(1)>"
ATTR = '"onmouseover="alert(1)'
PAYLOADS = (CLOSE_SCRIPT, IMG, ATTR)
# The report's own script elements: the figure blocks of the drift chart, the trend, UMAP 3-D and 2-D;
# the data blocks of plotly.js, the view's data and one thumbnail sheet; the script that draws them.
OWN_SCRIPTS = 8


class Elements(HTMLParser):
    """Every start tag of a page with its attributes, and the text of its title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def parse(page: str) -> Elements:
    p = Elements()
    p.feed(page)
    p.close()
    return p


def _production(folder: Path) -> pd.DataFrame:
    return pd.read_parquet(folder / schema.prepared_file(schema.PRODUCTION))


def _rewrite_production(folder: Path, df: pd.DataFrame) -> None:
    write_table(df, folder / schema.prepared_file(schema.PRODUCTION))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """A prepared folder whose production strings are payloads, a manifest with one, and its report."""
    root = tmp_path_factory.mktemp("hostile")
    folder = write_prepared(root / "prepared", seed=3, n_train=600, n_validation=300, days=3, per_day=60)
    df = _production(folder)
    n = len(df)
    pick = np.arange(n) % len(PAYLOADS)
    df[C.DEGRADATION] = [PAYLOADS[i] for i in pick]
    df[C.PREDICTION_LABEL] = [IMG if i % 7 == 0 else lab for i, lab in enumerate(df[C.PREDICTION_LABEL])]
    df[C.ACTUAL_LABEL] = [CLOSE_SCRIPT if i % 5 == 0 else lab for i, lab in enumerate(df[C.ACTUAL_LABEL])]
    df[C.IMAGE_ID] = [PAYLOADS[(i + 1) % 3] for i in range(n)]
    df[C.PREDICTION_ID] = [f"{PAYLOADS[(i + 2) % 3]}-{i}" for i in range(n)]
    df[C.IMAGE_LINK] = [
        p if i % 2 else link for i, (p, link) in enumerate(zip(df[C.IMAGE_ID], df[C.IMAGE_LINK], strict=True))
    ]
    _rewrite_production(folder, df)
    (folder / "manifest.json").write_text(json.dumps({"model_version": CLOSE_SCRIPT + IMG}), encoding="utf-8")
    cfg = DriftConfig(**FAST, umap_sample=200, history_uri=str(root / "history.parquet"))
    report = root / "report.html"
    result = run_drift(folder, folder, report, None, cfg)
    return report.read_text(encoding="utf-8"), result


def test_payloads_in_the_data_add_no_script_element(hostile):
    page, _ = hostile
    tags = parse(page)
    assert sum(1 for tag, _ in tags.tags if tag == "script") == OWN_SCRIPTS
    assert tags.title == "Embedding drift report"


def test_payloads_add_no_element_or_attribute(hostile):
    page, _ = hostile
    for tag, attrs in parse(page).tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not (tag == "img" and attrs.get("src") == "x"), attrs
        assert "alert(1)" not in json.dumps({k: val for k, val in attrs.items() if k != "title"})


def test_the_payload_text_is_shown_escaped(hostile):
    page, _ = hostile
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # in the HTML (cluster table, tooltips)
    packed = read_blocks(page)["view-data"]  # the view's data, as script_json wrote it before packing
    assert (
        "\\u003c/script\\u003e\\u003cscript\\u003edocument.title="
        in gzip.decompress(b64decode(packed)).decode()
    )
    _, texts = report_points(page)
    shown = "\n".join(texts)
    assert IMG in shown and CLOSE_SCRIPT in shown  # the hover panel shows the text as it is


def test_payload_links_are_not_read_and_are_counted(hostile):
    _, result = hostile
    assert any(
        "thumbnails skipped: link outside the prepared folder/image store" in s for s in result.summary
    )


def test_the_hover_panel_never_parses_data_as_html(hostile):
    page, _ = hostile
    hover = re.search(r'<script id="hover-script">(.*?)</script>', page, flags=re.S).group(1)
    assert "innerHTML" not in hover and "textContent" in hover


def test_script_json_escapes_what_ends_or_breaks_a_script():
    text = script_json(["</script>", "a&b", "\u2028\u2029", "<!--"])
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == ["</script>", "a&b", "\u2028\u2029", "<!--"]


def test_plotly_figure_json_escapes_a_closing_script_tag():
    import plotly.graph_objects as go

    from components.drift.report import _fig_div

    div = _fig_div(go.Figure(go.Scatter(x=[1], y=[1], name=CLOSE_SCRIPT)), "f")
    assert "</script>" not in div.replace("</script>", "", 1)  # only the figure's own closing tag
    assert [tag for tag, _ in parse(div).tags].count("script") == 1
    assert "\\u003c\\u002fscript\\u003e" in div  # the name is still there, escaped by plotly


# -- 2. images only from the prepared folder or the image store --------------------------------------


@pytest.fixture(scope="module")
def outside_links(tmp_path_factory):
    """Production links to a PNG outside the folder: absolute, through ``..``, a symlink, /etc/passwd."""
    root = tmp_path_factory.mktemp("links")
    folder = write_prepared(root / "prepared", seed=4, n_train=600, n_validation=300, days=3, per_day=60)
    secret = root / "outside" / "secret.png"
    secret.parent.mkdir()
    secret.write_bytes(_png(np.random.default_rng(0), 9))
    link = folder / "images" / "link.png"
    os.symlink(secret, link)
    dotdot = str(folder / "images" / ".." / ".." / "outside" / "secret.png")
    kinds = [str(secret), dotdot, str(link), "/etc/passwd"]
    df = _production(folder)
    df[C.IMAGE_LINK] = [kinds[i % 4] for i in range(len(df))]
    _rewrite_production(folder, df)
    report = root / "report.html"
    result = run_drift(folder, folder, report, None, DriftConfig(**FAST, umap_sample=200))
    return report.read_text(encoding="utf-8"), result, secret


def test_no_image_outside_the_prepared_folder_is_embedded(outside_links):
    page, _, secret = outside_links
    thumbs, texts = report_points(page)
    assert v.thumbnail_uri(secret.read_bytes()) not in page
    prod = [t for t, text in zip(thumbs, texts, strict=True) if text.startswith("production")]
    base = [t for t, text in zip(thumbs, texts, strict=True) if text.startswith("baseline")]
    assert prod and all(t == "" for t in prod)
    assert base and all(t.startswith("data:image/png;base64,") for t in base)


def test_links_outside_are_counted_in_the_summary(outside_links):
    page, result, _ = outside_links
    thumbs, texts = report_points(page)
    n_prod = sum(1 for text in texts if text.startswith("production"))
    line = f"{n_prod} thumbnails skipped: link outside the prepared folder/image store"
    assert any(s.startswith(line) for s in result.summary), result.summary
    assert not any("could not be read" in s for s in result.summary)  # not mistaken for unreadable


def test_image_scope_resolves_local_paths(tmp_path):
    store = tmp_path / "store"
    (store / "a").mkdir(parents=True)
    (store / "a" / "x.png").write_bytes(b"x")
    os.symlink("/etc", store / "etc")
    scope = v.ImageScope.of([str(store)])
    assert scope.allows(str(store / "a" / "x.png"))
    assert not scope.allows(str(store / "a" / ".." / ".." / "x.png"))
    assert not scope.allows(str(store / "etc" / "passwd"))
    assert not scope.allows("/etc/passwd") and not scope.allows("")
    assert not v.ImageScope.of(["/"]).allows("/etc/passwd")  # the filesystem root is no image store


def test_image_scope_of_an_object_store_prefix(monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("STORAGE_LINKS", raising=False)
    scope = v.ImageScope.of(["gs://bucket/images"])
    assert scope.allows("gs://bucket/images/production/1.png")
    assert scope.allows("https://storage.googleapis.com/bucket/images/production/1.png")
    assert not scope.allows("gs://bucket/images-other/1.png")
    assert not scope.allows("gs://bucket/images/../secret/1.png")
    assert not scope.allows("https://storage.googleapis.com/bucket/images/%2E%2E/secret.png")
    assert not scope.allows("gs://other/images/1.png") and not scope.allows("s3://bucket/images/1.png")
    assert not scope.allows("https://example.com/bucket/images/1.png")


def test_image_scope_matches_minio_and_s3_forms_of_one_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://seaweedfs.kubeflow:9000")
    monkeypatch.setenv("MINIO_ENDPOINT_URL", "http://seaweedfs.kubeflow:9000")
    monkeypatch.delenv("STORAGE_LINKS", raising=False)
    scope = v.ImageScope.of(["minio://mlpipeline/run/prepared"])
    assert scope.allows("http://seaweedfs.kubeflow:9000/mlpipeline/run/prepared/images/training/1.png")
    assert not scope.allows("http://seaweedfs.kubeflow:9000/mlpipeline/run/other/1.png")


def test_the_configured_image_store_and_the_manifest_widen_the_scope(tmp_path):
    from components.drift.stage import image_scope

    store = tmp_path / "store"
    other = tmp_path / "other"
    for d in (store, other):
        d.mkdir()
        (d / "i.png").write_bytes(b"x")
    folder = tmp_path / "prepared"
    folder.mkdir()
    assert not image_scope(folder, folder, DriftConfig()).allows(str(store / "i.png"))
    assert image_scope(folder, folder, DriftConfig(image_store=str(store))).allows(str(store / "i.png"))
    (folder / "manifest.json").write_text(json.dumps({"image_store": str(other)}), encoding="utf-8")
    assert image_scope(folder, folder, DriftConfig()).allows(str(other / "i.png"))
    assert image_scope(folder, folder, DriftConfig(), ("gs://b/run/prepared",)).allows(
        "gs://b/run/prepared/images/training/1.png"
    )


# -- 3. insufficient data is its own status ----------------------------------------------------------


def _thin(tmp_path: Path, n_production: int) -> Path:
    folder = write_prepared(
        tmp_path / f"thin{n_production}",
        seed=5,
        n_train=600,
        n_validation=300,
        days=2,
        per_day=30,
        images=False,
    )
    _rewrite_production(folder, _production(folder).head(n_production))
    return folder


@pytest.mark.parametrize("n", [1, 5])
def test_a_few_production_rows_are_insufficient_data(tmp_path, n):
    folder = _thin(tmp_path, n)
    report = tmp_path / "r.html"
    result = run_drift(folder, folder, report, None, DriftConfig(**FAST, thumbnails=False, umap_sample=100))
    assert result.status == INSUFFICIENT_DATA and result.alert is False
    assert result.metrics["windows_tested"] == 0.0
    assert result.summary[0].startswith("Insufficient data: no window was tested")
    assert "No window drifted" not in " ".join(result.summary)
    page = report.read_text(encoding="utf-8")
    top = page.split("<h2>", 1)[0]
    assert 'class="status insufficient-data"' in top and "Insufficient data" in top


def test_most_rows_rejected_is_insufficient_data(tmp_path):
    folder = write_prepared(
        tmp_path / "p",
        seed=6,
        n_train=600,
        n_validation=300,
        days=12,
        per_day=50,
        drift_days=(),
        images=False,
    )
    df = _production(folder)
    assert len(df) == 600
    bad = np.arange(len(df)) % 3 != 0  # 400 of 600 rows: a NaN in the vector
    df[C.IMAGE_VECTOR] = [
        np.full_like(vec, np.nan) if b else vec for vec, b in zip(df[C.IMAGE_VECTOR], bad, strict=True)
    ]
    _rewrite_production(folder, df)
    result = run_drift(folder, folder, None, None, DriftConfig(**FAST, thumbnails=False))
    assert result.metrics["rejected_rows"] == 400.0 and result.metrics["windows_tested"] == 0.0
    assert result.status == INSUFFICIENT_DATA and not result.alert
    assert "400 row(s) could not be used" in result.summary[0]


def test_the_command_line_exits_3_on_insufficient_data(tmp_path, capsys):
    folder = _thin(tmp_path, 5)
    argv = [str(folder), "--report", str(tmp_path / "r.html"), "--table", str(tmp_path / "t.parquet")]
    argv += ["--projection", "pca", "--drift-resamples", "300", "--false-alarm-rate", "0.02"]
    argv += ["--no-thumbnails", "--umap-sample", "100"]
    assert main(argv) == 3
    assert "\nInsufficient data: no window was tested" in capsys.readouterr().out


def test_enough_clean_data_is_no_drift(prepared_dir):
    result = run_drift(
        prepared_dir, prepared_dir, None, None, DriftConfig(**FAST, thumbnails=False, drift_window="weekly")
    )
    assert result.metrics["windows_tested"] > 0
    assert result.status == ("drift" if result.alert else NO_DRIFT)
    assert result.summary[0].startswith("Drift: " if result.alert else "No drift: ")


def test_every_production_row_rejected_stays_bad_input(tmp_path, capsys):
    folder = _thin(tmp_path, 30)
    df = _production(folder)
    df[C.IMAGE_VECTOR] = [np.full_like(vec, np.nan) for vec in df[C.IMAGE_VECTOR]]
    _rewrite_production(folder, df)
    argv = [str(folder), "--report", str(tmp_path / "r.html"), "--table", str(tmp_path / "t.parquet")]
    argv += ["--projection", "pca", "--drift-resamples", "300", "--false-alarm-rate", "0.02"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no usable production rows" in err and "NaN or infinite values" in err


def test_an_image_store_of_another_scheme_is_refused_with_the_settings():
    with pytest.raises(ValueError, match="image_store='ftp://host/images'"):
        DriftConfig(image_store="ftp://host/images")
    assert DriftConfig(image_store="gs://bucket/images").image_store == "gs://bucket/images"
