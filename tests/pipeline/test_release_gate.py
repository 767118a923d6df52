"""The training pipeline ends with the release gate: evaluate -> decision -> promote or register as a candidate.

Stand-in stages (tests/pipeline/fakes.py); the registry and the gate's helpers are the real ones.
The candidate branch is run by tests/pipeline/test_quiet_run.py (the stand-in evaluate keeps a model
a candidate when there is a registry); here the promote branch (the stand-in passes its gate at
gate_margin>=0.5), and the wiring in the compiled spec.
"""

import io
import re

from components.common import registry
from components.pipelines.definitions import build_training_pipeline
from components.pipelines.local import run_local


def test_a_passed_gate_promotes_the_new_model(with_fake_stages, tmp_path):
    out = io.StringIO()
    reg = tmp_path / "models"
    run_local(
        tmp_path / "out",
        # the stand-in evaluate passes its gate at a margin of 0.5 or more
        {"registry_uri": str(reg), "registered_model": "fashion", "training_size": 100, "gate_margin": 0.9},
        out=out,
        err=io.StringIO(),
    )
    lines = out.getvalue().splitlines()
    assert any(re.match(r"decision-gate +\S+  decision promote$", line) for line in lines), lines
    assert any(re.match(r"register-model +\S+  v1 promoted to production$", line) for line in lines), lines
    assert not any(line.startswith("register-model-2") for line in lines)  # the candidate branch did not run
    model = registry.open_registry(str(reg), "fashion")
    production = model.production()
    assert production is not None and production.version == "v1"
    assert production.model_uri.endswith("/train/model")  # the train task's artifact, not a copy
    (event, promoted) = model.history()
    assert (event.action, promoted.action) == ("register", "promote")
    assert promoted.reason == "no production model yet: promoted"  # the gate's reasons, recorded


def test_the_gate_branches_in_the_compiled_training_pipeline():
    spec = build_training_pipeline().pipeline_spec
    tasks = {}  # task name -> (its component, its trigger condition)
    for dag in [spec.root.dag] + [c.dag for c in spec.components.values() if c.HasField("dag")]:
        for name, task in dag.tasks.items():
            tasks[name] = (task.component_ref.name, task.trigger_policy.condition)
    evaluate_inputs = spec.root.dag.tasks["evaluate"].inputs
    assert evaluate_inputs.artifacts["candidate"].task_output_artifact.producer_task == "train"
    assert evaluate_inputs.artifacts["dataset"].task_output_artifact.producer_task == "data"
    # the registry condition: registry_uri != '' (no registry: the decision is reported only)
    registry_branch = next(n for n, (_, cond) in tasks.items() if "pipelinechannel--registry_uri" in cond)
    assert "!=" in tasks[registry_branch][1]
    (branches,) = spec.components[tasks[registry_branch][0]].dag.tasks.values()  # If / Else
    inner = spec.components[branches.component_ref.name].dag.tasks
    conds = {name: t.trigger_policy.condition for name, t in inner.items()}
    assert len(conds) == 2 and all("decision-gate-Output" in c for c in conds.values())
    promote = next(n for n, c in conds.items() if c.endswith("== 'promote'") and not c.startswith("!"))
    otherwise = next(n for n, c in conds.items() if c.startswith("!("))
    assert list(spec.components[tasks[promote][0]].dag.tasks) == ["register-model"]
    assert list(spec.components[tasks[otherwise][0]].dag.tasks) == ["register-model-2"]
    promote_inputs = spec.components[tasks[promote][0]].dag.tasks["register-model"].inputs.parameters
    assert promote_inputs["promote"].runtime_value.constant.bool_value is True
    candidate_inputs = spec.components[tasks[otherwise][0]].dag.tasks["register-model-2"].inputs.parameters
    assert candidate_inputs["promote"].runtime_value.constant.bool_value is False
