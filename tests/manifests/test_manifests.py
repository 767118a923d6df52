"""The project's Kubernetes manifests: built with `kubectl kustomize`, checked against the API schemas.

Only local manifests are built (no network here); the remote KFP base is checked as a string.
"""

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from components.pipelines.settings import ARIZE_SECRET_KEYS, ClusterSettings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
K8S_VERSION = "1.33.0"  # the kindest/node version of manifests/kind/cluster.yaml
KFP_REF = "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=2.17.0"


def _validate(doc: dict) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.fixture
def built_project(tmp_path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` cannot run here")
    work = tmp_path / "project"
    shutil.copytree(MANIFESTS / "project", work)
    shutil.copy(work / "arize.env.example", work / "arize.env")  # what `make kind-config` does
    out = subprocess.run([kubectl, "kustomize", str(work)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_project_manifests_build_and_validate(built_project):
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in built_project)
    assert kinds == [("ConfigMap", "kfp-launcher"), ("Secret", "arize-credentials")]
    for doc in built_project:
        assert doc["metadata"]["namespace"] == "kubeflow"
        _validate(doc)


def test_secret_matches_what_the_pipeline_reads(built_project):
    (secret,) = [d for d in built_project if d["kind"] == "Secret"]
    assert secret["metadata"]["name"] == ClusterSettings().arize_secret
    assert set(secret["data"]) == set(ARIZE_SECRET_KEYS)


def test_launcher_config_points_at_the_kfp_object_store(built_project):
    (config,) = [d for d in built_project if d["kind"] == "ConfigMap"]
    assert config["data"]["defaultPipelineRoot"] == "minio://mlpipeline/v2/artifacts"
    providers = yaml.safe_load(config["data"]["providers"])
    default = providers["minio"]["default"]
    assert default["endpoint"] == "seaweedfs.kubeflow:9000"
    assert default["credentials"]["secretRef"]["secretName"] == "mlpipeline-minio-artifact"


def test_raw_local_manifests_validate_without_kustomize():
    doc = yaml.safe_load((MANIFESTS / "project" / "kfp-launcher.yaml").read_text())
    doc["metadata"]["namespace"] = "kubeflow"
    _validate(doc)


def test_invalid_manifest_is_caught_by_the_validator():
    bad = yaml.safe_load((MANIFESTS / "project" / "kfp-launcher.yaml").read_text())
    bad["data"]["defaultPipelineRoot"] = 42  # ConfigMap data values must be strings
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(bad)


def test_kfp_is_installed_from_the_2_17_platform_agnostic_overlay():
    kustomization = yaml.safe_load((MANIFESTS / "kfp" / "kustomization.yaml").read_text())
    assert kustomization["resources"] == [KFP_REF]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^KFP_VERSION \?= 2\.17\.0$", makefile, re.M)
    assert "cluster-scoped-resources?ref=$(KFP_VERSION)" in makefile


def test_kind_cluster_config():
    config = yaml.safe_load((MANIFESTS / "kind" / "cluster.yaml").read_text())
    assert config["apiVersion"] == "kind.x-k8s.io/v1alpha4" and config["kind"] == "Cluster"
    images = {n["image"] for n in config["nodes"]}
    assert images == {"kindest/node:v1.33.1"}  # schemas of K8S_VERSION validate its manifests
    assert {n["role"] for n in config["nodes"]} == {"control-plane", "worker"}


def test_kind_targets_compile_without_gpu_requests():
    makefile = (ROOT / "Makefile").read_text()
    assert "--gpu-limit 0" in makefile
    for target in ("kind-up", "kind-kfp", "kind-images", "kind-config", "kind-port-forward", "kind-submit"):
        assert re.search(rf"^{target}:", makefile, re.M), target
