"""Compile-time cluster settings and how each task gets them (:func:`configure`).

What the compiled YAML asks of the cluster (GPU node pool, secrets, resources, retries, caching) is
chosen when the pipelines are compiled, never per run. kfp.local ignores all of it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from kfp import kubernetes

GPU_STAGES = ("train", "embed")
STORAGE_STAGES = ("prepare", "arize", "drift")  # stages that use components.common.storage
# Stages whose re-run with the same inputs gives the same result: cached. Not cached: prepare
# (its timestamps are shifted to the time it runs, now="") and arize (it logs to an external
# service; a re-run must log again).
CACHED_STAGES = ("data", "train", "embed", "drift")
HELPER = "helper"  # the resources of the small components that belong to no stage

ARIZE_SECRET_KEYS = {"api-key": "ARIZE_API_KEY", "space-id": "ARIZE_SPACE_ID"}
STORAGE_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}


@dataclass(frozen=True)
class Resources:
    """CPU and memory request of a task (the memory limit equals the request)."""

    cpu: str
    memory: str


@dataclass(frozen=True)
class ClusterSettings:
    """What the compiled YAML asks of the cluster. Chosen at compile time, never per run."""

    gpu_node_key: str = "cloud.google.com/gke-accelerator"
    gpu_node_value: str = "nvidia-l4"
    gpu_resource: str = "nvidia.com/gpu"
    gpu_limit: int = 1
    shm_size: str = "8Gi"
    arize_secret: str = "arize-credentials"
    # Object-store credentials for the image links (KFP standalone's own secret), for STORAGE_STAGES.
    storage_secret: str = "mlpipeline-minio-artifact"
    storage_endpoint: str = ""  # e.g. http://seaweedfs.kubeflow:8333; empty: the client's default
    retries: int = 2
    backoff: str = "60s"
    backoff_factor: float = 2.0
    backoff_max: str = "3600s"
    resources: dict[str, Resources] = field(
        default_factory=lambda: {
            "data": Resources("1", "4Gi"),
            "train": Resources("4", "16Gi"),
            "embed": Resources("4", "16Gi"),
            "prepare": Resources("1", "4Gi"),
            "arize": Resources("1", "2Gi"),
            "drift": Resources("2", "8Gi"),
            HELPER: Resources("100m", "256Mi"),
        }
    )

    def __post_init__(self) -> None:
        if not self.gpu_node_key or not self.gpu_node_value:
            raise ValueError(
                "gpu_node_key and gpu_node_value: give the GPU node pool's label, e.g. "
                "--gpu-node-key cloud.google.com/gke-accelerator --gpu-node-value nvidia-l4"
            )
        if self.gpu_limit < 0:
            raise ValueError(
                f"gpu_limit={self.gpu_limit}: give 1 or more GPUs, or 0 for a cluster without GPUs (kind)"
            )
        if not self.arize_secret:
            raise ValueError(
                "arize_secret: give the name of the Kubernetes Secret holding api-key and space-id"
            )
        if self.retries < 0:
            raise ValueError(f"retries={self.retries}: expected 0 or more")

    def __hash__(self) -> int:  # resources is a dict; the settings are still a value
        return hash(json.dumps(asdict(self), sort_keys=True))


def configure(task, stage: str, settings: ClusterSettings):
    """Cluster settings of one task: resources, GPU, retries, caching, secrets. Local runs ignore them."""
    res = settings.resources.get(stage, settings.resources[HELPER])
    task.set_cpu_request(res.cpu).set_memory_request(res.memory).set_memory_limit(res.memory)
    task.set_retry(
        settings.retries,
        backoff_duration=settings.backoff,
        backoff_factor=settings.backoff_factor,
        backoff_max_duration=settings.backoff_max,
    )
    task.set_caching_options(stage in CACHED_STAGES)
    if stage in GPU_STAGES and settings.gpu_limit > 0:
        task.set_accelerator_type(settings.gpu_resource).set_accelerator_limit(settings.gpu_limit)
        kubernetes.add_node_selector(task, settings.gpu_node_key, settings.gpu_node_value)
        kubernetes.add_toleration(task, key=settings.gpu_resource, operator="Exists", effect="NoSchedule")
    if stage in GPU_STAGES:
        # Data loaders share batches through /dev/shm; the container default (64 MiB) is too small.
        kubernetes.empty_dir_mount(task, "dshm", "/dev/shm", medium="Memory", size_limit=settings.shm_size)
    if stage == "arize":
        # Optional: without the Secret the stage runs and says it logged nothing
        # (require_arize_credentials=False).
        kubernetes.use_secret_as_env(task, settings.arize_secret, ARIZE_SECRET_KEYS, optional=True)
    if stage in STORAGE_STAGES:
        # prepare uploads the images records link to; arize and drift read them back.
        kubernetes.use_secret_as_env(task, settings.storage_secret, STORAGE_SECRET_KEYS, optional=True)
        if settings.storage_endpoint:
            task.set_env_variable("AWS_ENDPOINT_URL", settings.storage_endpoint)
    return task
