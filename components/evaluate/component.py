"""KFP wrapper of the evaluate stage: declares inputs and outputs, calls :func:`evaluate`."""

# No `from __future__ import annotations`: kfp reads the real annotation objects of the body.

from typing import NamedTuple

from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.common.config import component_doc, output_names
from components.common.images import ImageSet, build_component
from components.evaluate.config import EvaluateConfig

SUMMARY = (
    "The candidate model against the registry's production model on the same rows (validation and "
    "labelled production): accuracy per slice (class, degradation kind, brightness / contrast / "
    "sharpness bins, drifted or not) with confidence intervals, calibration (ECE, reliability "
    "diagram), a side-by-side HTML report, and the release gate: `decision` is promote or candidate, "
    "`reasons` says why (one sentence per rule)."
)
CONFIG = EvaluateConfig
ARTIFACTS = ("candidate", "dataset", "report", "metrics", "evaluation")
ARTIFACT_HELP = {
    "candidate": "the train stage's model folder (the model to evaluate)",
    "dataset": "the data stage's folder (validation and production splits)",
    "report": "self-contained HTML report: decision and reasons, slices side by side, reliability diagram",
    "metrics": "overall accuracy of both models, their difference and its interval, ECE, slices failed",
    "evaluation": "one JSON file: every slice with intervals, calibration bins, the decision and reasons",
    "decision": "promote (the gate passed, or there is no production model) or candidate",
    "reasons": "why, one sentence per rule of the gate, '; '-joined",
}


def evaluate(
    candidate: Input[Model],
    dataset: Input[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
    evaluation: Output[Dataset],
    registry_uri: str = "",
    registered_model: str = "fashion-mnist-classifier",
    drift_uri: str = "",
    drift_time_shift: str = "auto",
    eval_splits: str = "validation,production",
    eval_recent_days: int = 0,
    gate_margin: float = 0.01,
    gate_min_slice_rows: int = 200,
    require_better_on_drift: bool = True,
    gate_use_ci: bool = False,
    confidence_level: float = 0.95,
    calibration_bins: int = 15,
    feature_bins: int = 3,
    bootstrap_resamples: int = 2000,
    seed: int = 0,
    eval_batch_size: int = 256,
    allow_cpu: bool = False,
) -> NamedTuple("Outputs", [("decision", str), ("reasons", str)]):  # type: ignore[valid-type]  # the form KFP reads
    """Candidate against production per slice, calibration, HTML report, and the gate's decision and reasons."""
    from components.common.config import config_from
    from components.evaluate.config import EvaluateConfig
    from components.evaluate.evaluate import evaluate as run_evaluate

    config = config_from(EvaluateConfig, locals())
    result = run_evaluate(
        candidate.path, dataset.path, report.path, evaluation.path, config, candidate_uri=candidate.uri
    )
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    evaluation.metadata.update({"decision": result.decision, "slices": len(result.evaluation["slices"])})
    return (result.decision, result.reasons_text)


def component(images: ImageSet | None = None):
    """The evaluate stage as a lightweight KFP component (base image: the evaluate stage's image)."""
    return build_component(
        evaluate,
        "evaluate",
        images,
        doc=component_doc(SUMMARY, EvaluateConfig, ARTIFACT_HELP, output_names(evaluate)),
    )
