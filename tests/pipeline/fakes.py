"""Stand-in stage components with the agreed signatures, for wiring tests that must not train anything.

They write tiny files of the right shape, so the pipeline plumbing (fan-out, gathering,
outputs) is exercised in seconds. The real stages are used by the golden and end-to-end tests.
"""

from typing import List, NamedTuple  # noqa: UP035

from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
)

from components.common.images import build_component
from components.pipelines.stages import Stages


def data(
    dataset: Output[Dataset],
    data_card: Output[Markdown],
    sample_grid: Output[Artifact],
    source: str = "",
    training_size: int = 10,
    validation_size: int = 5,
    production_size: int = 5,
    validation_part: str = "test",
    production_days: int = 7,
    window_days: int = 2,
    degraded_share: float = 0.5,
    seed: int = 0,
    hub_image_column: str = "image",
    hub_label_column: str = "label",
    hub_train_split: str = "train",
    hub_test_split: str = "test",
):
    import os

    os.makedirs(dataset.path)
    open(os.path.join(dataset.path, "rows.txt"), "w").write(
        f"{training_size},{validation_size},{production_size}"
    )
    # what save_to_disk writes: a data-stage folder, as the monitoring pipeline's ingest reads it
    open(os.path.join(dataset.path, "dataset_dict.json"), "w").write(
        '{"splits": ["training", "validation", "production"]}'
    )
    open(data_card.path, "w").write("# card")
    dataset.metadata["rows"] = {
        "training": training_size,
        "validation": validation_size,
        "production": production_size,
    }
    dataset.metadata["degraded"] = {"none": training_size + validation_size, "rotate": 2, "blur": 1}
    open(sample_grid.path, "wb").write(b"png")


def ingest(
    batch: Output[Dataset],
    rejected: Output[Dataset],
    summary: Output[Markdown],
    source_uri: str,
    source_kind: str = "auto",
    location_column: str = "image_uri",
    timestamp_column: str = "timestamp",
    prediction_id_column: str = "prediction_id",
    label_column: str = "label",
    served_label_column: str = "prediction_label",
    served_score_column: str = "prediction_score",
    max_image_bytes: int = 20_000_000,
    max_image_side: int = 1024,
    time_fallback: str = "mtime",
):
    import os
    import shutil

    if not os.path.isdir(source_uri):
        raise FileNotFoundError(f"fake ingest: no folder at {source_uri}")
    shutil.copytree(source_uri, batch.path)
    open(rejected.path, "wb").write(b"")
    open(summary.path, "w").write(f"# Ingest\n\n- source: `{source_uri}`, read as {source_kind}\n")
    batch.metadata.update(
        {"source_uri": source_uri, "source_kind": "dataset", "rows": 5, "rejected": 0, "labelled": 5}
    )


def train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
    profile: str = "local",
    model_name: str = "",
    epochs: float = 0.0,
    batch_size: int = 0,
    learning_rate: float = 0.0,
    max_steps: int = -1,
    seed: int = 0,
    allow_cpu: bool = False,
    augment: str = "",
    drift_uri: str = "",
    extra_training_uri: str = "",
):
    import logging
    import os
    import warnings

    os.makedirs(model.path)
    warnings.warn("fake train: class 3 has no validation rows", stacklevel=1)
    logging.warning("fake train: a logged warning")
    open(os.path.join(model.path, "config.json"), "w").write("{}")
    metrics.log_metric("accuracy", 0.5)


def embed(
    dataset: Input[Dataset],
    model: Input[Model],
    embeddings: Output[Dataset],
    summary: Output[Markdown],
    splits: str = "training,validation,production",
    shard_index: int = 0,
    num_shards: int = 1,
    embed_batch_size: int = 8,
    allow_cpu: bool = False,
):
    import os

    os.makedirs(embeddings.path)
    open(os.path.join(embeddings.path, "shard.txt"), "w").write(f"{shard_index}/{num_shards}:{splits}")
    open(summary.path, "w").write("# embed")
    embeddings.metadata["rows"] = 10 + shard_index
    embeddings.metadata["failures"] = 0


def prepare(
    embeddings: Input[List[Dataset]],  # noqa: UP006
    dataset: Input[Dataset],
    prepared: Output[Dataset],
    summary: Output[Markdown],
    image_store: str = "",
    now: str = "",
    links: str = "",
    link_expiry: int = 0,
    link_base: str = "",
):
    import os

    os.makedirs(prepared.path)
    shards = sorted(open(os.path.join(e.path, "shard.txt")).read() for e in embeddings)
    open(os.path.join(prepared.path, "shards.txt"), "w").write("\n".join(shards))
    open(summary.path, "w").write("# prepare")
    prepared.metadata.update({"rows_training": 12, "rows_production": 8, "rejected": 1})


def arize(
    prepared: Input[Dataset],
    summary: Output[Markdown],
    arize_model_name: str = "fashion-mnist-classifier",
    model_version: str = "",
    require_arize_credentials: bool = False,
    chunk_rows: int = 1000,
    ledger_uri: str = "",
    resend_uncertain: bool = False,
):
    open(summary.path, "w").write("# arize: nothing logged")
    summary.metadata["sent"] = False


def drift(
    prepared: Input[Dataset],
    baseline: Input[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    drift_table: Output[Dataset],
    baseline_environment: str = "training",
    drift_window: str = "daily",
    false_alarm_rate: float = 0.01,
    drift_resamples: int = 1000,
    min_window_rows: int = 20,
    projection: str = "umap",
    seed: int = 0,
    history_uri: str = "",
    image_store: str = "",
    alert_rule: str = "sidak",
    reference_days: int = 0,
    reference_dates: str = "",
) -> NamedTuple("Outputs", [("alert", bool), ("status", str)]):
    import os
    from collections import namedtuple

    shards = open(os.path.join(prepared.path, "shards.txt")).read()
    open(report.path, "w").write(f"<html><body><pre>{shards}</pre></body></html>")
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    starts = [datetime(2026, 11, 20 + i, tzinfo=UTC) for i in range(7)]
    flagged = [i in (2, 3, 4) for i in range(7)]
    pq.write_table(
        pa.table(
            {
                "window_start": starts,
                "window": ["daily"] * 7,
                "flagged": flagged,
                "fired": ["centroid" if f else "" for f in flagged],
            }
        ),
        drift_table.path,
    )
    metrics.log_metric("drift_score", 1.0)
    drift_table.metadata.update({"windows": 7, "flagged": 3})
    if min_window_rows > 1000:  # no window has that many rows: nothing tested, no verdict
        drift_table.metadata.update({"flagged": 0})
        return namedtuple("Outputs", ["alert", "status"])(False, "insufficient-data")
    return namedtuple("Outputs", ["alert", "status"])(True, "drift")


def evaluate(
    candidate: Input[Model],
    dataset: Input[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    evaluation: Output[Dataset],
    registry_uri: str = "",
    registered_model: str = "fashion-mnist-classifier",
    drift_uri: str = "",
    eval_recent_days: int = 0,
    gate_margin: float = 0.01,
    gate_min_slice_rows: int = 200,
    require_better_on_drift: bool = True,
    gate_use_ci: bool = False,
    confidence_level: float = 0.95,
    bootstrap_resamples: int = 2000,
    seed: int = 0,
    allow_cpu: bool = False,
) -> NamedTuple("Outputs", [("decision", str), ("reasons", str)]):
    import json
    from collections import namedtuple

    # no registry: nothing to compare with, the candidate is promoted (as the real stage decides);
    # a margin of 0.5 or more tolerates a loss of half the accuracy: the gate passes (the release-gate test)
    if not registry_uri or gate_margin >= 0.5:
        decision, reasons = "promote", "no production model yet: promoted"
    else:
        decision, reasons = "candidate", f"fake evaluate: margin {gate_margin}"
    open(report.path, "w").write(f"<html><body>{decision}</body></html>")
    open(evaluation.path, "w").write(json.dumps({"decision": decision, "reasons": [reasons], "slices": []}))
    metrics.log_metric("candidate_accuracy", 0.5)
    return namedtuple("Outputs", ["decision", "reasons"])(decision, reasons)


def failing_data(
    dataset: Output[Dataset],
    data_card: Output[Markdown],
    sample_grid: Output[Artifact],
    source: str = "",
    training_size: int = 10,
    validation_size: int = 5,
    production_size: int = 5,
    validation_part: str = "test",
    production_days: int = 7,
    window_days: int = 2,
    degraded_share: float = 0.5,
    seed: int = 0,
    hub_image_column: str = "image",
    hub_label_column: str = "label",
    hub_train_split: str = "train",
    hub_test_split: str = "test",
):
    """A data stage that logs 40 numbered lines, then fails."""
    for i in range(40):
        print(f"fake data log line {i}")
    raise ValueError("fake data stage failed on purpose")


FACTORIES = {
    stage: (lambda images, f=func, s=stage: build_component(f, s, images))
    for stage, func in {
        "data": data,
        "ingest": ingest,
        "train": train,
        "embed": embed,
        "prepare": prepare,
        "arize": arize,
        "drift": drift,
        "evaluate": evaluate,
    }.items()
}

FAILING_DATA = {"data": lambda images: build_component(failing_data, "data", images)}


def use_fake_stages(monkeypatch) -> None:
    """Build every pipeline from the stand-in stages (same signatures), plus any ``overrides``."""
    original = Stages.build.__func__

    def build(cls, images=None, overrides=None):
        return original(cls, images, {**FACTORIES, **(overrides or {})})

    monkeypatch.setattr(Stages, "build", classmethod(build))
