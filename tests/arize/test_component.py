"""Both components through kfp.local in one small pipeline, the arize one talking to the loopback server.

No ``from __future__ import annotations`` here: KFP reads the component annotations as objects.
"""

from pathlib import Path

from kfp import dsl, local

from components.arize.component import component as arize_component
from components.common import schema
from components.prepare.component import component as prepare_component
from tests.fixtures import prepare_inputs

ROWS = 4


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def make_dataset(idx: str, rows: int, dataset: dsl.Output[dsl.Dataset]):
    from tests.fixtures import prepare_inputs

    images = prepare_inputs.read_idx_images(idx, 3 * rows)
    prepare_inputs.write_dataset(
        dataset.path, {"training": rows, "validation": rows, "production": rows}, images
    )


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def make_embed(split: str, rows: int, embeddings: dsl.Output[dsl.Dataset]):
    from tests.fixtures import prepare_inputs

    prepare_inputs.write_embed_dir(embeddings.path, prepare_inputs.embed_table(split, rows, dim=8))


def test_prepare_then_arize_through_kfp_local(tmp_path, monkeypatch, fashion_dir, fake_arize, credentials):
    monkeypatch.setenv("PYTHONPATH", prepare_inputs.pythonpath())  # the tasks import tests.fixtures
    key, space = credentials
    prepare_op, arize_op = prepare_component(), arize_component()

    @dsl.pipeline
    def pipe(idx: str, rows: int) -> dsl.Markdown:
        data = make_dataset(idx=idx, rows=rows)
        with dsl.ParallelFor(items=list(schema.SPLITS)) as split:
            emb = make_embed(split=split, rows=rows)
        prep = prepare_op(
            embeddings=dsl.Collected(emb.outputs["embeddings"]), dataset=data.outputs["dataset"]
        )
        logged = arize_op(prepared=prep.outputs["prepared"], arize_model_name="fm-kfp-local", chunk_rows=3)
        return logged.outputs["summary"]

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path))
    task = pipe(idx=str(fashion_dir / "t10k-images-idx3-ubyte.gz"), rows=ROWS)
    summary = Path(task.output.path).read_text()
    assert "# Arize log: sent" in summary and "fm-kfp-local" in summary
    assert f"| production | {ROWS} | 2 | {ROWS} | 2 | 0 |" in summary
    got = fake_arize.by_environment()
    assert {env: sum(r.table.num_rows for r in got[env]) for env in got} == dict.fromkeys(schema.SPLITS, ROWS)
    assert all(r.model_id == "fm-kfp-local" and r.model_version == "v-test" for r in fake_arize.received)
    assert key not in summary and space not in summary
