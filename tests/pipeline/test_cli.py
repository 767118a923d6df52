"""pipeline.py's command line against a loopback server that answers the KFP v2beta1 REST API."""

import importlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.pipelines import cli
from tests.pipeline import fakes

ROOT = Path(__file__).resolve().parents[2]


def _tasks(spec: dict) -> dict:
    return spec["root"]["dag"]["tasks"]


def test_submit_uploads_spec_parameters_and_root(with_fake_stages, fake_kfp, capsys):
    rc = cli.main(
        [
            "submit",
            "--host",
            fake_kfp.url,
            "--param",
            "num_shards=3",
            "--param",
            "profile=cluster",
            "--param",
            "model_name=microsoft/resnet-50",
            "--pipeline-root",
            "s3://mlpipeline/v2/artifacts",
            "--run-name",
            "nightly",
            "--experiment",
            "fashion",
            "--registry",
            "registry.local:5000/team",
            "--tag",
            "abc",
            "--wait",
        ]
    )
    assert rc == 0
    (created,) = fake_kfp.calls("POST", "/apis/v2beta1/experiments")
    assert created.body["display_name"] == "fashion"
    (run,) = fake_kfp.calls("POST", "/apis/v2beta1/runs")
    body = run.body
    assert body["display_name"] == "nightly"
    assert body["experiment_id"] == "exp-1"
    assert body["runtime_config"]["pipeline_root"] == "s3://mlpipeline/v2/artifacts"
    assert body["runtime_config"]["parameters"] == {
        "num_shards": 3,
        "profile": "cluster",
        "model_name": "microsoft/resnet-50",
    }
    spec = body["pipeline_spec"]
    spec = spec.get("pipeline_spec", spec)  # the SDK sends {pipeline_spec, platform_spec} when there is one
    assert spec["pipelineInfo"]["name"] == "fashion-drift-training"
    executors = spec["deploymentSpec"]["executors"]
    assert executors["exec-train"]["container"]["image"] == "registry.local:5000/team/fashion-drift-train:abc"
    assert {"data", "train", "prepare", "arize", "drift"} <= set(_tasks(spec))
    assert fake_kfp.calls("GET", "/apis/v2beta1/runs/run-1")
    out = capsys.readouterr().out
    assert "run run-1 submitted" in out
    assert "final state: SUCCEEDED" in out


def test_submit_reports_a_failed_run(with_fake_stages, fake_kfp, capsys):
    fake_kfp.final_state = "FAILED"
    assert cli.main(["submit", "--host", fake_kfp.url, "--wait"]) == 1
    assert "final state: FAILED" in capsys.readouterr().out


def test_schedule_creates_a_recurring_monitoring_run(with_fake_stages, fake_kfp):
    rc = cli.main(
        [
            "schedule",
            "--host",
            fake_kfp.url,
            "--cron",
            "0 0 6 * * *",
            "--param",
            "production_uri=s3://mlpipeline/batches/2026-11-28",
            "--param",
            "model_uri=s3://mlpipeline/models/v1",
            "--param",
            "baseline_uri=s3://mlpipeline/baseline",
        ]
    )
    assert rc == 0
    (call,) = fake_kfp.calls("POST", "/apis/v2beta1/recurringruns")
    body = call.body
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 6 * * *"
    assert body["max_concurrency"] == "1" or body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "fashion-drift-monitoring"
    assert body["runtime_config"]["parameters"]["production_uri"] == "s3://mlpipeline/batches/2026-11-28"
    spec = body["pipeline_spec"]
    spec = spec.get("pipeline_spec", spec)
    assert spec["pipelineInfo"]["name"] == "fashion-drift-monitoring"


def test_unschedule_disables_by_name(with_fake_stages, fake_kfp, capsys):
    assert cli.main(["schedule", "--host", fake_kfp.url, "--cron", "0 */6 * * *"]) == 0
    assert cli.main(["unschedule", "--host", fake_kfp.url]) == 0
    assert fake_kfp.calls("POST", "/apis/v2beta1/recurringruns/rr-1:disable")
    assert fake_kfp.recurring_runs["rr-1"]["mode"] == "DISABLE"
    assert "disabled recurring run(s) rr-1" in capsys.readouterr().out


def test_unschedule_unknown_name_is_a_clear_error(with_fake_stages, fake_kfp, capsys):
    assert cli.main(["unschedule", "--host", fake_kfp.url, "--name", "nope"]) == 2
    assert "no recurring run named 'nope'" in capsys.readouterr().err


def test_bad_cron_is_refused_before_any_call(with_fake_stages, fake_kfp, capsys):
    assert cli.main(["schedule", "--host", fake_kfp.url, "--cron", "daily"]) == 2
    assert "expected 5 or 6 space-separated fields" in capsys.readouterr().err
    assert not fake_kfp.requests


def test_unreachable_host_says_which_port_forward_to_run(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert cli.main(["submit", "--host", dead]) == 2
    err = capsys.readouterr().err
    assert f"no KFP API answers at {dead}" in err
    assert "kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80" in err


def test_bad_param_syntax():
    with pytest.raises(SystemExit, match="expected name=value"):
        cli.parse_params(["num_shards"])


def test_params_are_typed_from_json():
    assert cli.parse_params(["a=3", "b=0.5", "c=true", "d=text"]) == {
        "a": 3,
        "b": 0.5,
        "c": True,
        "d": "text",
    }


def test_compile_writes_both_pipelines(with_fake_stages, tmp_path, capsys):
    assert cli.main(["compile", "--output-dir", str(tmp_path), "--gpu-node-value", "nvidia-a100"]) == 0
    for name in ("training", "monitoring"):
        docs = list(yaml.safe_load_all((tmp_path / f"{name}.yaml").read_text()))
        labels = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-embed"][
            "nodeSelector"
        ]
        assert labels["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-a100"}


def test_unknown_parameter_is_refused_before_any_call(with_fake_stages, fake_kfp, capsys):
    assert cli.main(["submit", "--host", fake_kfp.url, "--param", "num_shard=2"]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) num_shard for fashion-drift-training" in err
    assert "num_shards" in err
    assert not fake_kfp.requests


def test_submit_upload_registers_a_pipeline_then_a_version_and_runs_it(with_fake_stages, fake_kfp):
    for _ in range(2):
        assert (
            cli.main(["submit", "--host", fake_kfp.url, "--upload", "--param", "seed=3", "--tag", "t9"]) == 0
        )
    (created,) = fake_kfp.calls("POST", "/apis/v2beta1/pipelines/upload")
    assert created.query["name"] == ["fashion-drift-training"]
    assert b"fashion-drift-training" in created.body and b"pipelineInfo" in created.body
    (added,) = fake_kfp.calls("POST", "/apis/v2beta1/pipelines/upload_version")
    assert added.query["pipelineid"] == ["pl-1"]
    assert added.query["name"][0].startswith("fashion-drift-training t9 ")
    assert b"fashion-drift-train:t9" in added.body  # the uploaded YAML carries the compile-time tag
    first, second = (r.body for r in fake_kfp.calls("POST", "/apis/v2beta1/runs"))
    assert first["pipeline_version_reference"] == {"pipeline_id": "pl-1", "pipeline_version_id": "ver-1"}
    assert second["pipeline_version_reference"] == {"pipeline_id": "pl-1", "pipeline_version_id": "ver-2"}
    assert "pipeline_spec" not in second or second["pipeline_spec"] is None
    assert second["runtime_config"]["parameters"] == {"seed": 3}


@pytest.mark.parametrize("stage", ["data", "train", "embed", "prepare", "arize", "drift"])
def test_stand_in_stages_keep_the_real_signatures(stage):
    """The stand-ins may leave out optional parameters, never add or rename one."""
    real = importlib.import_module(f"components.{stage}.component").component().component_spec
    fake = fakes.FACTORIES[stage](None).component_spec
    assert set(fake.inputs or {}) <= set(real.inputs or {})
    assert set(fake.outputs or {}) == set(real.outputs or {})
    required = {n for n, spec in (real.inputs or {}).items() if not spec.optional}
    assert required <= set(fake.inputs or {})


def test_root_pipeline_py_is_the_entry_point(tmp_path):
    """`python pipeline.py ...` (the README's commands) runs the package's command line, from any folder."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    done = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "unschedule", "--host", dead],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"pipeline.py unschedule: no KFP API answers at {dead}")


def test_an_unknown_stage_override_is_refused():
    from components.pipelines.stages import Stages

    with pytest.raises(TypeError, match="unknown stage.*embedd"):
        Stages.build(overrides={"embedd": fakes.FACTORIES["embed"]})
