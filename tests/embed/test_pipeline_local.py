"""data -> train -> embed through kfp.local.SubprocessRunner, in one small pipeline."""

# No `from __future__ import annotations`: kfp reads the pipeline function's real annotations.

import json
from pathlib import Path

import pyarrow.parquet as pq
from kfp import dsl, local

from components.common import schema
from components.common.schema import EmbedColumns as E
from components.data.component import component as data_component
from components.embed.component import component as embed_component
from components.train.component import component as train_component


def test_train_and_embed_in_a_local_pipeline(tmp_path, fashion_dir):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    data_op, train_op, embed_op = data_component(), train_component(), embed_component()

    @dsl.pipeline(name="train-embed")
    def train_embed(max_steps: int = 3):
        data = data_op(
            source=str(fashion_dir), training_size=96, validation_size=32, production_size=60, seed=4
        )
        trained = train_op(dataset=data.outputs["dataset"], max_steps=max_steps, batch_size=32)
        embed_op(
            dataset=data.outputs["dataset"],
            model=trained.outputs["model"],
            splits="validation,production",
            embed_batch_size=64,
        )

    train_embed()
    root = tmp_path / "root"
    summaries = list(root.rglob("training_summary.json"))
    assert len(summaries) == 1, summaries
    model_dir = summaries[0].parent
    version = json.loads(summaries[0].read_text())["model_version"]
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "preprocessor_config.json").is_file()

    files = list(root.rglob(schema.EMBED_FILE))
    assert len(files) == 1, files
    table = pq.read_table(files[0])
    assert table.schema.equals(schema.EMBED_ARROW_SCHEMA, check_metadata=False)
    assert table.num_rows == 32 + 60
    assert table.column(E.SPLIT).to_pylist() == [schema.VALIDATION] * 32 + [schema.PRODUCTION] * 60
    assert set(table.column(E.MODEL_VERSION).to_pylist()) == {version}
    assert (files[0].parent / schema.EMBED_FAILURES_FILE).is_file()
    summary = Path(files[0].parent.parent, "summary").read_text()
    assert "| validation | 32 | 32 | 0 |" in summary and version in summary


def test_component_specs():
    train_spec = train_component().component_spec
    assert set(train_spec.outputs) == {"model", "metrics", "confusion"}
    assert train_spec.outputs["confusion"].type.startswith("system.ClassificationMetrics")
    assert train_spec.inputs["profile"].default == "local" and train_spec.inputs["max_steps"].default == -1
    assert "/fashion-drift-train:" in train_spec.implementation.container.image
    embed_spec = embed_component().component_spec
    assert set(embed_spec.inputs) == {
        "dataset",
        "model",
        "splits",
        "shard_index",
        "num_shards",
        "embed_batch_size",
        "allow_cpu",
    }
    assert set(embed_spec.outputs) == {"embeddings", "summary"}
    assert embed_spec.inputs["splits"].default == "training,validation,production"
    assert "/fashion-drift-embed:" in embed_spec.implementation.container.image
