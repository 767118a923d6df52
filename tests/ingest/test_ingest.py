"""The ingest stage on real files on disk: manifests in three formats, a folder of images, a data-stage folder."""

from __future__ import annotations

import io
import os
import threading
from datetime import UTC, datetime
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from components.common import schema
from components.common.schema import DatasetColumns as C
from components.common.schema import ServedColumns as S
from components.ingest import sources
from components.ingest.__main__ import main
from components.ingest.config import IngestConfig
from components.ingest.ingest import NoUsableRows, ingest_batch, parse_label, parse_timestamp
from tests.ingest.conftest import BROKEN, GOOD, MAX_BYTES, fashion, make_batch, write_manifest


def _config(source, **kw) -> IngestConfig:
    kw.setdefault("max_image_bytes", MAX_BYTES)
    kw.setdefault("read_workers", 2)
    kw.setdefault("chunk_rows", 5)  # several chunks even on the small batch
    return IngestConfig(source_uri=str(source), **kw)


def _split(out: Path) -> datasets.Dataset:
    dd = datasets.load_from_disk(str(out))
    assert list(dd) == [schema.PRODUCTION]
    return dd[schema.PRODUCTION]


def _reasons(path: Path) -> dict[str, int]:
    table = pq.read_table(path)
    reasons = table.column("reason").to_pylist()
    return {r: reasons.count(r) for r in set(reasons)}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_a_manifest_in_each_format_gives_the_same_batch(fmt, tmp_path):
    rows = make_batch(tmp_path / "batch")
    manifest = write_manifest(rows, tmp_path / "batch" / f"log.{fmt}", fmt)
    out, rejected = tmp_path / "out", tmp_path / "rejected.parquet"
    result = ingest_batch(_config(manifest), out, rejected, quiet=True)

    assert (result.kind, result.rows_seen, result.rows_written) == ("manifest", GOOD + 9, GOOD)
    assert dict(result.rejected) == BROKEN
    assert _reasons(rejected) == BROKEN
    assert result.labelled == 8 and result.served == GOOD and result.with_prediction_id == GOOD
    assert result.extra_columns == ("store",)

    split = _split(out)
    assert split.column_names == [*C.ALL, *S.ALL, "store"]
    assert isinstance(split.features[C.LABEL], datasets.ClassLabel)
    _, labels = fashion(GOOD)
    want = [int(labels[i]) if i % 3 != 2 else schema.NO_LABEL for i in range(GOOD)]
    assert split[C.LABEL] == want
    assert split[C.IMAGE_ID] == split[S.PREDICTION_ID] == [f"pred-{i:03d}" for i in range(GOOD)]
    assert split[S.SERVED_LABEL] == [int((labels[i] + (i % 4 == 0)) % 10) for i in range(GOOD)]
    assert split[S.SERVED_SCORE] == pytest.approx([0.5 + i / 100 for i in range(GOOD)])
    assert split[C.DEGRADATION] == [schema.DEGRADATION_UNKNOWN] * GOOD
    assert split[C.URL] == [str(tmp_path / "batch" / r["image_uri"]) for r in rows[:GOOD]]
    assert split["store"] == [f"store-{i % 2}" for i in range(GOOD)]
    assert split[C.PREDICTION_TS][3] == datetime(2026, 11, 23, 3, tzinfo=UTC)
    assert split.data.schema.field(C.PREDICTION_TS).type == schema.TIMESTAMP_TYPE
    sizes = [img.size for img in split[C.IMAGE]]
    assert {img.mode for img in split[C.IMAGE]} == {"L"}
    assert sizes[:6] == [(28, 28), (28, 28), (28, 28), (33, 17), (90, 40), (40, 64)]
    # a greyscale PNG is stored as it came; the colour JPEG is its luma, close to the original pixels
    images, _ = fashion(GOOD)
    assert np.array_equal(np.asarray(split[C.IMAGE][0]), images[0])
    assert np.abs(np.asarray(split[C.IMAGE][1]).astype(int) - (images[1] * 0.8).astype(int)).mean() < 6

    table = pq.read_table(rejected).to_pylist()
    by_reason = {r["reason"]: r for r in table}
    assert by_reason["missing"]["location"] == str(tmp_path / "batch" / "img" / "not-there.png")
    assert by_reason["missing"]["row"] == GOOD
    assert by_reason["duplicate_id"]["row"] == GOOD + 8 and "pred-000" in by_reason["duplicate_id"]["detail"]
    assert '"timestamp": "yesterday"' in by_reason["bad_timestamp"]["record"]
    assert "Hat" in by_reason["unknown_label"]["detail"]


def test_a_folder_of_images_takes_the_file_times_and_says_so(tmp_path):
    rows = make_batch(tmp_path / "batch", good=7, broken=False)
    folder = tmp_path / "batch" / "img"
    (folder / "notes.txt").write_text("not an image")
    (folder / "sub").mkdir()
    (folder / "sub" / "late.png").write_bytes((folder / "000.png").read_bytes())
    for i, path in enumerate(sorted(folder.rglob("*.*"))):
        os.utime(path, (1_790_000_000 + i * 60, 1_790_000_000 + i * 60))
    result = ingest_batch(_config(folder), tmp_path / "out", tmp_path / "rej.parquet", quiet=True)
    assert result.kind == "images" and "modification time" in result.time_source
    assert "modification time" in result.summary_markdown()
    assert (result.rows_seen, result.rows_written, dict(result.rejected)) == (9, 8, {"not_an_image": 1})
    split = _split(tmp_path / "out")
    want = [
        datetime.fromtimestamp(os.stat(p).st_mtime, UTC)
        for p in sorted(folder.rglob("*.*"))
        if p.suffix != ".txt"
    ]
    assert sorted(split[C.PREDICTION_TS]) == sorted(want)
    assert split[C.LABEL] == [schema.NO_LABEL] * 8
    assert split[S.PREDICTION_ID] == [None] * 8 and split[S.SERVED_LABEL] == [None] * 8
    assert len(set(split[C.IMAGE_ID])) == 8
    # stable: the same files give the same ids
    again = ingest_batch(_config(folder), tmp_path / "out2", tmp_path / "rej2.parquet", quiet=True)
    assert again.rows_written == 8 and _split(tmp_path / "out2")[C.IMAGE_ID] == split[C.IMAGE_ID]
    assert rows  # the manifest rows are unused here


def test_a_manifest_without_timestamps_uses_the_file_times_or_refuses(tmp_path):
    rows = make_batch(tmp_path / "b", good=4, broken=False)
    for r in rows:
        del r["timestamp"]
        del r["prediction_id"]
    rows.append(dict(rows[0]))  # the same image twice, no id, no time: nothing tells them apart
    manifest = write_manifest(rows, tmp_path / "b" / "manifest.csv", "csv")
    os.utime(tmp_path / "b" / rows[1]["image_uri"], (1_790_000_000, 1_790_000_000))
    result = ingest_batch(_config(tmp_path / "b"), tmp_path / "out", tmp_path / "r.parquet", quiet=True)
    assert result.kind == "manifest" and "modification time" in result.time_source
    assert (result.rows_written, dict(result.rejected)) == (4, {"duplicate_id": 1})
    assert _split(tmp_path / "out")[C.PREDICTION_TS][1] == datetime.fromtimestamp(1_790_000_000, UTC)
    with pytest.raises(ValueError, match=r"manifest.csv: no column 'timestamp' .*time_fallback='none'"):
        ingest_batch(_config(manifest, time_fallback="none"), tmp_path / "o2", tmp_path / "r2.parquet")


def test_big_images_are_shrunk_to_the_side_limit(tmp_path):
    make_batch(tmp_path / "b", good=6, broken=False)
    result = ingest_batch(
        _config(tmp_path / "b" / "img", max_image_side=32, time_fallback="now"),
        tmp_path / "out",
        tmp_path / "r.parquet",
        quiet=True,
    )
    assert result.resized == 3 and result.max_side == 32
    sizes = sorted(img.size for img in _split(tmp_path / "out")[C.IMAGE])
    assert sizes == [(20, 32), (28, 28), (28, 28), (28, 28), (32, 14), (32, 16)]


def test_a_batch_without_a_usable_row_fails_with_the_reasons(tmp_path):
    rows = make_batch(tmp_path / "b")[GOOD:-1]  # the broken rows but the duplicate (its first is good)
    manifest = write_manifest(rows, tmp_path / "b" / "m.jsonl", "jsonl")
    rejected = tmp_path / "r.parquet"
    with pytest.raises(NoUsableRows, match=r"no usable row among 8 \(") as err:
        ingest_batch(_config(manifest), tmp_path / "out", rejected, quiet=True)
    assert "missing 1" in str(err.value) and str(rejected) in str(err.value)
    assert _reasons(rejected) == {k: v for k, v in BROKEN.items() if k != "duplicate_id"}
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".*"))  # no temporary folder left behind


def test_broken_manifest_lines_are_kept_aside(tmp_path):
    make_batch(tmp_path / "b", good=2, broken=False)
    (tmp_path / "b" / "m.jsonl").write_text(
        '{"image_uri": "img/000.png", "timestamp": 1795000000}\n'
        "not json\n"
        "\n"
        '["a list"]\n'
        '{"image_uri": "img/001.jpg", "timestamp": "2026-11-28T12:00:00+02:00", "extra": {"k": 1}}\n'
    )
    result = ingest_batch(
        _config(tmp_path / "b" / "m.jsonl"), tmp_path / "o", tmp_path / "r.parquet", quiet=True
    )
    assert (result.rows_seen, result.rows_written, dict(result.rejected)) == (4, 2, {"bad_record": 2})
    split = _split(tmp_path / "o")
    assert split[C.PREDICTION_TS] == [
        datetime.fromtimestamp(1_795_000_000, UTC),
        datetime(2026, 11, 28, 10, tzinfo=UTC),
    ]
    assert split["extra"] == [None, '{"k": 1}']
    assert pq.read_table(tmp_path / "r.parquet").column("row").to_pylist() == [1, 2]


def test_a_data_stage_folder_is_passed_through_unchanged(tmp_path):
    make_batch(tmp_path / "b", good=3, broken=False)
    first = tmp_path / "first"
    ingest_batch(
        _config(tmp_path / "b" / "img", time_fallback="now"), first, tmp_path / "r.parquet", quiet=True
    )
    result = ingest_batch(_config(first), tmp_path / "second", tmp_path / "r2.parquet", quiet=True)
    assert result.kind == "dataset" and result.rows_written == 3
    for path in first.rglob("*"):
        if path.is_file():
            assert (tmp_path / "second" / path.relative_to(first)).read_bytes() == path.read_bytes()
    assert pq.read_table(tmp_path / "r2.parquet").num_rows == 0


def test_images_over_plain_https_links(tmp_path):
    rows = make_batch(tmp_path / "site", good=3, broken=False)
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        for r in rows:
            r["image_uri"] = f"{base}/{r['image_uri']}"
        rows.append(dict(rows[0], image_uri=f"{base}/img/gone.png", prediction_id="gone"))
        manifest = write_manifest(rows, tmp_path / "m.csv", "csv")
        result = ingest_batch(_config(manifest), tmp_path / "o", tmp_path / "r.parquet", quiet=True)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.rows_written, dict(result.rejected)) == (3, {"missing": 1})
    assert _split(tmp_path / "o")[C.URL][0] == f"{base}/img/000.png"


def test_the_command_line_names_the_file_and_the_column(tmp_path, capsys):
    rows = make_batch(tmp_path / "b", good=3, broken=False)
    for r in rows:
        r["where"] = r.pop("image_uri")
    manifest = write_manifest(rows, tmp_path / "b" / "m.csv", "csv")
    code = main(
        ["--source-uri", str(manifest), "--output", str(tmp_path / "o"), "--rejected", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert code == 2 and f"manifest {manifest}: no column 'image_uri' (location_column)" in err
    assert "where" in err
    code = main(
        [
            "--source-uri",
            str(manifest),
            "--location-column",
            "where",
            "--output",
            str(tmp_path / "o"),
            "--rejected",
            str(tmp_path / "r.parquet"),
            "--summary",
            str(tmp_path / "s.md"),
            "--quiet",
        ]
    )
    assert code == 0 and capsys.readouterr().out.startswith("ingest: 3 rows written")
    assert "**3 written**" in (tmp_path / "s.md").read_text()
    assert main(["--source-uri", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_cells_parse_as_documented():
    assert parse_timestamp("2026-11-28T12:00:00") == datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert parse_timestamp(1_795_000_000_000) == datetime.fromtimestamp(1_795_000_000, UTC)
    assert parse_timestamp("1795000000") == datetime.fromtimestamp(1_795_000_000, UTC)
    for bad in ("", None, "soon", float("nan")):
        with pytest.raises(sources.Rejected, match="bad_timestamp"):
            parse_timestamp(bad)
    assert [parse_label(v) for v in ("Trouser", "trouser", 3, "3", 4.0, "", None)] == [
        1,
        1,
        3,
        3,
        4,
        None,
        None,
    ]
    for bad in ("Hat", 10, -1, "1.5", True):
        with pytest.raises(sources.Rejected, match="unknown_label"):
            parse_label(bad)


def test_images_decode_by_content_and_refuse_bombs():
    from components.ingest.decode import to_greyscale_png

    images, _ = fashion(1)
    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, "JPEG")
    out = to_greyscale_png(buf.getvalue(), 0)  # a JPEG named anything still reads
    assert (out.source_format, out.width, out.height, out.reencoded) == ("JPEG", 28, 28, True)
    big = io.BytesIO()
    Image.new("L", (9000, 9000)).save(big, "PNG")
    with pytest.raises(sources.Rejected, match="too_large"):
        to_greyscale_png(big.getvalue(), 0)
    with pytest.raises(sources.Rejected, match="unreadable"):
        to_greyscale_png(b"GIF89a" + bytes(20), 0)


def test_duplicates_are_found_across_the_merged_hashes(monkeypatch):
    from components.ingest.ingest import _Seen

    monkeypatch.setattr(_Seen, "MERGE", 5)
    seen = _Seen()
    first = [seen.add(f"id-{i % 13}") for i in range(40)]
    assert first[:13] == [True] * 13 and not any(first[13:])
