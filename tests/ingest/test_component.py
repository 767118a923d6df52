"""The ingest component: its KFP help comes from the Config, and it runs through kfp.local."""

# No `from __future__ import annotations`: kfp reads the real annotations.

from pathlib import Path

import datasets
import pyarrow.parquet as pq
from kfp import local

from components.common import schema
from components.common.config import component_fields, help_of
from components.ingest.component import ARTIFACT_HELP, ARTIFACTS
from components.ingest.component import component as ingest_component
from components.ingest.config import IngestConfig
from tests.ingest.conftest import BROKEN, GOOD, MAX_BYTES, make_batch, write_manifest


def test_the_kfp_ui_shows_the_config_help_for_every_input():
    spec = ingest_component().component_spec
    assert set(spec.outputs) == set(ARTIFACTS) == set(ARTIFACT_HELP)
    assert {name: spec.outputs[name].description for name in spec.outputs} == ARTIFACT_HELP
    assert {name: spec.inputs[name].description for name in spec.inputs} == {
        f.name: help_of(f) for f in component_fields(IngestConfig)
    }
    assert spec.inputs["source_uri"].default is None  # required


def test_ingest_runs_in_kfp_local(tmp_path):
    rows = make_batch(tmp_path / "batch")
    write_manifest(rows, tmp_path / "batch" / "manifest.parquet", "parquet")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = ingest_component()(source_uri=str(tmp_path / "batch"), max_image_bytes=MAX_BYTES)
    batch = task.outputs["batch"]
    split = datasets.load_from_disk(batch.path)[schema.PRODUCTION]
    assert split.num_rows == GOOD
    assert batch.metadata["rows"] == GOOD and batch.metadata["rejected"] == sum(BROKEN.values())
    assert batch.metadata["source_kind"] == "manifest"
    rejected = task.outputs["rejected"]
    assert pq.read_table(rejected.path).num_rows == sum(BROKEN.values())
    assert {k: rejected.metadata[k] for k in BROKEN} == BROKEN
    summary = Path(task.outputs["summary"].path).read_text()
    assert f"**{GOOD} written**" in summary and "| duplicate_id | 1 |" in summary
