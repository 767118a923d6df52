"""pipeline.py's command line against a loopback server that answers the KFP v2beta1 REST API."""

import importlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.pipelines import cli
from components.pipelines.params import ParamError
from tests.pipeline import fakes

ROOT = Path(__file__).resolve().parents[2]
# The monitoring pipeline's required parameters: schedule refuses a recurring run without them.
URIS = [
    "--param",
    "production_uri=minio://mlpipeline/batches/{date}",
    "--param",
    "model_uri=minio://mlpipeline/models/v1",
    "--param",
    "baseline_uri=minio://mlpipeline/baseline",
]


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
            "minio://mlpipeline/v2/artifacts",
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
    assert body["runtime_config"]["pipeline_root"] == "minio://mlpipeline/v2/artifacts"
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
            "production_uri=minio://mlpipeline/batches/2026-11-28",
            "--param",
            "model_uri=minio://mlpipeline/models/v1",
            "--param",
            "baseline_uri=minio://mlpipeline/baseline",
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
    assert body["runtime_config"]["parameters"]["production_uri"] == "minio://mlpipeline/batches/2026-11-28"
    # the monitoring pipeline takes kfp_ui_host (the notification's link): filled from --host
    assert body["runtime_config"]["parameters"]["kfp_ui_host"] == fake_kfp.url
    spec = body["pipeline_spec"]
    spec = spec.get("pipeline_spec", spec)
    assert spec["pipelineInfo"]["name"] == "fashion-drift-monitoring"


def test_unschedule_disables_by_name(with_fake_stages, fake_kfp, capsys):
    assert cli.main(["schedule", "--host", fake_kfp.url, "--cron", "0 */6 * * *", *URIS]) == 0
    assert cli.main(["unschedule", "--host", fake_kfp.url]) == 0
    assert fake_kfp.calls("POST", "/apis/v2beta1/recurringruns/rr-1:disable")
    assert fake_kfp.recurring_runs["rr-1"]["mode"] == "DISABLE"
    assert "disabled recurring run(s) rr-1" in capsys.readouterr().out


def test_unschedule_unknown_name_is_a_clear_error(with_fake_stages, fake_kfp, capsys):
    assert cli.main(["unschedule", "--host", fake_kfp.url, "--name", "nope"]) == 2
    assert "no recurring run named 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("cron", ["daily", "0 6 * *", "0 0 0 6 * * *"])
def test_bad_cron_is_refused_before_any_call(with_fake_stages, fake_kfp, capsys, cron):
    assert cli.main(["schedule", "--host", fake_kfp.url, "--cron", cron]) == 2
    err = capsys.readouterr().err
    assert "expected 6 space-separated fields (second minute hour day-of-month month day-of-week)" in err
    assert not fake_kfp.requests


def test_a_five_field_cron_is_converted_and_said_so(with_fake_stages, fake_kfp, capsys):
    # KFP reads the first field as seconds (robfig/cron v1.2 cron.Parse): '0 6 * * *' would fire at
    # minute 6 of every hour. schedule prepends '0 ' and prints what it scheduled.
    assert cli.main(["schedule", "--host", fake_kfp.url, "--cron", "0 6 * * *", *URIS]) == 0
    (call,) = fake_kfp.calls("POST", "/apis/v2beta1/recurringruns")
    assert call.body["trigger"]["cron_schedule"]["cron"] == "0 0 6 * * *"
    out = capsys.readouterr().out
    assert (
        "cron '0 6 * * *' has 5 fields; KFP reads seconds first: scheduling '0 0 6 * * *' (06:00 daily)"
        in out
    )
    assert "cron '0 0 6 * * *') created" in out


@pytest.mark.parametrize(
    ("given", "sent"),
    [("0 0 6 * * *", "0 0 6 * * *"), ("  0 30 2 * * 1-5 ", "0 30 2 * * 1-5"), ("@daily", "@daily")],
)
def test_six_field_crons_and_descriptors_pass_unchanged(with_fake_stages, fake_kfp, given, sent, capsys):
    assert cli.main(["schedule", "--host", fake_kfp.url, "--cron", given, *URIS]) == 0
    (call,) = fake_kfp.calls("POST", "/apis/v2beta1/recurringruns")
    assert call.body["trigger"]["cron_schedule"]["cron"] == sent
    assert "has 5 fields" not in capsys.readouterr().out


@pytest.fixture
def fast_polls(monkeypatch):
    """--wait polls every 10 ms and gives a CANCELING run 0.2 s."""
    from components.pipelines import client

    monkeypatch.setattr(client, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(client, "CANCELING_GRACE_SECONDS", 0.2)
    return client


def test_wait_ends_on_a_cancelled_run(with_fake_stages, fake_kfp, fast_polls, capsys):
    # kfp.Client.wait_for_run_completion does not treat CANCELED as final (it would poll until
    # --timeout); submit polls get_run itself.
    fake_kfp.state_sequence = ["PENDING", "RUNNING", "CANCELING", "CANCELED"]
    assert cli.main(["submit", "--host", fake_kfp.url, "--wait", "--timeout", "30"]) == 1
    assert "final state: CANCELED" in capsys.readouterr().out
    assert len(fake_kfp.calls("GET", "/apis/v2beta1/runs/run-1")) == 4


def test_wait_gives_a_canceling_run_a_bounded_time(with_fake_stages, fake_kfp, fast_polls, capsys):
    fake_kfp.state_sequence = ["RUNNING", "CANCELING"]  # never reaches CANCELED
    assert cli.main(["submit", "--host", fake_kfp.url, "--wait", "--timeout", "30"]) == 1
    assert "final state: CANCELING" in capsys.readouterr().out


@pytest.mark.parametrize("state", ["SKIPPED", "FAILED"])
def test_wait_ends_on_every_final_state(with_fake_stages, fake_kfp, fast_polls, capsys, state):
    fake_kfp.state_sequence = ["RUNNING", state]
    assert cli.main(["submit", "--host", fake_kfp.url, "--wait"]) == 1
    assert f"final state: {state}" in capsys.readouterr().out


def test_wait_timeout_is_a_clear_message_and_exit_3(with_fake_stages, fake_kfp, fast_polls, capsys):
    fake_kfp.state_sequence = ["RUNNING"]
    assert cli.main(["submit", "--host", fake_kfp.url, "--wait", "--timeout", "0"]) == 3
    err = capsys.readouterr().err
    assert "run run-1 is still RUNNING after 0 s of --wait (--timeout)" in err
    assert "goes on in the cluster" in err


def _pipeline_with_ui_host(images=None, settings=None, overrides=None):
    from kfp import dsl

    @dsl.component(base_image="python:3.11.14-slim-bookworm")
    def echo(text: str) -> str:
        return text

    @dsl.pipeline(name="fashion-drift-training")
    def with_host(kfp_ui_host: str = "", seed: int = 0):
        echo(text=kfp_ui_host)

    return with_host


def test_submit_and_schedule_fill_kfp_ui_host_from_host(with_fake_stages, fake_kfp, monkeypatch):
    from components.pipelines import definitions

    monkeypatch.setitem(definitions.BUILDERS, "training", _pipeline_with_ui_host)
    monkeypatch.setitem(definitions.BUILDERS, "monitoring", _pipeline_with_ui_host)
    assert cli.main(["submit", "--host", fake_kfp.url + "/"]) == 0
    assert cli.main(["submit", "--host", fake_kfp.url, "--param", "kfp_ui_host=https://kfp.example"]) == 0
    assert cli.main(["schedule", "--host", fake_kfp.url, "--cron", "0 0 6 * * *"]) == 0
    first, second = (
        r.body["runtime_config"]["parameters"] for r in fake_kfp.calls("POST", "/apis/v2beta1/runs")
    )
    assert first == {"kfp_ui_host": fake_kfp.url}
    assert second == {"kfp_ui_host": "https://kfp.example"}  # given: kept
    (job,) = fake_kfp.calls("POST", "/apis/v2beta1/recurringruns")
    assert job.body["runtime_config"]["parameters"] == {"kfp_ui_host": fake_kfp.url}


def test_a_pipeline_without_kfp_ui_host_gets_no_such_parameter(with_fake_stages, fake_kfp):
    assert cli.main(["submit", "--host", fake_kfp.url]) == 0
    (run,) = fake_kfp.calls("POST", "/apis/v2beta1/runs")
    assert "kfp_ui_host" not in (run.body["runtime_config"].get("parameters") or {})


def test_compile_target_kind_writes_outside_the_golden_folder(with_fake_stages, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "KIND_OUTPUT_DIR", tmp_path / "kind")
    assert cli.main(["compile", "--target", "kind"]) == 0
    spec, platform = list(yaml.safe_load_all((tmp_path / "kind" / "training.yaml").read_text()))
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert "accelerator" not in train
    assert train["memoryRequest"] <= 2 * 1024**3  # kind: small requests
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "nodeSelector" not in k8s["exec-train"] and "tolerations" not in k8s["exec-train"]


def test_unreachable_host_says_which_port_forward_to_run(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    assert cli.main(["submit", "--host", dead]) == 2
    err = capsys.readouterr().err
    assert f"no KFP API answers at {dead}" in err
    assert "kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80" in err


@pytest.mark.parametrize("item", ["num_shards", "=4", " =4"])
def test_bad_param_syntax(item):
    with pytest.raises(ParamError, match="expected name=value"):
        cli.parse_params([item])


def test_bad_param_syntax_is_exit_2_not_a_traceback(capsys):
    assert cli.main(["run", "--local", "--param", "num_shards"]) == 2
    assert capsys.readouterr().err == (
        "pipeline.py run: --param 'num_shards': expected name=value, e.g. --param num_shards=4\n"
    )


def test_param_texts_keep_the_text_for_the_declared_type_to_read():
    assert cli.param_texts(["a=3", "b=1.10", "c=x=y", " d =true"]) == {
        "a": "3",
        "b": "1.10",
        "c": "x=y",
        "d": "true",
    }


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


@pytest.mark.parametrize(
    "stage", ["data", "ingest", "train", "embed", "prepare", "arize", "drift", "evaluate"]
)
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
