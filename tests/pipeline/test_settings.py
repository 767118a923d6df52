"""ClusterSettings: the compile targets, retries per stage, and what configure gives notify, ingest and helpers."""

import pytest
import yaml
from kfp import compiler, dsl

from components.pipelines.settings import (
    DEFAULT_RETRIES,
    HELPER,
    KIND_RESOURCES,
    NOTIFY,
    ClusterSettings,
    Retry,
    configure,
    settings_for,
)


def test_targets():
    assert settings_for("cluster") == ClusterSettings()
    kind = settings_for("kind")
    assert kind.gpu_limit == 0 and kind.resources == KIND_RESOURCES and kind.shm_size == "1Gi"
    assert settings_for("kind", gpu_node_value="x").gpu_node_value == "x"
    with pytest.raises(ValueError, match="target 'minikube': expected one of cluster, kind"):
        settings_for("minikube")


def test_retry_per_stage_and_the_global_override():
    s = ClusterSettings()
    assert s.retry_of("train") == DEFAULT_RETRIES["train"]
    assert s.retry_of("shard-indices") == DEFAULT_RETRIES[HELPER]
    assert ClusterSettings(retries=0).retry_of("train").retries == 0
    assert ClusterSettings(retries=0).retry_of("train").max_duration == DEFAULT_RETRIES["train"].max_duration


@pytest.mark.parametrize(
    "kwargs",
    [
        {"retry": {HELPER: Retry(-1)}},
        {"retry": {HELPER: Retry(max_duration="1d")}},
        {"retry": {"train": Retry()}},  # no helper entry
        {"webhook_secret": ""},
    ],
)
def test_bad_retry_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        ClusterSettings(**kwargs)


def _compiled_task(stage: str, tmp_path) -> tuple[dict, dict, dict]:
    @dsl.component(base_image="python:3.11.14-slim-bookworm")
    def step(text: str) -> str:
        return text

    @dsl.pipeline(name="p")
    def p():
        configure(step(text="x"), stage, ClusterSettings())

    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(p, str(path))
    spec, *platform = list(yaml.safe_load_all(path.read_text()))  # no platform spec: no Kubernetes setting
    executors = platform[0]["platforms"]["kubernetes"]["deploymentSpec"]["executors"] if platform else {}
    k8s = executors.get("exec-step", {})
    return spec["root"]["dag"]["tasks"]["step"], spec["deploymentSpec"]["executors"]["exec-step"], k8s


def test_notify_reads_the_webhook_secret_optionally(tmp_path):
    task, _, k8s = _compiled_task(NOTIFY, tmp_path)
    (secret,) = k8s["secretAsEnv"]
    assert secret["secretName"] == "drift-webhook" and secret["optional"] is True
    assert secret["keyToEnv"] == [{"envVar": "DRIFT_WEBHOOK_URL", "secretKey": "url"}]
    assert not task.get("cachingOptions", {}).get("enableCache", False)


def test_ingest_is_uncached_and_reads_the_object_store(tmp_path):
    task, executor, k8s = _compiled_task("ingest", tmp_path)
    assert not task.get("cachingOptions", {}).get("enableCache", False)  # the same URI may hold a new batch
    assert executor["container"]["resources"]["memoryRequest"] <= 4 * 1024**3
    (secret,) = k8s["secretAsEnv"]
    assert secret["secretName"] == "mlpipeline-minio-artifact" and secret["optional"] is True
    assert task["retryPolicy"]["backoffMaxDuration"] == "3600s"
    endpoint = ClusterSettings(storage_endpoint="http://seaweedfs.kubeflow:8333")
    assert endpoint.resources_of("ingest") == ClusterSettings().resources_of("ingest")
    assert KIND_RESOURCES["ingest"].memory_limit


def test_helpers_are_small_and_uncached(tmp_path):
    task, executor, k8s = _compiled_task(HELPER, tmp_path)
    assert not task.get("cachingOptions", {}).get("enableCache", False)
    assert executor["container"]["resources"]["memoryRequest"] <= 256 * 1024**2
    assert not k8s.get("secretAsEnv")
    assert task["retryPolicy"]["backoffMaxDuration"] == "900s"
