"""The drift stage on a folder written by the real prepare stage (its images, links, timestamps)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from components.common import schema
from components.drift.stage import DriftConfig, run_drift


def test_drift_reads_what_prepare_writes(tmp_path):
    prep = pytest.importorskip("components.prepare.prepare")
    synth = pytest.importorskip("components.prepare.synthetic")
    counts = {schema.TRAINING: 300, schema.VALIDATION: 200, schema.PRODUCTION: 300}
    dataset = synth.write_dataset(tmp_path / "dataset", counts)
    table = pa.concat_tables(
        [synth.embed_table(split, n, dim=16, seed=i) for i, (split, n) in enumerate(counts.items())]
    )
    embed = synth.write_embed_dir(tmp_path / "embed", table)
    prepared = tmp_path / "prepared"
    prep.prepare_records([embed], dataset, prepared, now="2026-11-28T12:00:00Z", progress=False)
    cfg = DriftConfig(projection="pca", n_resamples=200, false_alarm_rate=0.05, umap_sample=200)
    result = run_drift(prepared, prepared, tmp_path / "report.html", tmp_path / "table.parquet", cfg)
    assert result.metrics["rejected_rows"] == 0
    assert result.table["n_rows"].sum() == counts[schema.PRODUCTION]
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    # thumbnails come from the PNG files prepare wrote and linked
    assert html.count("data:image/png;base64,") >= 150
    assert not any("thumbnails could not be read" in s for s in result.summary)
