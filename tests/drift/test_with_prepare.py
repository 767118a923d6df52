"""The drift stage on a folder written by the real prepare stage (its images, links, timestamps)."""

from __future__ import annotations

import pyarrow as pa

from components.common import schema
from components.drift.config import DriftConfig
from components.drift.stage import run_drift
from components.prepare.config import PrepareConfig
from components.prepare.prepare import prepare_records
from tests.fixtures import prepare_inputs
from tests.fixtures.drift_rows import report_points


def test_drift_reads_what_prepare_writes(tmp_path):
    counts = {schema.TRAINING: 300, schema.VALIDATION: 200, schema.PRODUCTION: 300}
    dataset = prepare_inputs.write_dataset(tmp_path / "dataset", counts)
    table = pa.concat_tables(
        [prepare_inputs.embed_table(split, n, dim=16, seed=i) for i, (split, n) in enumerate(counts.items())]
    )
    embed = prepare_inputs.write_embed_dir(tmp_path / "embed", table)
    prepared = tmp_path / "prepared"
    prepare_records([embed], dataset, prepared, PrepareConfig(now="2026-11-28T12:00:00Z"), progress=False)
    cfg = DriftConfig(projection="pca", drift_resamples=200, false_alarm_rate=0.05, umap_sample=200)
    result = run_drift(prepared, prepared, tmp_path / "report.html", tmp_path / "table.parquet", cfg)
    assert result.metrics["rejected_rows"] == 0
    assert result.metrics["baseline_rows"] == counts[schema.TRAINING]
    assert result.table["n_rows"].sum() == counts[schema.PRODUCTION]
    # every point of the view shows the PNG that prepare wrote and linked
    thumbs, texts = report_points((tmp_path / "report.html").read_text(encoding="utf-8"))
    assert len(thumbs) == len(texts)
    assert sum(t.startswith("baseline") for t in texts) == 100  # half of umap_sample=200
    assert all(t.startswith("data:image/png;base64,") for t in thumbs)
    assert not any("thumbnails could not be read" in s for s in result.summary)
