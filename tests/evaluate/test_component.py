"""The evaluate component through kfp.local: artifacts, metrics, and the decision a pipeline branches on."""

# No `from __future__ import annotations`: kfp reads the real annotations of the nested components.

import json

import pytest
from kfp import dsl, local
from kfp.dsl import Dataset, Model, Output

from components.common.config import component_fields, help_of
from components.evaluate.component import ARTIFACT_HELP, ARTIFACTS
from components.evaluate.component import component as evaluate_component
from components.evaluate.config import EvaluateConfig
from tests.evaluate.conftest import registry_with_production

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities of TorchVision")


def test_the_kfp_ui_shows_the_help_of_every_input_and_output():
    spec = evaluate_component().component_spec
    assert set(spec.outputs) == {"report", "metrics", "evaluation", "decision", "reasons"}
    assert set(ARTIFACT_HELP) == set(ARTIFACTS) | {"decision", "reasons"}
    want = {f.name: help_of(f) for f in component_fields(EvaluateConfig)}
    want.update({name: ARTIFACT_HELP[name] for name in ("candidate", "dataset")})
    assert {name: spec.inputs[name].description for name in spec.inputs} == want


def test_evaluate_runs_in_kfp_local_and_a_pipeline_branches_on_the_decision(
    eval_dataset_dir, model_a, model_b, tmp_path
):
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    registry = registry_with_production(tmp_path / "registry", model_a)

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def load(model: str, data: str, model_out: Output[Model], data_out: Output[Dataset]):
        import shutil

        shutil.copytree(model, model_out.path)
        shutil.copytree(data, data_out.path)

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def as_text(text: str) -> str:
        return text

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def on_candidate(reasons: str) -> str:
        return f"kept as a candidate: {reasons}"

    evaluate_op = evaluate_component()

    @dsl.pipeline(name="evaluate-local-test")
    def pipe(model: str, data: str, registry_uri: str) -> str:
        inputs = load(model=model, data=data)
        ev = evaluate_op(
            candidate=inputs.outputs["model_out"],
            dataset=inputs.outputs["data_out"],
            registry_uri=registry_uri,
            gate_margin=0.0,
            gate_min_slice_rows=1000,
            bootstrap_resamples=500,
        )
        # kfp.local cannot resolve a condition on a named output: one-output helper (see tests/drift)
        decision = as_text(text=ev.outputs["decision"])
        with dsl.If(decision.output == "candidate"):
            on_candidate(reasons=ev.outputs["reasons"])
        return ev.outputs["decision"]

    task = pipe(model=str(model_b), data=str(eval_dataset_dir), registry_uri=registry)
    assert task.output in ("promote", "candidate")
    root = tmp_path / "root"
    (evaluation,) = [p for p in root.rglob("evaluation") if p.is_file()]
    ev = json.loads(evaluation.read_text())
    assert ev["decision"] == task.output
    assert ev["production"]["registry_version"] == "v1"
    overall = ev["slices"][0]
    # the rule, checked from the figures: no margin, overall only (no slice has 1000 rows), no drift
    assert task.output == ("promote" if overall["difference"] >= 0 else "candidate")
    (report,) = [p for p in root.rglob("report") if p.is_file()]
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and "Reliability diagram" in page
