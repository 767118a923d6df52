"""The two pipelines, training and monitoring, and compiling them into YAML.

Pipelines are built by functions that take an :class:`ImageSet` and the compile-time
:class:`ClusterSettings`; nothing here reads the environment when imported.
"""

# No `from __future__ import annotations`: KFP reads the pipeline functions' annotations as objects.

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

from kfp import compiler, dsl
from kfp.dsl import HTML, Dataset, Markdown, Model

from components.arize.config import ArizeConfig
from components.common import schema
from components.common.config import component_fields, default_of, help_of
from components.common.images import ImageSet
from components.data.config import DataConfig
from components.drift.config import DriftConfig
from components.embed.config import EmbedConfig
from components.pipelines.settings import HELPER, ClusterSettings, configure
from components.pipelines.stages import ComponentFactory, Stages
from components.prepare.config import PrepareConfig
from components.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
PIPELINES_DIR = ROOT / "pipelines"
TRAINING = "training"
MONITORING = "monitoring"
PIPELINE_NAMES = {TRAINING: "fashion-drift-training", MONITORING: "fashion-drift-monitoring"}
MONITORING_INPUTS = ("production_uri", "model_uri", "baseline_uri")

Overrides = Mapping[str, ComponentFactory] | None


def declared_defaults(config_cls: type) -> SimpleNamespace:
    """A stage Config's declared field defaults, the pipelines' parameter defaults.

    Not a built Config: ``__post_init__`` may resolve a default (train's 0 epochs become the
    profile's), while a pipeline parameter must keep the value that means "the stage decides".
    """
    return SimpleNamespace(**{f.name: default_of(f) for f in dataclasses.fields(config_cls)})


STAGE_CONFIGS = (DataConfig, TrainConfig, EmbedConfig, PrepareConfig, ArizeConfig, DriftConfig)
# The help of each pipeline parameter (what the KFP UI shows for it): the stage Config's field of the
# same name, or here for the parameters that are no single stage's.
PARAMETER_HELP = {
    f.name: help_of(f) for config_cls in STAGE_CONFIGS for f in component_fields(config_cls)
} | {
    "seed": "random seed of every stage that draws (data, train, drift); the same seed, the same run",
    "production_uri": "the folder of the production batch, a data-stage Dataset folder holding a production "
    "split (local path, gs://, s3:// or minio://); {date} in it is replaced by the run's date (YYYY-MM-DD), "
    "e.g. gs://bucket/batches/{date}/",
    "batch_date": "the day this run processes, YYYY-MM-DD (fills {date} in production_uri); empty: the "
    "run's scheduled date (a run started by hand: its creation date; kfp.local: today, UTC)",
    "kfp_ui_host": "the KFP UI's address (e.g. https://kfp.example.com), for the run's link in the drift "
    "notification; empty: the notification names the run ID only",
    "model_uri": "a trained Model folder (the train stage's output); imported once per URI, so a new "
    "model goes to a new folder",
    "baseline_uri": "a stored prepared folder (the prepare stage's output) production is compared with; "
    "imported once per URI, so a new baseline goes to a new folder",
}


def documented(pipeline_func: Callable) -> Callable:
    """``pipeline_func`` with an ``Args:`` section (each parameter's help) added to its docstring.

    KFP reads it into each pipeline input's description, which the KFP UI shows.
    """
    names = inspect.signature(pipeline_func).parameters
    missing = [n for n in names if n not in PARAMETER_HELP]
    if missing:
        raise ValueError(f"pipeline parameter(s) {', '.join(missing)} have no help: add it to PARAMETER_HELP")
    args = [f"    {name}: {PARAMETER_HELP[name]}" for name in names]
    pipeline_func.__doc__ = (
        "\n".join([inspect.cleandoc(pipeline_func.__doc__ or ""), "", "Args:", *args]) + "\n"
    )
    return pipeline_func


DATA = declared_defaults(DataConfig)
TRAIN = declared_defaults(TrainConfig)
EMBED = declared_defaults(EmbedConfig)
PREPARE = declared_defaults(PrepareConfig)
ARIZE = declared_defaults(ArizeConfig)
DRIFT = declared_defaults(DriftConfig)


def _embed_shards(
    stages: Stages, settings: ClusterSettings, dataset, model, splits: str, num_shards, embed_batch_size
):
    """Fan embedding out over ``num_shards`` shards; return the gathered outputs for prepare."""
    shards = configure(stages.shard_indices(num_shards=num_shards), HELPER, settings)
    shards.set_display_name("shard-indices")
    with dsl.ParallelFor(shards.output, name="embed-shards") as shard_index:
        embed = stages.embed(
            dataset=dataset,
            model=model,
            splits=splits,
            shard_index=shard_index,
            num_shards=num_shards,
            embed_batch_size=embed_batch_size,
        )
        configure(embed, "embed", settings)
    return dsl.Collected(embed.outputs["embeddings"])


def _prepare_and_monitor(
    stages: Stages,
    settings: ClusterSettings,
    embeddings,
    dataset,
    image_store,
    baseline,
    arize_args,
    drift_args,
    prepare_args=None,
):
    """Wire prepare -> arize and drift, shared by both pipelines; ``baseline`` None = the prepared rows."""
    prepare = configure(
        stages.prepare(
            embeddings=embeddings, dataset=dataset, image_store=image_store, **(prepare_args or {})
        ),
        "prepare",
        settings,
    )
    prepared = prepare.outputs["prepared"]
    configure(stages.arize(prepared=prepared, **arize_args), "arize", settings)
    drift = configure(
        stages.drift(prepared=prepared, baseline=prepared if baseline is None else baseline, **drift_args),
        "drift",
        settings,
    )
    return prepare, drift


class TrainingOutputs(NamedTuple):
    """What a training run returns."""

    report: HTML
    drift_table: Dataset
    model: Model
    prepared: Dataset
    data_card: Markdown


def build_training_pipeline(
    images: ImageSet | None = None, settings: ClusterSettings | None = None, overrides: Overrides = None
):
    """The training pipeline: data -> train -> embed (ParallelFor shards) -> Collected -> prepare -> arize, drift."""
    settings = settings or ClusterSettings()
    stages = Stages.build(images, overrides)

    def training(
        source: str = DATA.source,
        training_size: int = DATA.training_size,
        validation_size: int = DATA.validation_size,
        production_size: int = DATA.production_size,
        production_days: int = DATA.production_days,
        window_days: int = DATA.window_days,
        degraded_share: float = DATA.degraded_share,
        seed: int = DATA.seed,
        profile: str = TRAIN.profile,
        model_name: str = TRAIN.model_name,
        epochs: float = TRAIN.epochs,
        batch_size: int = TRAIN.batch_size,
        learning_rate: float = TRAIN.learning_rate,
        max_steps: int = TRAIN.max_steps,
        num_shards: int = EMBED.num_shards,
        embed_batch_size: int = EMBED.embed_batch_size,
        image_store: str = PREPARE.image_store,
        arize_model_name: str = ARIZE.arize_model_name,
        require_arize_credentials: bool = ARIZE.require_arize_credentials,
        drift_window: str = DRIFT.drift_window,
        false_alarm_rate: float = DRIFT.false_alarm_rate,
        drift_resamples: int = DRIFT.drift_resamples,
        projection: str = DRIFT.projection,
        history_uri: str = DRIFT.history_uri,
    ) -> TrainingOutputs:
        """Per-run parameters; defaults are the local profile (CPU, Debian's Fashion-MNIST).

        0 for epochs, batch_size and learning_rate means the profile's default. On a cluster:
        profile=cluster, model_name=microsoft/resnet-50, source=<Hub id or bucket>, larger sizes.
        """
        data = configure(
            stages.data(
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
            stages.train(
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
            stages,
            settings,
            data.outputs["dataset"],
            train.outputs["model"],
            ",".join(schema.SPLITS),
            num_shards,
            embed_batch_size,
        )
        prepare, drift = _prepare_and_monitor(
            stages,
            settings,
            embeddings,
            data.outputs["dataset"],
            image_store,
            baseline=None,
            arize_args=dict(
                arize_model_name=arize_model_name, require_arize_credentials=require_arize_credentials
            ),
            drift_args=dict(
                drift_window=drift_window,
                false_alarm_rate=false_alarm_rate,
                drift_resamples=drift_resamples,
                projection=projection,
                seed=seed,
                history_uri=history_uri,
            ),
        )
        return TrainingOutputs(
            report=drift.outputs["report"],
            drift_table=drift.outputs["drift_table"],
            model=train.outputs["model"],
            prepared=prepare.outputs["prepared"],
            data_card=data.outputs["data_card"],
        )

    return dsl.pipeline(
        name=PIPELINE_NAMES[TRAINING],
        description="Builds Fashion-MNIST with a degraded production week, trains, embeds, "
        "prepares monitoring records, logs them to Arize and reports embedding drift.",
    )(documented(training))


class MonitoringOutputs(NamedTuple):
    """What a monitoring run returns."""

    alert: bool
    report: HTML
    drift_table: Dataset
    prepared: Dataset


def build_monitoring_pipeline(
    images: ImageSet | None = None, settings: ClusterSettings | None = None, overrides: Overrides = None
):
    """The monitoring pipeline: the run's production batch + a trained model + a stored baseline -> embed -> prepare -> arize, drift -> alert, notification."""
    settings = settings or ClusterSettings()
    stages = Stages.build(images, overrides)

    def monitoring(
        production_uri: str,
        model_uri: str,
        baseline_uri: str,
        batch_date: str = "",
        num_shards: int = EMBED.num_shards,
        embed_batch_size: int = EMBED.embed_batch_size,
        image_store: str = PREPARE.image_store,
        arize_model_name: str = ARIZE.arize_model_name,
        model_version: str = ARIZE.model_version,
        require_arize_credentials: bool = ARIZE.require_arize_credentials,
        baseline_environment: str = DRIFT.baseline_environment,
        drift_window: str = DRIFT.drift_window,
        false_alarm_rate: float = DRIFT.false_alarm_rate,
        drift_resamples: int = DRIFT.drift_resamples,
        projection: str = DRIFT.projection,
        seed: int = DRIFT.seed,
        history_uri: str = DRIFT.history_uri,
        kfp_ui_host: str = "",
    ) -> MonitoringOutputs:
        """Per-run parameters: the batch's folder and day, the model and baseline folders, the stages' settings.

        ``production_uri``: the production batch (a data-stage Dataset folder), ``{date}`` in it
        filled with ``batch_date`` or the run's scheduled date; ``model_uri``: a trained Model
        folder; ``baseline_uri``: a stored prepared folder (the baseline); ``history_uri``: the drift
        history every run adds its windows to. The run returns the drift alert and, when it fires,
        notifies the webhook of the cluster's Secret.
        """
        # The batch is fetched by a task, never imported: an importer's URI can only be a constant or
        # a pipeline input (backend/src/v2/component/importer_launcher.go, KFP 2.17.0), so it could
        # not hold the run's date, and reimport=False would reuse the artifact of a URI written
        # again. The schedule time placeholder is the whole value of the input, the only form the
        # driver replaces (backend/src/v2/driver/resolve.go).
        fetch = configure(
            stages.fetch_batch(
                production_uri=production_uri,
                batch_date=batch_date,
                schedule_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
            ),
            "fetch-batch",
            settings,
        )
        fetch.set_caching_options(False)  # the same inputs may name a new batch: never from cache
        batch = fetch.outputs["batch"]
        # Model and baseline are versioned folders that are never rewritten (a new model or baseline
        # goes to a new URI): importing them once per URI is right. No display name: the importer
        # records its task under it and later drivers look producers up by task key
        # (importer_launcher.go, driver/resolve.go: "cannot find producer task").
        model = dsl.importer(artifact_uri=model_uri, artifact_class=Model, reimport=False)
        baseline = dsl.importer(artifact_uri=baseline_uri, artifact_class=Dataset, reimport=False)
        embeddings = _embed_shards(
            stages, settings, batch, model.output, schema.PRODUCTION, num_shards, embed_batch_size
        )
        prepare, drift = _prepare_and_monitor(
            stages,
            settings,
            embeddings,
            batch,
            image_store,
            baseline=baseline.output,
            arize_args=dict(
                arize_model_name=arize_model_name,
                model_version=model_version,
                require_arize_credentials=require_arize_credentials,
            ),
            drift_args=dict(
                baseline_environment=baseline_environment,
                drift_window=drift_window,
                false_alarm_rate=false_alarm_rate,
                drift_resamples=drift_resamples,
                projection=projection,
                seed=seed,
                history_uri=history_uri,
            ),
            # The batch's newest row moves to the last second of its day: each run's rows (and so
            # its windows in the history) are on its own date.
            prepare_args=dict(now=fetch.outputs["batch_end"]),
        )
        gate = configure(stages.alert_gate(alert=drift.outputs["alert"]), HELPER, settings)
        with dsl.If(gate.output == True, name="embedding-drift"):  # noqa: E712 - a KFP condition, not Python
            configure(
                stages.drift_alert(report=drift.outputs["report"], metrics=drift.outputs["metrics"]),
                HELPER,
                settings,
            )
            configure(
                stages.notify_drift(
                    report=drift.outputs["report"],
                    drift_table=drift.outputs["drift_table"],
                    metrics=drift.outputs["metrics"],
                    kfp_ui_host=kfp_ui_host,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                ),
                "notify",
                settings,
            )
        return MonitoringOutputs(
            alert=gate.output,
            report=drift.outputs["report"],
            drift_table=drift.outputs["drift_table"],
            prepared=prepare.outputs["prepared"],
        )

    return dsl.pipeline(
        name=PIPELINE_NAMES[MONITORING],
        description="Fetches the run's production batch (one per day), embeds it with a trained model, "
        "logs it to Arize, compares its embeddings with a stored baseline and adds its windows to the "
        "drift history; raises an alert and notifies a webhook on drift.",
    )(documented(monitoring))


BUILDERS = {TRAINING: build_training_pipeline, MONITORING: build_monitoring_pipeline}


def check_params(pipeline_func, params: dict | None) -> None:
    """Refuse unknown names, values not of their declared type and missing required parameters.

    The checks of :func:`components.pipelines.params.convert_params`, whose converted values are dropped.
    """
    from components.pipelines.params import convert_params  # names, declared types, required ones

    convert_params(pipeline_func, params)


def compile_pipelines(
    out_dir: Path = PIPELINES_DIR,
    images: ImageSet | None = None,
    settings: ClusterSettings | None = None,
    overrides: Overrides = None,
    which: tuple[str, ...] = (TRAINING, MONITORING),
) -> dict[str, Path]:
    """Compile the pipelines into ``out_dir/<name>.yaml``; returns the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in which:
        func = BUILDERS[name](images, settings, overrides)
        path = out_dir / f"{name}.yaml"
        tmp = path.with_name(f".tmp-{path.name}")
        compiler.Compiler().compile(func, str(tmp))
        tmp.replace(path)
        written[name] = path
    return written
