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


def _make_n(target: str) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-s", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def test_kind_targets_compile_with_the_kind_target():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("kind-up", "kind-kfp", "kind-images", "kind-config", "kind-port-forward", "kind-submit"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    (submit,) = [c for c in _make_n("kind-submit") if "pipeline.py submit" in c]
    assert "--target kind" in submit and "--wait" in submit
    assert "sleep 3;" not in submit  # waits until the API answers through the port-forward instead


def test_kind_kfp_follows_the_install_steps_of_kfp_2_17():
    # The KFP standalone install: cluster-scoped resources, wait for the CRDs, then the environment
    # overlay (platform-agnostic for 2.15+: env/dev pulls :master images), then wait for it.
    commands = _make_n("kind-kfp")
    assert commands[0] == (
        'kubectl apply -k "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=2.17.0"'
    )
    assert commands[1].startswith("kubectl wait --for condition=established")
    for crd in ("applications.app.k8s.io", "workflows.argoproj.io", "scheduledworkflows.kubeflow.org"):
        assert f"crd/{crd}" in commands[1]
    assert commands[2] == "kubectl apply -k manifests/kfp"
    assert commands[3].startswith("kubectl -n kubeflow wait --for=condition=Available")


def test_kind_runs_its_steps_in_order():
    makefile = (ROOT / "Makefile").read_text()
    (line,) = [x for x in makefile.splitlines() if x.startswith("kind:")]
    steps = line.split(":", 1)[1].split("##")[0].split()
    # kind-config after kind-kfp: the KFP install writes its own kfp-launcher ConfigMap, ours replaces it.
    assert steps == ["kind-up", "kind-kfp", "kind-images", "kind-config", "kind-submit"]
