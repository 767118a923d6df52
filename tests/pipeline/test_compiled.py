"""The compiled pipelines: golden files, GPU and cluster settings, and one image per stage."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from components.common.config import help_of
from components.common.images import STAGES, ImageSet
from components.drift.config import DriftConfig
from components.pipelines.definitions import compile_pipelines
from components.pipelines.settings import ClusterSettings

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "pipelines"
# Component -> the stage whose image runs it (helpers run in the slim images of prepare and drift).
COMPONENT_STAGE = {stage: stage for stage in STAGES} | {
    "resolve-batch": "ingest",
    "shard-indices": "prepare",
    "drift-alert": "drift",
    "alert-gate": "drift",
    "notify-drift": "drift",
    "status-gate": "drift",
    "insufficient-data": "drift",
    "log-actuals": "arize",
    "decision-gate": "drift",
    "start-retraining": "ingest",
    "register-model": "ingest",
    "register-model-2": "ingest",  # the training pipeline's two branches of the gate
    "resolve-model": "ingest",
}
# Not cached: ingest, prepare and arize (see settings.CACHED_STAGES: ingest because the same URI may
# hold a new batch), the notification, and the small helpers (the batch's resolution among them).
UNCACHED = (
    "ingest",
    "prepare",
    "arize",
    "resolve-batch",
    "notify-drift",
    "drift-alert",
    "shard-indices",
    "alert-gate",
    "status-gate",
    "insufficient-data",
    "decision-gate",
    "evaluate",  # the production model behind the registry pointer changes between runs
    "start-retraining",
    "resolve-model",  # the production pointer moves between runs (settings.REGISTRY)
    "register-model",
    "register-model-2",
)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, tuple[dict, dict, Path]]:
    """Both pipelines compiled with the defaults: {name: (pipeline_spec, platform_spec, path)}."""
    out = tmp_path_factory.mktemp("compiled")
    paths = compile_pipelines(out)
    docs = {}
    for name, path in paths.items():
        spec, platform = list(yaml.safe_load_all(path.read_text()))
        docs[name] = (spec, platform, path)
    return docs


def _executors(spec: dict) -> dict:
    return spec["deploymentSpec"]["executors"]


def _all_tasks(spec: dict):
    """Every task of the pipeline, inside loops and conditions too: (name, task)."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec["components"].values() if "dag" in c]
    for dag in dags:
        yield from dag["tasks"].items()


def _component_of(executor: str) -> str:
    return executor.removeprefix("exec-")


@pytest.mark.parametrize("name", ["training", "monitoring", "actuals"])
def test_golden_yaml_is_up_to_date(compiled, name):
    golden = GOLDEN / f"{name}.yaml"
    assert golden.exists(), f"{golden} is missing: run `make compile` and commit pipelines/"
    assert compiled[name][2].read_text() == golden.read_text(), (
        f"{golden} differs from a fresh compile: run `make compile` and commit the YAML diff"
    )


@pytest.mark.parametrize("name", ["training", "monitoring", "actuals"])
def test_every_component_runs_in_its_own_stage_image(compiled, name):
    spec = compiled[name][0]
    containers = {k: v["container"] for k, v in _executors(spec).items() if "container" in v}
    assert containers
    for executor, container in containers.items():
        stage = COMPONENT_STAGE[_component_of(executor)]
        assert container["image"] == ImageSet().ref(stage), executor


def test_every_stage_is_in_a_pipeline(compiled):
    training = {_component_of(e) for e in _executors(compiled["training"][0])}
    monitoring = {_component_of(e) for e in _executors(compiled["monitoring"][0])}
    # ingest turns the production batch as it arrives into the data-stage layout: monitoring only
    # (the training pipeline's data stage builds its own production split).
    assert set(STAGES) - {"ingest"} <= training and "ingest" not in training
    # evaluate compares a new model with production: after train, in the training pipeline only
    assert set(STAGES) - {"data", "train", "evaluate"} <= monitoring


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_only_the_model_stages_ask_for_a_gpu(compiled, name):
    spec, platform, _ = compiled[name]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor, body in _executors(spec).items():
        if "container" not in body:
            continue
        resources = body["container"].get("resources", {})
        gpu_stage = _component_of(executor) in ("train", "embed", "evaluate")  # models run there
        assert ("accelerator" in resources) == gpu_stage, executor
        if gpu_stage:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == "1"
            assert resources["cpuRequest"] > 0 and resources["memoryRequest"] > 0
            conf = k8s[executor]
            assert conf["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in conf[
                "tolerations"
            ]
            (shm,) = conf["emptyDirMounts"]
            assert shm["mountPath"] == "/dev/shm" and shm["medium"] == "Memory"
        else:
            conf = k8s.get(executor, {})
            assert "nodeSelector" not in conf and "tolerations" not in conf, executor


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_retries_on_every_task_and_caching_where_deterministic(compiled, name):
    spec = compiled[name][0]
    tasks = [(n, t) for n, t in _all_tasks(spec) if "componentRef" in t and "importer" not in n]
    assert tasks
    for task_name, task in tasks:
        component = task["componentRef"]["name"].removeprefix("comp-")
        if component.startswith(("for-loop", "condition")):
            continue
        assert task["retryPolicy"]["maxRetryCount"] >= 1, task_name
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        assert cached == (component not in UNCACHED), task_name


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_arize_credentials_come_from_a_secret_not_parameters(compiled, name):
    spec, platform, _ = compiled[name]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    secrets = {s["secretName"]: s for s in k8s["exec-arize"]["secretAsEnv"]}
    assert set(secrets) == {"arize-credentials", "mlpipeline-minio-artifact"}
    secret = secrets["arize-credentials"]
    assert {e["envVar"] for e in secret["keyToEnv"]} == {"ARIZE_API_KEY", "ARIZE_SPACE_ID"}
    params = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    assert not [p for p in params if "key" in p.lower() or "secret" in p.lower() or "space" in p.lower()]


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_storage_credentials_reach_the_stages_that_use_storage(compiled, name):
    k8s = compiled[name][1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor, conf in k8s.items():
        names = {s["secretName"] for s in conf.get("secretAsEnv", [])}
        uses_storage = _component_of(executor) in (
            *("ingest", "prepare", "arize", "drift", "evaluate"),
            *("resolve-model", "register-model", "register-model-2"),  # the model registry
            "start-retraining",  # reads the drift history
            "train",  # a retraining's extra rows and drift table (extra_training_uri, drift_uri)
        )
        assert ("mlpipeline-minio-artifact" in names) == uses_storage, executor


def test_embed_fans_out_and_is_gathered(compiled):
    spec = compiled["training"][0]
    loops = [c for name, c in spec["components"].items() if name.startswith("comp-for-loop")]
    assert len(loops) == 1 and "embed" in loops[0]["dag"]["tasks"]
    prepare = spec["root"]["dag"]["tasks"]["prepare"]
    embeddings = prepare["inputs"]["artifacts"]["embeddings"]
    assert embeddings["taskOutputArtifact"]["producerTask"].startswith("for-loop")


def test_monitoring_ingests_its_batch_imports_model_and_baseline_and_alerts_on_drift(compiled):
    spec = compiled["monitoring"][0]
    root = spec["root"]
    tasks = root["dag"]["tasks"]
    importers = sorted(n for n in tasks if "importer" in n)
    # The baseline; the model is resolved by resolve-model (a folder or <name>@production in the
    # registry), the batch read by ingest.
    assert len(importers) == 1
    resolve = tasks["resolve-model"]["inputs"]["parameters"]
    assert resolve["model_uri"] == {"componentInputParameter": "model_uri"}
    for name in importers:
        # No display name: the importer records its task under it and later drivers look producers
        # up by task key (backend/src/v2/component/importer_launcher.go, driver/resolve.go, KFP
        # 2.17.0: "cannot find producer task").
        assert tasks[name]["taskInfo"]["name"] == name
        uri = tasks[name]["inputs"]["parameters"]["uri"]["componentInputParameter"]
        assert uri in ("model_uri", "baseline_uri")
    conditions = {
        t["taskInfo"]["name"]: spec["components"][t["componentRef"]["name"]]["dag"]["tasks"]
        for n, t in tasks.items()
        if n.startswith("condition")
    }
    assert set(conditions) == {"embedding-drift", "insufficient-data"}
    assert set(conditions["embedding-drift"]) == {"drift-alert", "notify-drift", "condition-3"}
    assert set(conditions["insufficient-data"]) == {"insufficient-data"}  # a notice, no webhook
    outputs = root["outputDefinitions"]
    assert outputs["parameters"]["alert"]["parameterType"] == "BOOLEAN"
    assert outputs["parameters"]["status"]["parameterType"] == "STRING"
    assert set(outputs["artifacts"]) == {"report", "drift_table", "prepared", "rejected", "ingest_summary"}
    produced = spec["root"]["dag"]["outputs"]["artifacts"]
    assert produced["rejected"]["artifactSelectors"] == [
        {"outputArtifactKey": "rejected", "producerSubtask": "ingest"}
    ]
    assert produced["ingest_summary"]["artifactSelectors"] == [
        {"outputArtifactKey": "summary", "producerSubtask": "ingest"}
    ]


def test_the_insufficient_data_branch_tests_drifts_status_through_its_gate(compiled):
    from components.common import helpers
    from components.drift.stage import INSUFFICIENT_DATA

    assert helpers.INSUFFICIENT_DATA == INSUFFICIENT_DATA
    spec = compiled["monitoring"][0]
    tasks = spec["root"]["dag"]["tasks"]
    gate = tasks["status-gate"]
    assert gate["inputs"]["parameters"]["status"]["taskOutputParameter"] == {
        "outputParameterKey": "status",
        "producerTask": "drift",
    }
    (condition,) = [t for t in tasks.values() if t["taskInfo"]["name"] == "insufficient-data"]
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--status-gate-Output'] == 'insufficient-data'"
    )
    assert spec["root"]["dag"]["outputs"]["parameters"]["status"]["valueFromParameter"] == {
        "outputParameterKey": "Output",
        "producerSubtask": "status-gate",
    }


def test_the_monitoring_batch_is_the_runs_own_and_never_cached(compiled):
    spec = compiled["monitoring"][0]
    tasks = spec["root"]["dag"]["tasks"]
    resolve = tasks["resolve-batch"]
    assert resolve.get("cachingOptions", {}).get("enableCache", False) is False
    params = resolve["inputs"]["parameters"]
    assert params["production_uri"] == {"componentInputParameter": "production_uri"}
    assert params["batch_date"] == {"componentInputParameter": "batch_date"}
    # The driver replaces the placeholder only when it is the whole constant value of an input
    # (backend/src/v2/driver/resolve.go, KFP 2.17.0).
    assert params["schedule_time"] == {
        "runtimeValue": {"constant": dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER}
    }
    # ingest reads the resolved URI, in the form source_kind names (auto by default); never cached.
    ingest = tasks["ingest"]
    assert ingest.get("cachingOptions", {}).get("enableCache", False) is False
    assert ingest["inputs"]["parameters"]["source_uri"]["taskOutputParameter"] == {
        "outputParameterKey": "batch_uri",
        "producerTask": "resolve-batch",
    }
    assert ingest["inputs"]["parameters"]["source_kind"] == {"componentInputParameter": "source_kind"}
    # ingest's batch is what embed and prepare read; prepare puts its rows on the batch's date.
    prepare = tasks["prepare"]
    assert prepare["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"] == {
        "outputArtifactKey": "batch",
        "producerTask": "ingest",
    }
    assert prepare["inputs"]["parameters"]["now"]["taskOutputParameter"] == {
        "outputParameterKey": "batch_end",
        "producerTask": "resolve-batch",
    }
    loop = next(c for n, c in spec["components"].items() if n.startswith("comp-for-loop"))
    embed_dataset = loop["dag"]["tasks"]["embed"]["inputs"]["artifacts"]["dataset"]
    assert embed_dataset == {"componentInputArtifact": "pipelinechannel--ingest-batch"}
    root_params = spec["root"]["inputDefinitions"]["parameters"]
    assert root_params["batch_date"]["defaultValue"] == ""
    assert root_params["source_kind"]["defaultValue"] == "auto"
    assert root_params["history_uri"]["defaultValue"] == ""
    assert root_params["kfp_ui_host"]["defaultValue"] == ""


def test_the_notification_names_the_run_and_history_reaches_drift(compiled):
    spec = compiled["monitoring"][0]
    condition = next(
        spec["components"][t["componentRef"]["name"]]
        for t in spec["root"]["dag"]["tasks"].values()
        if t["taskInfo"]["name"] == "embedding-drift"
    )
    notify = condition["dag"]["tasks"]["notify-drift"]
    params = notify["inputs"]["parameters"]
    assert params["run_id"] == {"runtimeValue": {"constant": dsl.PIPELINE_JOB_ID_PLACEHOLDER}}
    assert params["kfp_ui_host"] == {"componentInputParameter": "pipelinechannel--kfp_ui_host"}
    assert set(notify["inputs"]["artifacts"]) == {"report", "drift_table", "metrics"}
    for name in ("training", "monitoring"):
        drift = compiled[name][0]["root"]["dag"]["tasks"]["drift"]
        assert drift["inputs"]["parameters"]["history_uri"] == {"componentInputParameter": "history_uri"}
        assert (
            compiled[name][0]["root"]["inputDefinitions"]["parameters"]["history_uri"]["defaultValue"] == ""
        )


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_one_image_store_and_one_allow_cpu_reach_every_stage_that_reads_them(compiled, name):
    spec = compiled[name][0]
    tasks = dict(_all_tasks(spec))
    for task, param in [("prepare", "image_store"), ("drift", "image_store"), ("embed", "allow_cpu")]:
        got = tasks[task]["inputs"]["parameters"][param]["componentInputParameter"]
        assert got.removeprefix("pipelinechannel--") == param, (task, param)
    if name == "training":
        assert tasks["train"]["inputs"]["parameters"]["allow_cpu"] == {"componentInputParameter": "allow_cpu"}
    for param in ("ledger_uri", "resend_uncertain"):
        assert tasks["arize"]["inputs"]["parameters"][param] == {"componentInputParameter": param}
    help_text = spec["root"]["inputDefinitions"]["parameters"]["ledger_uri"]["description"]
    assert "minio://mlpipeline/arize-ledgers/" in help_text and "retr" in help_text


def test_registry_tag_and_gpu_pool_are_compile_time_settings(tmp_path):
    settings = ClusterSettings(gpu_node_key="pool", gpu_node_value="a100", gpu_limit=2)
    path = compile_pipelines(tmp_path, ImageSet("reg.local:5000/x", "t1"), settings, which=("training",))[
        "training"
    ]
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    assert _executors(spec)["exec-embed"]["container"]["image"] == "reg.local:5000/x/fashion-drift-embed:t1"
    assert _executors(spec)["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"] == "2"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-train"]["nodeSelector"]["labels"] == {"pool": "a100"}


def test_kind_compile_asks_for_no_gpu(tmp_path):
    settings = ClusterSettings(gpu_limit=0)
    path = compile_pipelines(tmp_path, None, settings, which=("training",))["training"]
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    assert all(
        "accelerator" not in e.get("container", {}).get("resources", {}) for e in _executors(spec).values()
    )
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert "nodeSelector" not in k8s["exec-train"] and "tolerations" not in k8s["exec-train"]


@pytest.mark.parametrize(
    "kwargs", [{"gpu_limit": -1}, {"gpu_node_key": ""}, {"arize_secret": ""}, {"retries": -1}]
)
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ClusterSettings(**kwargs)


def _component_inputs(spec: dict, component: str) -> dict:
    return spec["components"][component].get("inputDefinitions", {}).get("parameters", {})


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_a_pipeline_parameter_reaches_its_stage_under_its_own_name_and_default(compiled, name):
    """One name and one default from the pipeline down to the stage (a stage's default is its Config's).

    Every stage input fed from a pipeline parameter has that parameter's name, and the pipeline's
    default is the stage's: e.g. embed_batch_size is the same in both pipelines, and no stage has
    `window` where the pipeline says `drift_window`.
    """
    spec = compiled[name][0]
    root = spec["root"]["inputDefinitions"]["parameters"]
    fed = set()
    for task_name, task in _all_tasks(spec):
        component = task["componentRef"]["name"]
        if component.startswith(("comp-for-loop", "comp-condition", "comp-importer")):
            continue  # the sub-DAGs pass parameters on; an importer takes its URI as `uri`
        stage_inputs = _component_inputs(spec, component)
        for param, source in task.get("inputs", {}).get("parameters", {}).items():
            pipeline_param = source.get("componentInputParameter", "").removeprefix("pipelinechannel--")
            if pipeline_param not in root:
                continue  # a constant, a task output or the loop's item
            fed.add(pipeline_param)
            assert param == pipeline_param, f"{task_name}: {param} <- pipeline parameter {pipeline_param}"
            stage_default = stage_inputs[param].get("defaultValue")
            if stage_default is not None:
                assert root[pipeline_param].get("defaultValue") == stage_default, f"{task_name}.{param}"
    # the importers' URIs, and retrain, which only a condition reads (dsl.If)
    monitoring_inputs = {"model_uri", "baseline_uri", "retrain"}
    assert set(root) - fed <= monitoring_inputs


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_every_pipeline_parameter_has_the_help_the_kfp_ui_shows(compiled, name):
    params = compiled[name][0]["root"]["inputDefinitions"]["parameters"]
    assert not [p for p, spec in params.items() if not spec.get("description")]
    # the help of the stage Config's field of the same name
    field = next(f for f in dataclasses.fields(DriftConfig) if f.name == "false_alarm_rate")
    assert params["false_alarm_rate"]["description"] == help_of(field)


@pytest.mark.parametrize("name", ["training", "monitoring"])
def test_every_stage_input_is_fed_or_left_to_its_default_for_a_reason(compiled, name):
    """A component field no pipeline sets is in definitions.LEFT_TO_DEFAULT, with its reason."""
    from components.pipelines.definitions import LEFT_TO_DEFAULT

    spec = compiled[name][0]
    unfed = set()
    for _, task in _all_tasks(spec):
        component = task["componentRef"]["name"].removeprefix("comp-")
        if component not in STAGES:
            continue
        given = set(task.get("inputs", {}).get("parameters", {}))
        unfed |= {f"{component}.{p}" for p in set(_component_inputs(spec, f"comp-{component}")) - given}
    assert unfed <= set(LEFT_TO_DEFAULT), sorted(unfed - set(LEFT_TO_DEFAULT))
    assert all(reason.strip() for reason in LEFT_TO_DEFAULT.values())
