"""The README's main command, end to end through kfp.local on a small slice of real Fashion-MNIST."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.common import schema

SMALL = [
    "training_size=600",
    "validation_size=200",
    "production_size=700",
    "production_days=7",
    "window_days=2",
    "max_steps=5",
    "num_shards=2",
    "projection=pca",
]


@pytest.mark.slow
def test_run_local_runs_every_stage_and_ends_with_the_report_path(
    pipeline_module, fashion_dir, tmp_path, capsys
):
    args = ["run", "--local", "--output-dir", str(tmp_path), "--param", f"source={fashion_dir}"]
    for item in SMALL:
        args += ["--param", item]
    assert pipeline_module.main(args) == 0

    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[-1].startswith("drift report: ")
    report = Path(lines[-1].removeprefix("drift report: "))
    assert report.is_file() and report.is_relative_to(tmp_path)
    html = report.read_text()
    assert html.lstrip().lower().startswith(("<!doctype html", "<html")) and len(html) > 10_000
    listed = dict(line.strip().split(": ", 1) for line in lines[-5:-1])
    assert set(listed) == {"drift_table", "model", "prepared", "data_card"}

    prepared = Path(listed["prepared"])
    for env in schema.SPLITS:
        table = pq.read_table(prepared / schema.prepared_file(env))
        assert table.num_rows > 0
        assert set(schema.PreparedColumns.ALL) <= set(table.column_names)
    expected = {"training": 600, "validation": 200, "production": 700}
    rows = {env: pq.read_metadata(prepared / schema.prepared_file(env)).num_rows for env in schema.SPLITS}
    rejected = pq.read_metadata(prepared / schema.PREPARED_REJECTED_FILE).num_rows
    assert sum(rows.values()) + rejected == sum(expected.values())  # the 2 embed shards were both gathered
    summary = json.loads((Path(listed["model"]) / "training_summary.json").read_text())
    assert summary["model_version"]
    assert Path(listed["data_card"]).read_text().startswith("#")
    assert pq.read_table(listed["drift_table"]).num_rows > 0
