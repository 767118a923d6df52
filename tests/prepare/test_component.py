"""The prepare component through kfp.local: ParallelFor over splits + dsl.Collected into prepare.

No ``from __future__ import annotations`` here: KFP reads the component annotations as objects.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from kfp import dsl, local

from components.common import schema
from components.common.files import MANIFEST_FILE
from components.common.schema import PreparedColumns as P
from components.prepare.component import component
from tests.fixtures import prepare_inputs

NOW = "2026-11-28T12:00:00Z"


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def make_dataset(idx: str, dataset: dsl.Output[dsl.Dataset]):
    from tests.fixtures import prepare_inputs

    images = prepare_inputs.read_idx_images(idx, 12)
    prepare_inputs.write_dataset(dataset.path, {"training": 6, "production": 6}, images)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def make_embed(split: str, embeddings: dsl.Output[dsl.Dataset]):
    from tests.fixtures import prepare_inputs

    prepare_inputs.write_embed_dir(embeddings.path, prepare_inputs.embed_table(split, 6, dim=8))


def test_component_through_kfp_local_with_parallelfor_and_collected(tmp_path, monkeypatch, fashion_dir):
    monkeypatch.setenv("PYTHONPATH", prepare_inputs.pythonpath())  # the tasks import tests.fixtures
    prepare_op = component()

    @dsl.pipeline
    def pipe(idx: str) -> dsl.Dataset:
        data = make_dataset(idx=idx)
        with dsl.ParallelFor(items=[schema.TRAINING, schema.PRODUCTION]) as split:
            emb = make_embed(split=split)
        prep = prepare_op(
            embeddings=dsl.Collected(emb.outputs["embeddings"]), dataset=data.outputs["dataset"], now=NOW
        )
        return prep.outputs["prepared"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    task = pipe(idx=str(fashion_dir / "t10k-images-idx3-ubyte.gz"))
    out = Path(task.output.path)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["rows"] == {schema.TRAINING: 6, schema.PRODUCTION: 6}
    prod = pq.read_table(out / schema.prepared_file(schema.PRODUCTION))
    assert pc.max(prod[P.PREDICTION_TS]).as_py() == datetime(2026, 11, 28, 12, tzinfo=UTC)
    assert prod[P.IMAGE_LINK].null_count == prod.num_rows  # no image store: nothing to link
    images = pq.read_table(out / schema.prepared_images_file(schema.PRODUCTION))
    assert images[schema.PreparedImageColumns.PREDICTION_ID].to_pylist() == prod[P.PREDICTION_ID].to_pylist()
    assert (
        len([p for p in out.rglob("*") if p.is_file()]) == 6
    )  # 2 tables, 2 images files, rejected, manifest
    summaries = list(tmp_path.rglob("summary"))
    assert summaries and "| production | 6 |" in summaries[0].read_text()
