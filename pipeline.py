"""The two pipelines (training, monitoring) and the command line that compiles, runs, submits and schedules them.

    python pipeline.py compile [--registry R] [--tag T] [--gpu-node-key K --gpu-node-value V] [--gpu-limit N]
                               [--arize-secret S] [--storage-endpoint URL]
    python pipeline.py run --local [--pipeline training|monitoring] [--output-dir DIR] [--param name=value ...]
    python pipeline.py submit --host URL [--pipeline training|monitoring] [--param name=value ...] [--upload] [--wait]
    python pipeline.py schedule --host URL --cron "0 0 6 * * *" [--param name=value ...]
    python pipeline.py unschedule --host URL [--name NAME | --id ID]

Pipelines are built by functions that take an :class:`ImageSet` and the compile-time
:class:`ClusterSettings`; nothing here reads the environment when imported.
"""

import argparse
import builtins
import importlib
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes
from kfp.dsl import HTML, Dataset, Markdown, Model

from components import __version__
from components.common import schema
from components.common.images import DEFAULT_REGISTRY, STAGES, ImageSet
from components.data import build as data_defaults

ROOT = Path(__file__).resolve().parent
PIPELINES_DIR = ROOT / "pipelines"
TRAINING = "training"
MONITORING = "monitoring"
PIPELINE_NAMES = {TRAINING: "fashion-drift-training", MONITORING: "fashion-drift-monitoring"}
GPU_STAGES = ("train", "embed")
STORAGE_STAGES = ("prepare", "arize", "drift")  # stages that use components.common.storage
# Stages whose re-run with the same inputs gives the same result: cached. Not cached: prepare
# (its timestamps are shifted to the time it runs, now="") and arize (it logs to an external
# service; a re-run must log again).
CACHED_STAGES = ("data", "train", "embed", "drift")
DEFAULT_EXPERIMENT = "fashion-drift"
DEFAULT_SCHEDULE_NAME = "fashion-drift-monitoring"
PORT_FORWARD_HINT = "kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80"


# --------------------------------------------------------------------------------------------
# Compile-time settings
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Resources:
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
            "helper": Resources("100m", "256Mi"),
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


ARIZE_SECRET_KEYS = {"api-key": "ARIZE_API_KEY", "space-id": "ARIZE_SPACE_ID"}
STORAGE_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}


def configure(task, stage: str, settings: ClusterSettings):
    """Cluster settings of one task: resources, GPU, retries, caching, secrets. Local runs ignore them."""
    res = settings.resources.get(stage, settings.resources["helper"])
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
        # Optional: without the Secret the stage runs and says it logged nothing (require_credentials=False).
        kubernetes.use_secret_as_env(task, settings.arize_secret, ARIZE_SECRET_KEYS, optional=True)
    if stage in STORAGE_STAGES:
        # prepare uploads the images records link to; arize and drift read them back.
        kubernetes.use_secret_as_env(task, settings.storage_secret, STORAGE_SECRET_KEYS, optional=True)
        if settings.storage_endpoint:
            task.set_env_variable("AWS_ENDPOINT_URL", settings.storage_endpoint)
    return task


# --------------------------------------------------------------------------------------------
# Stage components
# --------------------------------------------------------------------------------------------
ComponentFactory = Callable[[ImageSet | None], object]


def load_stages(images: ImageSet, factories: dict[str, ComponentFactory] | None = None) -> dict[str, object]:
    """Every stage's component built for ``images``; ``factories`` replaces stages (tests)."""
    factories = dict(factories or {})
    out = {}
    for stage in STAGES:
        factory = factories.get(stage)
        if factory is None:
            try:
                module = importlib.import_module(f"components.{stage}.component")
            except ModuleNotFoundError as exc:
                raise RuntimeError(
                    f"components/{stage}/component.py is missing ({exc}); every stage must define "
                    f"component(images) before the pipelines can be built"
                ) from exc
            factory = module.component
        out[stage] = factory(images)
    from components.common import helpers

    out["shard_indices"] = helpers.shard_indices_component(images)
    out["drift_alert"] = helpers.drift_alert_component(images)
    out["alert_gate"] = helpers.alert_gate_component(images)
    return out


# --------------------------------------------------------------------------------------------
# The pipelines
# --------------------------------------------------------------------------------------------
def _embed_shards(c, settings, dataset, model, splits, num_shards, batch_size):
    """Fan embedding out over ``num_shards`` shards; return the gathered outputs for prepare."""
    shards = configure(c["shard_indices"](num_shards=num_shards), "helper", settings)
    shards.set_display_name("shard-indices")
    with dsl.ParallelFor(shards.output, name="embed-shards") as shard_index:
        embed = c["embed"](
            dataset=dataset,
            model=model,
            splits=splits,
            shard_index=shard_index,
            num_shards=num_shards,
            batch_size=batch_size,
        )
        configure(embed, "embed", settings)
    return dsl.Collected(embed.outputs["embeddings"])


def _prepare_and_monitor(c, settings, embeddings, dataset, image_store, baseline, arize_args, drift_args):
    """prepare -> arize and drift, shared by both pipelines; ``baseline`` None = the prepared rows."""
    prepare = configure(
        c["prepare"](embeddings=embeddings, dataset=dataset, image_store=image_store),
        "prepare",
        settings,
    )
    prepared = prepare.outputs["prepared"]
    configure(c["arize"](prepared=prepared, **arize_args), "arize", settings)
    drift = configure(
        c["drift"](prepared=prepared, baseline=prepared if baseline is None else baseline, **drift_args),
        "drift",
        settings,
    )
    return prepare, drift


class TrainingOutputs(NamedTuple):
    report: HTML
    drift_table: Dataset
    model: Model
    prepared: Dataset
    data_card: Markdown


def build_training_pipeline(
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    factories: dict[str, ComponentFactory] | None = None,
):
    """data -> train -> embed (ParallelFor shards) -> Collected -> prepare -> arize, drift."""
    images = images or ImageSet()
    settings = settings or ClusterSettings()
    c = load_stages(images, factories)

    @dsl.pipeline(
        name=PIPELINE_NAMES[TRAINING],
        description="Builds Fashion-MNIST with a degraded production week, trains, embeds, "
        "prepares monitoring records, logs them to Arize and reports embedding drift.",
    )
    def training(
        source: str = data_defaults.DEFAULT_SOURCE_DIR,
        training_size: int = data_defaults.DEFAULT_TRAINING_SIZE,
        validation_size: int = data_defaults.DEFAULT_VALIDATION_SIZE,
        production_size: int = data_defaults.DEFAULT_PRODUCTION_SIZE,
        production_days: int = data_defaults.DEFAULT_PRODUCTION_DAYS,
        window_days: int = data_defaults.DEFAULT_WINDOW_DAYS,
        degraded_share: float = data_defaults.DEFAULT_DEGRADED_SHARE,
        seed: int = 0,
        profile: str = "local",
        model_name: str = "",
        epochs: float = 0.0,
        batch_size: int = 0,
        learning_rate: float = 0.0,
        max_steps: int = -1,
        num_shards: int = 1,
        embed_batch_size: int = 256,
        image_store: str = "",
        arize_model_name: str = "fashion-mnist-classifier",
        require_arize_credentials: bool = False,
        drift_window: str = "daily",
        false_alarm_rate: float = 0.01,
        drift_resamples: int = 1000,
        projection: str = "umap",
    ) -> TrainingOutputs:
        """Per-run parameters; defaults are the local profile (CPU, Debian's Fashion-MNIST).

        0 for epochs, batch_size and learning_rate means the profile's default. On a cluster:
        profile=cluster, model_name=microsoft/resnet-50, source=<Hub id or bucket>, larger sizes.
        """
        data = configure(
            c["data"](
                source=source,
                training_size=training_size,
                validation_size=validation_size,
                production_size=production_size,
                production_days=production_days,
                window_days=window_days,
                degraded_share=degraded_share,
                seed=seed,
            ),
            "data",
            settings,
        )
        train = configure(
            c["train"](
                dataset=data.outputs["dataset"],
                profile=profile,
                model_name=model_name,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                max_steps=max_steps,
                seed=seed,
            ),
            "train",
            settings,
        )
        embeddings = _embed_shards(
            c,
            settings,
            data.outputs["dataset"],
            train.outputs["model"],
            ",".join(schema.SPLITS),
            num_shards,
            embed_batch_size,
        )
        prepare, drift = _prepare_and_monitor(
            c,
            settings,
            embeddings,
            data.outputs["dataset"],
            image_store,
            baseline=None,
            arize_args=dict(model_name=arize_model_name, require_credentials=require_arize_credentials),
            drift_args=dict(
                window=drift_window,
                false_alarm_rate=false_alarm_rate,
                n_resamples=drift_resamples,
                projection=projection,
                seed=seed,
            ),
        )
        return TrainingOutputs(
            report=drift.outputs["report"],
            drift_table=drift.outputs["drift_table"],
            model=train.outputs["model"],
            prepared=prepare.outputs["prepared"],
            data_card=data.outputs["data_card"],
        )

    return training


class MonitoringOutputs(NamedTuple):
    alert: bool
    report: HTML
    drift_table: Dataset
    prepared: Dataset


def build_monitoring_pipeline(
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    factories: dict[str, ComponentFactory] | None = None,
):
    """Production batch + trained model + stored baseline -> embed -> prepare -> arize, drift -> alert."""
    images = images or ImageSet()
    settings = settings or ClusterSettings()
    c = load_stages(images, factories)

    @dsl.pipeline(
        name=PIPELINE_NAMES[MONITORING],
        description="Embeds a new production batch with a trained model, logs it to Arize and "
        "compares its embeddings with a stored baseline; raises an alert on drift.",
    )
    def monitoring(
        production_uri: str,
        model_uri: str,
        baseline_uri: str,
        num_shards: int = 1,
        embed_batch_size: int = 64,
        image_store: str = "",
        arize_model_name: str = "fashion-mnist-classifier",
        model_version: str = "",
        require_arize_credentials: bool = False,
        baseline_environment: str = schema.TRAINING,
        drift_window: str = "daily",
        false_alarm_rate: float = 0.01,
        drift_resamples: int = 1000,
        projection: str = "umap",
        seed: int = 0,
    ) -> MonitoringOutputs:
        """URIs of a production batch (a data-stage Dataset folder), a trained Model folder and a
        stored prepared folder (the baseline); the run returns the drift alert."""
        batch = dsl.importer(artifact_uri=production_uri, artifact_class=Dataset, reimport=False)
        batch.set_display_name("production-batch")
        model = dsl.importer(artifact_uri=model_uri, artifact_class=Model, reimport=False)
        model.set_display_name("trained-model")
        baseline = dsl.importer(artifact_uri=baseline_uri, artifact_class=Dataset, reimport=False)
        baseline.set_display_name("stored-baseline")
        embeddings = _embed_shards(
            c, settings, batch.output, model.output, schema.PRODUCTION, num_shards, embed_batch_size
        )
        prepare, drift = _prepare_and_monitor(
            c,
            settings,
            embeddings,
            batch.output,
            image_store,
            baseline=baseline.output,
            arize_args=dict(
                model_name=arize_model_name,
                model_version=model_version,
                require_credentials=require_arize_credentials,
            ),
            drift_args=dict(
                baseline_environment=baseline_environment,
                window=drift_window,
                false_alarm_rate=false_alarm_rate,
                n_resamples=drift_resamples,
                projection=projection,
                seed=seed,
            ),
        )
        gate = configure(c["alert_gate"](alert=drift.outputs["alert"]), "helper", settings)
        with dsl.If(gate.output == True, name="embedding-drift"):  # noqa: E712 - a KFP condition, not Python
            configure(
                c["drift_alert"](report=drift.outputs["report"], metrics=drift.outputs["metrics"]),
                "helper",
                settings,
            )
        return MonitoringOutputs(
            alert=gate.output,
            report=drift.outputs["report"],
            drift_table=drift.outputs["drift_table"],
            prepared=prepare.outputs["prepared"],
        )

    return monitoring


BUILDERS = {TRAINING: build_training_pipeline, MONITORING: build_monitoring_pipeline}


def check_params(pipeline_func, params: dict | None) -> None:
    """Refuse parameter names the pipeline does not take, listing the ones it does."""
    known = dict(pipeline_func.component_spec.inputs or {})
    unknown = sorted(set(params or {}) - set(known))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)} for {pipeline_func.name}; it takes: {', '.join(known)}"
        )


def compile_pipelines(
    out_dir: Path = PIPELINES_DIR,
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    factories: dict[str, ComponentFactory] | None = None,
    which: tuple[str, ...] = (TRAINING, MONITORING),
) -> dict[str, Path]:
    """Compile the pipelines into ``out_dir/<name>.yaml``; returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in which:
        func = BUILDERS[name](images, settings, factories)
        path = out_dir / f"{name}.yaml"
        tmp = path.with_name(f".tmp-{path.name}")
        compiler.Compiler().compile(func, str(tmp))
        tmp.replace(path)
        written[name] = path
    return written


# --------------------------------------------------------------------------------------------
# Local run
# --------------------------------------------------------------------------------------------
def _unindented_print(func):
    """The real ``print`` under kfp.local's indenting wrappers.

    kfp.local 2.17 swaps ``builtins.print`` for an indenting wrapper while a task runs and puts the
    previous one back afterwards; tasks that run in parallel threads (data beside shard-indices, the
    embed shards) restore each other's wrapper, so one stays installed after the run. Any wrapper
    left over, from this run or an earlier one in the same process, is peeled off here.
    """
    while getattr(func, "__name__", "") == "indented_print_function" and func.__closure__:
        cells = dict(zip(func.__code__.co_freevars, func.__closure__, strict=True))
        if "original_print" not in cells:
            break
        func = cells["original_print"].cell_contents
    return func


def run_local(
    output_dir: Path,
    params: dict | None = None,
    factories: dict[str, ComponentFactory] | None = None,
    which: str = TRAINING,
) -> dict[str, str]:
    """Run a pipeline (training by default) through kfp.local in this environment.

    Returns the paths of its output artifacts (and ``alert`` for monitoring).
    """
    from kfp import local

    missing = [n for n in ("production_uri", "model_uri", "baseline_uri") if not (params or {}).get(n)]
    if which == MONITORING and missing:
        raise ValueError(
            f"the monitoring pipeline needs --param {'=... --param '.join(missing)}=...: a data-stage Dataset "
            f"folder with a production split, a trained model folder and a prepared folder (e.g. from run --local)"
        )
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(output_dir))
    pipeline_func = BUILDERS[which](factories=factories)
    check_params(pipeline_func, params)
    builtins.print = _unindented_print(builtins.print)
    with warnings.catch_warnings():
        # The local runner ignores cluster settings and uses this environment instead of the images:
        # both are expected here, and each task would warn about them.
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        try:
            task = pipeline_func(**(params or {}))
        finally:
            builtins.print = _unindented_print(builtins.print)
    paths = {name: getattr(value, "path", value) for name, value in task.outputs.items()}
    # The HTML artifact is a file named "report"; a copy named .html opens in any browser.
    report = Path(paths["report"])
    readable = report.parent.parent / "drift_report.html"
    shutil.copyfile(report, readable)
    paths["report"] = str(readable)
    paths["report_artifact"] = str(report)
    return paths


# --------------------------------------------------------------------------------------------
# KFP endpoint
# --------------------------------------------------------------------------------------------
class EndpointError(RuntimeError):
    """The KFP endpoint did not answer."""


def check_endpoint(host: str, timeout: float = 5.0) -> None:
    """Fail fast, with the port-forward command to try, when nothing answers at ``host``."""
    url = host.rstrip("/") + "/apis/v2beta1/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return  # something answered (maybe behind auth); let the client say more
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EndpointError(
            f"no KFP API answers at {host} ({reason}).\n"
            f"If KFP runs in a cluster (e.g. the kind cluster of `make kind-up`), forward its port first:\n"
            f"    {PORT_FORWARD_HINT}\n"
            f"and pass --host http://localhost:8080"
        ) from exc


def make_client(host: str):
    import kfp

    check_endpoint(host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=host)


def _compile_to(
    tmp: Path, which: str, images: ImageSet, settings: ClusterSettings, params: dict | None, factories=None
) -> Path:
    check_params(BUILDERS[which](images, settings, factories), params)
    return compile_pipelines(tmp, images, settings, factories, (which,))[which]


def _utc_stamp() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H-%M-%S")


def upload_version(client, package: Path, name: str, images: ImageSet) -> tuple[str, str]:
    """Register ``package`` as pipeline ``name`` (created if missing) plus a new version; return both ids."""
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(package), pipeline_name=name).pipeline_id
        versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by="created_at desc")
        return pipeline_id, versions.pipeline_versions[0].pipeline_version_id
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=f"{name} {images.tag} {_utc_stamp()}", pipeline_id=pipeline_id
    )
    return pipeline_id, version.pipeline_version_id


def submit(
    host: str,
    which: str = TRAINING,
    params: dict | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    pipeline_root: str | None = None,
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    wait: bool = False,
    timeout: int = 4 * 3600,
    factories=None,
    upload: bool = False,
):
    """Start a run of the pipeline (spec sent with the run); with ``upload``, register it first as a
    pipeline version (listed in the KFP UI) and run that version. With ``wait``, return the final state."""
    with tempfile.TemporaryDirectory() as tmp:
        # Compile (and check the parameters) before talking to the endpoint.
        package = _compile_to(
            Path(tmp), which, images or ImageSet(), settings or ClusterSettings(), params, factories
        )
        client = make_client(host)
        if upload:
            pipeline_id, version_id = upload_version(
                client, package, PIPELINE_NAMES[which], images or ImageSet()
            )
            experiment_id = client.create_experiment(name=experiment).experiment_id
            result = client.run_pipeline(
                experiment_id=experiment_id,
                job_name=run_name or f"{PIPELINE_NAMES[which]} {_utc_stamp()}",
                pipeline_id=pipeline_id,
                version_id=version_id,
                params=params or {},
                pipeline_root=pipeline_root,
            )
        else:
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=params or {},
                run_name=run_name,
                experiment_name=experiment,
                pipeline_root=pipeline_root,
            )
    if not wait:
        return result.run_id, None
    final = client.wait_for_run_completion(result.run_id, timeout=timeout)
    return result.run_id, final.state


def schedule(
    host: str,
    cron: str,
    params: dict | None = None,
    name: str = DEFAULT_SCHEDULE_NAME,
    experiment: str = DEFAULT_EXPERIMENT,
    pipeline_root: str | None = None,
    catchup: bool = False,
    max_concurrency: int = 1,
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    factories=None,
):
    """Create a recurring run of the monitoring pipeline; returns its id."""
    if len(cron.split()) not in (5, 6):
        raise ValueError(
            f"--cron {cron!r}: expected 5 or 6 space-separated fields, e.g. '0 0 6 * * *' (06:00 daily)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        package = _compile_to(
            Path(tmp), MONITORING, images or ImageSet(), settings or ClusterSettings(), params, factories
        )
        client = make_client(host)
        experiment_id = client.create_experiment(name=experiment).experiment_id
        job = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name,
            cron_expression=cron,
            max_concurrency=max_concurrency,
            no_catchup=not catchup,
            params=params or {},
            pipeline_package_path=str(package),
            pipeline_root=pipeline_root,
            enabled=True,
        )
    return job.recurring_run_id


def unschedule(
    host: str, name: str | None = DEFAULT_SCHEDULE_NAME, recurring_run_id: str | None = None
) -> list[str]:
    """Disable a recurring run (by id, or every one with that display name); returns the ids disabled."""
    client = make_client(host)
    ids = [recurring_run_id] if recurring_run_id else []
    if not ids:
        flt = json.dumps(
            {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
        )
        response = client.list_recurring_runs(page_size=100, filter=flt)
        ids = [r.recurring_run_id for r in (response.recurring_runs or []) if r.display_name == name]
        if not ids:
            raise LookupError(
                f"no recurring run named {name!r} at {host}; list them in the KFP UI or pass --id"
            )
    for rid in ids:
        client.disable_recurring_run(rid)
    return ids


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: list[str] | None) -> dict:
    params = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--param {item!r}: expected name=value, e.g. --param num_shards=4")
        params[name.strip()] = _parse_value(value)
    return params


def _add_image_and_cluster_args(p: argparse.ArgumentParser) -> None:
    d = ClusterSettings()
    p.add_argument("--registry", default=DEFAULT_REGISTRY, help="image registry (default: %(default)s)")
    p.add_argument("--tag", default=__version__, help="image tag (default: the package version, %(default)s)")
    p.add_argument(
        "--gpu-node-key", default=d.gpu_node_key, help="GPU node-pool label key (default: %(default)s)"
    )
    p.add_argument(
        "--gpu-node-value", default=d.gpu_node_value, help="GPU node-pool label value (default: %(default)s)"
    )
    p.add_argument(
        "--gpu-limit",
        type=int,
        default=d.gpu_limit,
        help="GPUs per train/embed task; 0: no GPU request, node selector or toleration (kind) (default: %(default)s)",
    )
    p.add_argument(
        "--arize-secret", default=d.arize_secret, help="Secret with api-key, space-id (default: %(default)s)"
    )
    p.add_argument(
        "--storage-endpoint",
        default=d.storage_endpoint,
        help="S3 endpoint of the image links (prepare, arize, drift) (optional)",
    )


def _images_and_settings(args) -> tuple[ImageSet, ClusterSettings]:
    return ImageSet(args.registry, args.tag), ClusterSettings(
        gpu_node_key=args.gpu_node_key,
        gpu_node_value=args.gpu_node_value,
        gpu_limit=args.gpu_limit,
        arize_secret=args.arize_secret,
        storage_endpoint=args.storage_endpoint,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipeline.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="write pipelines/training.yaml and pipelines/monitoring.yaml")
    _add_image_and_cluster_args(p)
    p.add_argument("--output-dir", type=Path, default=PIPELINES_DIR, help="(default: pipelines/)")

    p = sub.add_parser("run", help="run a pipeline (training by default) on this machine through kfp.local")
    p.add_argument(
        "--local", action="store_true", required=True, help="run through kfp.local (the only mode)"
    )
    p.add_argument(
        "--pipeline",
        choices=(TRAINING, MONITORING),
        default=TRAINING,
        help="(default: training; monitoring needs production_uri, model_uri, baseline_uri)",
    )
    p.add_argument(
        "--output-dir", type=Path, default=ROOT / "outputs", help="pipeline root (default: outputs/)"
    )
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a training pipeline parameter")

    for command, helptext in (
        ("submit", "upload a pipeline to a KFP endpoint and start a run"),
        ("schedule", "create a recurring run of the monitoring pipeline"),
    ):
        p = sub.add_parser(command, help=helptext)
        p.add_argument("--host", required=True, help="KFP API, e.g. http://localhost:8080")
        p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a pipeline parameter")
        p.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="(default: %(default)s)")
        p.add_argument(
            "--pipeline-root", default=None, help="gs://..., s3://..., minio://... (default: the server's)"
        )
        _add_image_and_cluster_args(p)
        if command == "submit":
            p.add_argument("--pipeline", choices=(TRAINING, MONITORING), default=TRAINING)
            p.add_argument("--run-name", default=None)
            p.add_argument("--wait", action="store_true", help="wait for the run to end and print its state")
            p.add_argument(
                "--upload",
                action="store_true",
                help="register the pipeline and a new version first, then run it",
            )
            p.add_argument(
                "--timeout", type=int, default=4 * 3600, help="seconds to wait (default: %(default)s)"
            )
        else:
            p.add_argument("--cron", required=True, help="cron with seconds, e.g. '0 0 6 * * *'")
            p.add_argument("--name", default=DEFAULT_SCHEDULE_NAME, help="(default: %(default)s)")
            p.add_argument("--catchup", action="store_true", help="backfill missed intervals (default: no)")
            p.add_argument("--max-concurrency", type=int, default=1, help="(default: %(default)s)")

    p = sub.add_parser("unschedule", help="disable a recurring run")
    p.add_argument("--host", required=True)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--name", default=DEFAULT_SCHEDULE_NAME, help="display name (default: %(default)s)")
    group.add_argument("--id", dest="recurring_run_id", default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "compile":
            images, settings = _images_and_settings(args)
            for name, path in compile_pipelines(args.output_dir, images, settings).items():
                print(f"compiled {name}: {path}")
        elif args.command == "run":
            paths = run_local(args.output_dir, parse_params(args.param), which=args.pipeline)
            print(f"artifacts under {Path(args.output_dir).resolve()}")
            for name, path in paths.items():
                if name not in ("report", "report_artifact"):
                    print(f"  {name}: {path}")
            print(f"drift report: {paths['report']}")
        elif args.command == "submit":
            images, settings = _images_and_settings(args)
            run_id, state = submit(
                args.host,
                args.pipeline,
                parse_params(args.param),
                args.experiment,
                args.run_name,
                args.pipeline_root,
                images,
                settings,
                args.wait,
                args.timeout,
                upload=args.upload,
            )
            print(f"run {run_id} submitted to {args.host}" + (f"; final state: {state}" if state else ""))
            if state and state.upper() != "SUCCEEDED":
                return 1
        elif args.command == "schedule":
            images, settings = _images_and_settings(args)
            rid = schedule(
                args.host,
                args.cron,
                parse_params(args.param),
                args.name,
                args.experiment,
                args.pipeline_root,
                args.catchup,
                args.max_concurrency,
                images,
                settings,
            )
            print(f"recurring run {rid} ({args.name!r}, cron {args.cron!r}) created at {args.host}")
        elif args.command == "unschedule":
            ids = unschedule(args.host, args.name, args.recurring_run_id)
            print(f"disabled recurring run(s) {', '.join(ids)} at {args.host}")
    except (EndpointError, LookupError, ValueError, RuntimeError) as exc:
        print(f"pipeline.py {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
