"""Compile-time cluster settings, the compile targets, and how each task gets them (:func:`configure`).

What the compiled YAML asks of the cluster (GPU node pool, secrets, resources, retries, caching) is
chosen when the pipelines are compiled, never per run. kfp.local ignores all of it.

Two targets (:data:`TARGETS`, ``pipeline.py compile|submit|schedule --target``):

- ``cluster`` (the default): train and embed on a GPU node pool, requests sized for the cluster
  profile (``microsoft/resnet-50`` at 224 px).
- ``kind``: one small worker that also runs KFP, no GPU: small CPU and memory requests (limits a
  little above them), no accelerator, node selector or toleration.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from kfp import kubernetes

GPU_STAGES = ("train", "embed", "evaluate")  # evaluate: two models' forward passes, as embed
# Stages that use components.common.storage: the object-store Secret and endpoint.
# train: its extra_training_uri and drift_uri may be bucket URIs (a retraining run's batch and drift table).
STORAGE_STAGES = ("ingest", "prepare", "arize", "drift", "registry", "evaluate", "train")
# Stages whose re-run with the same inputs gives the same result: cached. Not cached: ingest (the
# same URI may hold a new batch: a scheduled run must read what is there now), prepare (its
# timestamps are shifted to the time it runs, now=""), arize (it logs to an external service; a
# re-run must log again), notify (a message is sent each time) and the helpers (the batch's
# resolution among them: its date may come from the run's schedule time).
CACHED_STAGES = ("data", "train", "embed", "drift")
HELPER = "helper"  # the resources of the small components that belong to no stage
NOTIFY = "notify"  # the drift notification: reads the webhook Secret
# The model registry's tasks (register-model, resolve-model): a helper's resources, never cached (the
# production pointer moves), the object-store Secret and endpoint (STORAGE_STAGES).
REGISTRY = "registry"

ARIZE_SECRET_KEYS = {"api-key": "ARIZE_API_KEY", "space-id": "ARIZE_SPACE_ID"}
STORAGE_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
WEBHOOK_SECRET_KEYS = {"url": "DRIFT_WEBHOOK_URL"}

CLUSTER_TARGET = "cluster"
KIND_TARGET = "kind"


@dataclass(frozen=True)
class Resources:
    """CPU and memory request of a task; the memory limit is ``memory_limit`` or else the request."""

    cpu: str
    memory: str
    memory_limit: str = ""


@dataclass(frozen=True)
class Retry:
    """Retries of one task on a cluster (Argo's ``retryStrategy``).

    Argo counts ``max_duration`` from the start of the FIRST attempt, and it is also the deadline of
    the retry pods: a retry is only started while the first attempt's start is less than
    ``max_duration`` ago, and a retry pod is killed when it is reached. So ``max_duration`` must
    cover every attempt plus the backoffs between them: for train, a whole training twice.
    """

    retries: int = 2
    backoff: str = "60s"  # wait before the first retry
    backoff_factor: float = 2.0  # each later wait is this many times the previous one
    max_duration: str = "3600s"  # from the first attempt's start; also the retry pods' deadline


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    if not duration or duration[-1] not in units or not duration[:-1].isdigit():
        raise ValueError(f"duration {duration!r}: expected a whole number of s, m or h, e.g. '90m'")
    return int(duration[:-1]) * units[duration[-1]]


# Per stage. train: the cluster profile fine-tunes ResNet-50 in well under an hour on one L4, and a
# retried train resumes from its last epoch checkpoint; 6 h covers a slow first attempt that fails
# late, the backoff, and a whole second attempt. embed: a shard of a large split on a GPU; 2 h.
# data, ingest, prepare, arize, drift: minutes each (ingest: about a minute per 100,000 images); 1 h
# leaves room for two retries. Helpers (batch resolution, shard list, gates, notices, notification):
# seconds; 15 min.
DEFAULT_RETRIES: dict[str, Retry] = {
    "data": Retry(2, "60s", 2.0, "3600s"),
    "train": Retry(1, "120s", 2.0, "21600s"),
    "embed": Retry(2, "60s", 2.0, "7200s"),
    "prepare": Retry(2, "60s", 2.0, "3600s"),
    "arize": Retry(2, "60s", 2.0, "3600s"),
    "drift": Retry(2, "60s", 2.0, "3600s"),
    "ingest": Retry(2, "60s", 2.0, "3600s"),
    "evaluate": Retry(2, "60s", 2.0, "3600s"),  # two models on validation + production: minutes
    NOTIFY: Retry(2, "30s", 2.0, "900s"),
    HELPER: Retry(2, "30s", 2.0, "900s"),
}

CLUSTER_RESOURCES: dict[str, Resources] = {
    "data": Resources("1", "4Gi"),
    "train": Resources("4", "16Gi"),
    "embed": Resources("4", "16Gi"),
    "prepare": Resources("1", "4Gi"),
    "arize": Resources("1", "2Gi"),
    "drift": Resources("2", "8Gi"),
    "ingest": Resources("2", "4Gi"),
    "evaluate": Resources("4", "16Gi"),  # as embed: a model forward pass on a GPU
    HELPER: Resources("100m", "256Mi"),
}

# kind: one worker (a laptop's Docker) that also runs KFP itself (about 1.5 CPU and 2-3 GiB requested
# by its own pods). The requests only have to let the pods schedule; the limits keep a run of the
# default local profile (30,000 / 3,000 / 6,000 images, small ResNet at 32 px) from being OOM-killed.
KIND_RESOURCES: dict[str, Resources] = {
    "data": Resources("250m", "1Gi", "3Gi"),
    "train": Resources("500m", "2Gi", "6Gi"),
    "embed": Resources("500m", "1Gi", "4Gi"),
    "prepare": Resources("250m", "1Gi", "3Gi"),
    "arize": Resources("100m", "512Mi", "2Gi"),
    "drift": Resources("500m", "1Gi", "4Gi"),
    "ingest": Resources("250m", "512Mi", "2Gi"),
    "evaluate": Resources("500m", "1Gi", "4Gi"),
    HELPER: Resources("50m", "128Mi", "256Mi"),
}


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
    # The drift notification's webhook: a Secret with key `url` (optional: no Secret, no message).
    webhook_secret: str = "drift-webhook"
    # None: each stage's own count (DEFAULT_RETRIES); a number: that count for every task (0: none).
    retries: int | None = None
    retry: dict[str, Retry] = field(default_factory=lambda: dict(DEFAULT_RETRIES))
    resources: dict[str, Resources] = field(default_factory=lambda: dict(CLUSTER_RESOURCES))

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
        if not self.webhook_secret:
            raise ValueError("webhook_secret: give the name of the Kubernetes Secret holding the key url")
        if self.retries is not None and self.retries < 0:
            raise ValueError(f"retries={self.retries}: expected 0 or more")
        for stage, policy in self.retry.items():
            if policy.retries < 0:
                raise ValueError(f"retry[{stage!r}].retries={policy.retries}: expected 0 or more")
            _seconds(policy.backoff)
            _seconds(policy.max_duration)
        if HELPER not in self.retry or HELPER not in self.resources:
            raise ValueError(f"retry and resources need a {HELPER!r} entry (the default of any other task)")

    def __hash__(self) -> int:  # retry and resources are dicts; the settings are still a value
        return hash(json.dumps(asdict(self), sort_keys=True))

    def retry_of(self, stage: str) -> Retry:
        """The retry policy of ``stage`` (helpers: the ``helper`` entry), with ``retries`` applied."""
        policy = self.retry.get(stage, self.retry[HELPER])
        return policy if self.retries is None else replace(policy, retries=self.retries)

    def resources_of(self, stage: str) -> Resources:
        """The resources of ``stage`` (helpers: the ``helper`` entry)."""
        return self.resources.get(stage, self.resources[HELPER])


TARGETS = (CLUSTER_TARGET, KIND_TARGET)


def settings_for(target: str = CLUSTER_TARGET, **overrides: Any) -> ClusterSettings:
    """The settings of a compile target (``cluster`` or ``kind``), with ``overrides`` applied.

    ``kind`` asks for no GPU (no accelerator, node selector or toleration), small requests
    (:data:`KIND_RESOURCES`) and a 1 GiB ``/dev/shm``.
    """
    if target == CLUSTER_TARGET:
        return ClusterSettings(**overrides)
    if target == KIND_TARGET:
        kind: dict[str, Any] = {"gpu_limit": 0, "shm_size": "1Gi", "resources": dict(KIND_RESOURCES)}
        return ClusterSettings(**(kind | overrides))
    raise ValueError(f"target {target!r}: expected one of {', '.join(TARGETS)}")


def configure(task, stage: str, settings: ClusterSettings):  # noqa: ANN001, ANN201 - a KFP PipelineTask
    """Cluster settings of one task: resources, GPU, retries, caching, secrets. Local runs ignore them.

    ``stage`` is a stage name (``ingest``: the production batch, storage Secret and endpoint, never
    cached), ``notify`` (the drift notification: the webhook Secret's ``url`` as
    ``DRIFT_WEBHOOK_URL``, optional) or ``helper`` (any other small component, never cached).
    """
    res = settings.resources_of(stage)
    task.set_cpu_request(res.cpu).set_memory_request(res.memory)
    task.set_memory_limit(res.memory_limit or res.memory)
    policy = settings.retry_of(stage)
    task.set_retry(
        policy.retries,
        backoff_duration=policy.backoff,
        backoff_factor=policy.backoff_factor,
        backoff_max_duration=policy.max_duration,
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
    if stage == NOTIFY:
        # Optional: without the Secret nothing is sent, and the task says so.
        kubernetes.use_secret_as_env(task, settings.webhook_secret, WEBHOOK_SECRET_KEYS, optional=True)
    if stage in STORAGE_STAGES:
        # ingest reads the production batch (minio://, s3:// or gs://); prepare uploads the images
        # records link to; arize and drift read them back (and arize keeps its ledger there).
        kubernetes.use_secret_as_env(task, settings.storage_secret, STORAGE_SECRET_KEYS, optional=True)
        if settings.storage_endpoint:
            task.set_env_variable("AWS_ENDPOINT_URL", settings.storage_endpoint)
    return task
