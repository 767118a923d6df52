"""The two pipelines, training and monitoring, and compiling them into YAML.

Pipelines are built by functions that take an :class:`ImageSet` and the compile-time
:class:`ClusterSettings`; nothing here reads the environment when imported.
"""

# No `from __future__ import annotations`: KFP reads the pipeline functions' annotations as objects.

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple

from kfp import compiler, dsl
from kfp.dsl import HTML, Dataset, Markdown, Model

from components.arize.config import ArizeConfig
from components.common import helpers, schema
from components.common import retrain as retrain_rule
from components.common.config import component_fields, default_of, help_of, with_args_doc
from components.common.images import ImageSet
from components.data.config import DataConfig
from components.drift.config import DriftConfig
from components.embed.config import EmbedConfig
from components.evaluate.config import EvaluateConfig
from components.ingest.config import IngestConfig
from components.pipelines.actuals import ACTUALS, build_actuals_pipeline
from components.pipelines.actuals import PIPELINE_NAME as ACTUALS_PIPELINE_NAME
from components.pipelines.settings import HELPER, REGISTRY, ClusterSettings, configure
from components.pipelines.stages import ComponentFactory, Stages
from components.prepare.config import PrepareConfig
from components.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
PIPELINES_DIR = ROOT / "pipelines"
TRAINING = "training"
MONITORING = "monitoring"
PIPELINE_NAMES = {
    TRAINING: "fashion-drift-training",
    MONITORING: "fashion-drift-monitoring",
    ACTUALS: ACTUALS_PIPELINE_NAME,
}
MONITORING_INPUTS = ("production_uri", "model_uri", "baseline_uri")

Overrides = Mapping[str, ComponentFactory] | None


def declared_defaults(config_cls: type) -> SimpleNamespace:
    """A stage Config's declared field defaults, the pipelines' parameter defaults.

    Not a built Config: ``__post_init__`` may resolve a default (train's 0 epochs become the
    profile's), while a pipeline parameter must keep the value that means "the stage decides".
    """
    return SimpleNamespace(**{f.name: default_of(f) for f in dataclasses.fields(config_cls)})


STAGE_CONFIGS = (
    DataConfig,
    IngestConfig,
    TrainConfig,
    EmbedConfig,
    PrepareConfig,
    ArizeConfig,
    DriftConfig,
    EvaluateConfig,
)
# The help of each pipeline parameter (what the KFP UI shows for it): the stage Config's field of the
# same name, or here for the parameters that are no single stage's (or that two stages share).
PARAMETER_HELP = {
    f.name: help_of(f) for config_cls in STAGE_CONFIGS for f in component_fields(config_cls)
} | {
    "seed": "random seed of every stage that draws (data, train, drift); the same seed, the same run",
    "production_uri": "the production batch in any form the ingest stage reads; a folder or bucket prefix "
    "of image files (PNG, JPEG, WebP), a manifest (.csv, .jsonl, .parquet: one row per prediction), a "
    "folder holding manifest.csv|jsonl|parquet, or a data-stage folder (local path, gs://, s3:// or "
    "minio://; source_kind names the form when auto cannot tell); {date} in it is replaced by the run's "
    "date (YYYY-MM-DD), e.g. gs://bucket/batches/{date}/",
    "batch_date": "the day this run processes, YYYY-MM-DD (fills {date} in production_uri); empty: the "
    "run's scheduled date (a run started by hand: its creation date; kfp.local: today, UTC)",
    "kfp_ui_host": "the KFP UI's address (e.g. https://kfp.example.com), for the run's link in the drift "
    "notification; empty: the notification names the run ID only",
    "model_uri": "a trained Model folder (the train stage's output) or a registered version; a folder: "
    "local path, gs://, s3:// or minio://; a version in the model registry: <name>@production (the version in production when "
    "the run starts), <name>@latest or <name>@v3 with registry_uri, or <registry_uri>#<name>@production; "
    "copied into the run by the resolve-model task",
    "registry_uri": "the model registry's folder (local, gs://, s3:// or minio://, e.g. "
    "minio://mlpipeline/model-registry): where a training run registers its model, and where a "
    "monitoring run looks up <name>@production in model_uri; '' = no registry (model_uri is a folder)",
    "baseline_uri": "a stored prepared folder (the prepare stage's output) production is compared with; "
    "imported once per URI, so a new baseline goes to a new folder",
    "image_store": "where prepare writes the PNG images the records link to, and where drift's report may "
    "read its thumbnails from: '' = an images/ folder inside the prepared folder; a local folder; or a "
    "gs://, s3:// or minio:// prefix (object storage)",
    "allow_cpu": "let train (profile=cluster) and embed (a model trained with profile=cluster) run on CPU "
    "when CUDA is unavailable (False: fail at once, naming the NVIDIA driver the images need)",
    "drift_uri": "the drift stage's drift_table output of an earlier monitoring run (a Parquet file; local, "
    "gs://, s3://, minio://): with augment=auto its explanation of the flagged windows chooses the "
    "augmentations, and evaluate takes the production rows of its flagged windows as the drifted slice "
    "the gate wants the new model better on; '' = none",
    "registered_model": "the model's name in the model registry at registry_uri (a training run registers "
    "its model under it; a retraining run is started for it)",
    "retrain": "on a confirmed drift alert, start the training pipeline through the KFP API (off by "
    "default); confirmed: the batch holds retrain_min_labelled labelled rows and the alert held on the "
    "last retrain_confirm_runs runs of the drift history (history_uri). The new run's release gate decides",
    "retrain_confirm_runs": "runs in a row (this one included) whose alert must hold in the drift history "
    "before retraining starts; 1 = this run's alert is enough",
    "retrain_min_labelled": "labelled rows the batch must hold before retraining starts (the new rows "
    "join the training split)",
    "retrain_augment": "the retraining run's augment: 'auto' = chosen from this run's drift explanation, a "
    "comma list of rotation, blur, brightness, noise, or '' = none",
    "retrain_params": "further parameters of the retraining run, a JSON object (e.g. "
    '{"profile": "cluster", "source": "gs://bucket/fashion"}); the retraining\'s own (extra_training_uri, '
    "augment, registry_uri, registered_model) win",
    "retrain_pipeline": "the training pipeline's name in KFP (its newest version is run; upload it with "
    "python pipeline.py submit --upload)",
    "kfp_host": "the KFP API the retraining run is created at (in the cluster: "
    "http://ml-pipeline.kubeflow:8888)",
    "ledger_uri": "arize's ledger of chunks sent and in flight, so a rerun sends only the rest and never a "
    "chunk twice: a JSON file, or a folder ending in '/' holding one ledger per model name and version. On "
    "a cluster give a bucket prefix such as minio://mlpipeline/arize-ledgers/ (gs://<bucket>/arize-ledgers/ "
    "on GKE): '' keeps it beside the task's summary, on the pod's disk, lost when KFP retries the task",
}

# Component fields no pipeline parameter sets: each stays at its stage's default, for the reason
# given. tests/pipeline/test_compiled.py checks that every other component input of a stage task
# is fed (a pipeline parameter of the same name, or the wiring), so a new field must be decided here.
LEFT_TO_DEFAULT: dict[str, str] = {
    "data.production_end": "fixed so that a build is reproducible (the synthetic production period)",
    "data.window_start_day": "where the synthetic degraded week sits: centred; python -m components.data sets it",
    "data.rotation_min": "the synthetic degradation's strength: python -m components.data sets it",
    "data.rotation_max": "the synthetic degradation's strength: python -m components.data sets it",
    "data.blur_min": "the synthetic degradation's strength: python -m components.data sets it",
    "data.blur_max": "the synthetic degradation's strength: python -m components.data sets it",
    "prepare.now": "training: '' (the run's time); monitoring: set to the batch day's last second",
    "arize.model_version": "training only: the model just trained (its manifest's version); monitoring exposes it",
    "drift.baseline_environment": "training only: its own training split; monitoring exposes it",
    "arize.chunk_rows": "rows per request, a transport detail; the default fits Arize's request size",
    "drift.max_window_rows": "bounds the detectors' cost per window; the calibration follows it",
    "drift.reference_size": "a sample size; drift_resamples is the cost knob the pipelines expose",
    "drift.calibration_size": "a sample size; drift_resamples is the cost knob the pipelines expose",
    "drift.umap_sample": "the embedding view only (points drawn); no effect on the alert",
    "drift.umap_epochs": "the embedding view only; projection=pca is the quick view",
    "drift.umap_window": "the embedding view only; a report of one window is a local look",
    "drift.positive_class": "the embedding view's confusion colouring only",
    "drift.min_cluster_size": "the embedding view's clusters only",
    "drift.thumbnails": "the report's hover images, read only from the folders and image_store",
    "drift.detectors": "all detectors run; false_alarm_rate is shared over them",
    "evaluate.drift_time_shift": "auto matches the data set's clock to the drift table's; a manual shift is "
    "for python -m components.evaluate",
    "evaluate.eval_splits": "the training pipeline evaluates on validation and the labelled production rows",
    "evaluate.calibration_bins": "the reliability diagram's bins only; no effect on the gate",
    "evaluate.feature_bins": "the image-feature slices' bins; min slice size is the gate's knob",
    "evaluate.eval_batch_size": "a throughput setting; the result does not depend on it",
}


def documented(pipeline_func: Callable) -> Callable:
    """``pipeline_func`` with each parameter's help (``PARAMETER_HELP``) in its docstring's ``Args:``."""
    return with_args_doc(pipeline_func, PARAMETER_HELP)


DATA = declared_defaults(DataConfig)
INGEST = declared_defaults(IngestConfig)
TRAIN = declared_defaults(TrainConfig)
EMBED = declared_defaults(EmbedConfig)
PREPARE = declared_defaults(PrepareConfig)
ARIZE = declared_defaults(ArizeConfig)
DRIFT = declared_defaults(DriftConfig)
EVALUATE = declared_defaults(EvaluateConfig)


def _stage_args(config_cls: type, params: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline parameters that feed ``config_cls``'s component fields: each its field of the same name."""
    return {f.name: params[f.name] for f in component_fields(config_cls) if f.name in params}


def _embed_shards(
    stages: Stages,
    settings: ClusterSettings,
    dataset,
    model,
    splits: str,
    num_shards,
    embed_batch_size,
    allow_cpu,
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
            allow_cpu=allow_cpu,
        )
        configure(embed, "embed", settings)
    return dsl.Collected(embed.outputs["embeddings"])


def _prepare_and_monitor(
    stages: Stages,
    settings: ClusterSettings,
    embeddings,
    dataset,
    baseline,
    params: Mapping[str, Any],
    prepare_args=None,
):
    """Wire prepare -> arize and drift, shared by both pipelines; ``baseline`` None = the prepared rows.

    ``params``: the pipeline's parameters, each passed to the stage fields of its name (drift's
    ``image_store``, where prepare put the images, gives the report its thumbnails).
    """
    prepare = configure(
        stages.prepare(
            embeddings=embeddings,
            dataset=dataset,
            **_stage_args(PrepareConfig, params),
            **(prepare_args or {}),
        ),
        "prepare",
        settings,
    )
    prepared = prepare.outputs["prepared"]
    configure(stages.arize(prepared=prepared, **_stage_args(ArizeConfig, params)), "arize", settings)
    drift = configure(
        stages.drift(
            prepared=prepared,
            baseline=prepared if baseline is None else baseline,
            **_stage_args(DriftConfig, params),
        ),
        "drift",
        settings,
    )
    return prepare, drift


def _release_gate(stages: Stages, settings: ClusterSettings, model, dataset, params: Mapping[str, Any]):
    """Evaluate the new model against production, branch on the gate, register it as production or a candidate.

    The registration runs only with a registry (``registry_uri`` not ''); the decision is branched
    on through :func:`helpers.decision_gate` (kfp.local resolves a condition on a single output only).
    """
    evaluate = configure(
        stages.evaluate(candidate=model, dataset=dataset, **_stage_args(EvaluateConfig, params)),
        "evaluate",
        settings,
    )
    decision = configure(stages.decision_gate(decision=evaluate.outputs["decision"]), HELPER, settings)
    register = dict(
        model=model,
        registry_uri=params["registry_uri"],
        registered_model=params["registered_model"],
        reason=evaluate.outputs["reasons"],
        run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    )
    with dsl.If(params["registry_uri"] != "", name="model-registry"):
        with dsl.If(decision.output == helpers.PROMOTE, name="gate-passed"):
            configure(stages.register_model(promote=True, **register), REGISTRY, settings).set_display_name(
                "promote-model"
            )
        with dsl.Else(name="gate-failed"):
            configure(stages.register_model(promote=False, **register), REGISTRY, settings).set_display_name(
                "register-candidate"
            )
    return evaluate


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
        validation_part: str = DATA.validation_part,
        production_days: int = DATA.production_days,
        window_days: int = DATA.window_days,
        degraded_share: float = DATA.degraded_share,
        hub_image_column: str = DATA.hub_image_column,
        hub_label_column: str = DATA.hub_label_column,
        hub_train_split: str = DATA.hub_train_split,
        hub_test_split: str = DATA.hub_test_split,
        seed: int = DATA.seed,
        profile: str = TRAIN.profile,
        model_name: str = TRAIN.model_name,
        epochs: float = TRAIN.epochs,
        batch_size: int = TRAIN.batch_size,
        learning_rate: float = TRAIN.learning_rate,
        max_steps: int = TRAIN.max_steps,
        allow_cpu: bool = TRAIN.allow_cpu,
        num_shards: int = EMBED.num_shards,
        embed_batch_size: int = EMBED.embed_batch_size,
        image_store: str = PREPARE.image_store,
        links: str = PREPARE.links,
        link_expiry: int = PREPARE.link_expiry,
        link_base: str = PREPARE.link_base,
        arize_model_name: str = ARIZE.arize_model_name,
        require_arize_credentials: bool = ARIZE.require_arize_credentials,
        ledger_uri: str = ARIZE.ledger_uri,
        resend_uncertain: bool = ARIZE.resend_uncertain,
        drift_window: str = DRIFT.drift_window,
        false_alarm_rate: float = DRIFT.false_alarm_rate,
        drift_resamples: int = DRIFT.drift_resamples,
        min_window_rows: int = DRIFT.min_window_rows,
        projection: str = DRIFT.projection,
        history_uri: str = DRIFT.history_uri,
        alert_rule: str = DRIFT.alert_rule,
        reference_days: int = DRIFT.reference_days,
        reference_dates: str = DRIFT.reference_dates,
        augment: str = TRAIN.augment,
        drift_uri: str = TRAIN.drift_uri,
        extra_training_uri: str = TRAIN.extra_training_uri,
        registry_uri: str = "",
        registered_model: str = EVALUATE.registered_model,
        gate_margin: float = EVALUATE.gate_margin,
        gate_min_slice_rows: int = EVALUATE.gate_min_slice_rows,
        require_better_on_drift: bool = EVALUATE.require_better_on_drift,
        gate_use_ci: bool = EVALUATE.gate_use_ci,
        confidence_level: float = EVALUATE.confidence_level,
        eval_recent_days: int = EVALUATE.eval_recent_days,
        bootstrap_resamples: int = EVALUATE.bootstrap_resamples,
    ) -> TrainingOutputs:
        """Per-run parameters; defaults are the local profile (CPU, Debian's Fashion-MNIST).

        0 for epochs, batch_size and learning_rate means the profile's default. On a cluster:
        profile=cluster, model_name=microsoft/resnet-50, source=<Hub id or bucket>, larger sizes.
        After train, evaluate compares the new model with the registry's production model (none
        yet: promoted) and the release gate decides: with registry_uri the model is registered as
        a candidate or promoted to production; '' = no registry (the decision is reported only).
        """
        params = dict(locals())  # the run's parameters; each feeds the stage fields of its name
        data = configure(stages.data(**_stage_args(DataConfig, params)), "data", settings)
        train = configure(
            stages.train(dataset=data.outputs["dataset"], **_stage_args(TrainConfig, params)),
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
            allow_cpu,
        )
        prepare, drift = _prepare_and_monitor(
            stages,
            settings,
            embeddings,
            data.outputs["dataset"],
            baseline=None,
            params=params,
        )
        _release_gate(stages, settings, train.outputs["model"], data.outputs["dataset"], params)
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
    status: str
    report: HTML
    drift_table: Dataset
    prepared: Dataset
    rejected: Dataset
    ingest_summary: Markdown


def build_monitoring_pipeline(
    images: ImageSet | None = None, settings: ClusterSettings | None = None, overrides: Overrides = None
):
    """The monitoring pipeline: the run's production batch (ingested) + a trained model + a stored baseline -> embed -> prepare -> arize, drift -> alert, notification."""
    settings = settings or ClusterSettings()
    stages = Stages.build(images, overrides)

    def monitoring(
        production_uri: str,
        model_uri: str,
        baseline_uri: str,
        batch_date: str = "",
        registry_uri: str = "",
        source_kind: str = INGEST.source_kind,
        location_column: str = INGEST.location_column,
        timestamp_column: str = INGEST.timestamp_column,
        prediction_id_column: str = INGEST.prediction_id_column,
        label_column: str = INGEST.label_column,
        served_label_column: str = INGEST.served_label_column,
        served_score_column: str = INGEST.served_score_column,
        max_image_bytes: int = INGEST.max_image_bytes,
        max_image_side: int = INGEST.max_image_side,
        time_fallback: str = INGEST.time_fallback,
        num_shards: int = EMBED.num_shards,
        embed_batch_size: int = EMBED.embed_batch_size,
        allow_cpu: bool = EMBED.allow_cpu,
        image_store: str = PREPARE.image_store,
        links: str = PREPARE.links,
        link_expiry: int = PREPARE.link_expiry,
        link_base: str = PREPARE.link_base,
        arize_model_name: str = ARIZE.arize_model_name,
        model_version: str = ARIZE.model_version,
        require_arize_credentials: bool = ARIZE.require_arize_credentials,
        ledger_uri: str = ARIZE.ledger_uri,
        resend_uncertain: bool = ARIZE.resend_uncertain,
        baseline_environment: str = DRIFT.baseline_environment,
        drift_window: str = DRIFT.drift_window,
        false_alarm_rate: float = DRIFT.false_alarm_rate,
        drift_resamples: int = DRIFT.drift_resamples,
        min_window_rows: int = DRIFT.min_window_rows,
        projection: str = DRIFT.projection,
        seed: int = DRIFT.seed,
        history_uri: str = DRIFT.history_uri,
        alert_rule: str = DRIFT.alert_rule,
        reference_days: int = DRIFT.reference_days,
        reference_dates: str = DRIFT.reference_dates,
        kfp_ui_host: str = "",
        retrain: bool = False,
        retrain_confirm_runs: int = 2,
        retrain_min_labelled: int = 100,
        retrain_augment: str = "auto",
        retrain_params: str = "",
        retrain_pipeline: str = PIPELINE_NAMES[TRAINING],
        kfp_host: str = retrain_rule.DEFAULT_KFP_HOST,
        registered_model: str = EVALUATE.registered_model,
    ) -> MonitoringOutputs:
        """Per-run parameters: the batch and its day, the model and baseline folders, the stages' settings.

        ``production_uri``: the production batch in any form ingest reads (image files, a manifest,
        a data-stage folder), ``{date}`` in it filled with ``batch_date`` or the run's scheduled
        date; ``model_uri``: a trained Model folder or ``<name>@production`` in the model registry
        at ``registry_uri``; ``baseline_uri``: a stored prepared folder (the
        baseline); ``history_uri``: the drift history every run adds its windows to. The run returns
        the drift alert and status and, when the alert fires, notifies the webhook of the cluster's
        Secret; when drift could test no window, it says so in a notice.
        """
        params = dict(locals())  # the run's parameters; each feeds the stage fields of its name
        # The batch is read by tasks, never imported: an importer's URI can only be a constant or a
        # pipeline input (backend/src/v2/component/importer_launcher.go, KFP 2.17.0), so it could
        # not hold the run's date, and reimport=False would reuse the artifact of a URI written
        # again. The schedule time placeholder is the whole value of the input, the only form the
        # driver replaces (backend/src/v2/driver/resolve.go).
        resolve = configure(
            stages.resolve_batch(
                production_uri=production_uri,
                batch_date=batch_date,
                schedule_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
            ),
            HELPER,  # never cached: helpers are not in CACHED_STAGES
            settings,
        )
        # Any form of production data becomes the data-stage layout; a data-stage folder is copied
        # unchanged. Never cached ("ingest" is not in CACHED_STAGES): the same URI may hold a new batch.
        ingest = configure(
            stages.ingest(source_uri=resolve.outputs["batch_uri"], **_stage_args(IngestConfig, params)),
            "ingest",
            settings,
        )
        batch = ingest.outputs["batch"]
        # The model is a folder URI or a registry version (<name>@production): an importer cannot look
        # it up (its URI is a constant or a pipeline input, importer_launcher.go), so a task resolves
        # it and copies the folder into its output. Pointing the output at the registered folder
        # instead would not do: the launcher uploads an output to its changed URI only under the
        # pipeline root and fails the task otherwise (launcher_v2.go uploadOutputArtifacts,
        # KeyFromURI). Never cached: the production pointer moves between runs.
        model = configure(
            stages.resolve_model(model_uri=model_uri, registry_uri=registry_uri), REGISTRY, settings
        )
        # The baseline is a versioned folder that is never rewritten (a new baseline goes to a new
        # URI): importing it once per URI is right. No display name: the importer records its task
        # under it and later drivers look producers up by task key (importer_launcher.go,
        # driver/resolve.go: "cannot find producer task").
        baseline = dsl.importer(artifact_uri=baseline_uri, artifact_class=Dataset, reimport=False)
        embeddings = _embed_shards(
            stages,
            settings,
            batch,
            model.outputs["model"],
            schema.PRODUCTION,
            num_shards,
            embed_batch_size,
            allow_cpu,
        )
        prepare, drift = _prepare_and_monitor(
            stages,
            settings,
            embeddings,
            batch,
            baseline=baseline.output,
            params=params,
            # The batch's newest row moves to the last second of its day: each run's rows (and so
            # its windows in the history) are on its own date.
            prepare_args=dict(now=resolve.outputs["batch_end"]),
        )
        # kfp.local resolves a condition on a task's single output only (helpers.alert_gate).
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
            # Off by default; on a confirmed alert it starts the training pipeline through the KFP API
            # (components.common.retrain: the rule, and the run's parameters). The gate of that run decides.
            with dsl.If(retrain == True, name="retrain"):  # noqa: E712 - a KFP condition, not Python
                configure(
                    stages.start_retraining(
                        drift_table=drift.outputs["drift_table"],
                        batch=batch,
                        history_uri=history_uri,
                        registry_uri=registry_uri,
                        registered_model=registered_model,
                        retrain_augment=retrain_augment,
                        retrain_confirm_runs=retrain_confirm_runs,
                        retrain_min_labelled=retrain_min_labelled,
                        retrain_params=retrain_params,
                        retrain_pipeline=retrain_pipeline,
                        kfp_host=kfp_host,
                        run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                    ),
                    REGISTRY,  # a helper's resources, never cached, the object-store Secret (the history)
                    settings,
                )
        status = configure(stages.status_gate(status=drift.outputs["status"]), HELPER, settings)
        # No window could be tested: no verdict, and the run says so (a notice; no webhook message).
        with dsl.If(status.output == helpers.INSUFFICIENT_DATA, name="insufficient-data"):
            configure(
                stages.insufficient_data(
                    report=drift.outputs["report"],
                    metrics=drift.outputs["metrics"],
                    batch_uri=resolve.outputs["batch_uri"],
                    batch_date=resolve.outputs["batch_date"],
                ),
                HELPER,
                settings,
            )
        return MonitoringOutputs(
            alert=gate.output,
            status=status.output,
            report=drift.outputs["report"],
            drift_table=drift.outputs["drift_table"],
            prepared=prepare.outputs["prepared"],
            rejected=ingest.outputs["rejected"],
            ingest_summary=ingest.outputs["summary"],
        )

    return dsl.pipeline(
        name=PIPELINE_NAMES[MONITORING],
        description="Ingests the run's production batch (one per day: image files, a prediction log or a "
        "data-stage folder), embeds it with a trained model, logs it to Arize, compares its embeddings with "
        "a stored baseline and adds its windows to the drift history; raises an alert and notifies a "
        "webhook on drift, and says so when no window could be tested.",
    )(documented(monitoring))


BUILDERS = {
    TRAINING: build_training_pipeline,
    MONITORING: build_monitoring_pipeline,
    ACTUALS: build_actuals_pipeline,
}


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
    which: tuple[str, ...] = (TRAINING, MONITORING, ACTUALS),
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
