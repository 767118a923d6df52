"""The data component run through kfp.local.SubprocessRunner inside a one-step pipeline."""

# No `from __future__ import annotations`: kfp reads the pipeline function's real annotations.

from pathlib import Path

import datasets
from kfp import dsl, local

from components.common import schema
from components.data.component import component


def test_component_in_a_pipeline(tmp_path, fashion_dir):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    data_op = component()

    @dsl.pipeline(name="data-only")
    def data_only(seed: int = 2):
        data_op(
            source=str(fashion_dir),
            training_size=120,
            validation_size=30,
            production_size=90,
            window_days=3,
            seed=seed,
        )

    data_only()
    roots = list((tmp_path / "root").rglob("dataset_dict.json"))
    assert len(roots) == 1, roots
    dataset_dir = roots[0].parent
    dd = datasets.load_from_disk(str(dataset_dir))
    assert {k: len(v) for k, v in dd.items()} == {
        schema.TRAINING: 120,
        schema.VALIDATION: 30,
        schema.PRODUCTION: 90,
    }
    degraded = [d for d in dd[schema.PRODUCTION]["degradation"] if d != schema.DEGRADATION_NONE]
    assert len(degraded) == 4  # 3 a day over the centred 3-day window: round(0.5 * 9) = 4
    task_dir = dataset_dir.parent
    card = Path(task_dir, "data_card").read_text()
    assert "## Rows per split" in card and "data:image/png;base64," in card
    assert Path(task_dir, "sample_grid").read_bytes().startswith(b"\x89PNG")


def test_component_spec():
    op = component()
    spec = op.component_spec
    assert set(spec.outputs) == {"dataset", "data_card", "sample_grid"}
    assert spec.outputs["dataset"].type.startswith("system.Dataset")
    assert spec.outputs["data_card"].type.startswith("system.Markdown")
    assert spec.inputs["degraded_share"].default == 0.5
    assert "/fashion-drift-data:" in spec.implementation.container.image
    assert "from components.data.build import" in spec.implementation.container.command[-1]
    # the KFP UI shows each input's help, taken from DataConfig
    assert spec.inputs["window_start_day"].description.endswith("(-1: centred)")
