"""Small pipeline helpers that belong to no stage: the shard list of the embed fan-out, and the alert.

Both are lightweight components like the stages (``build_component``): the shard list runs in
the prepare image (slim, no GPU), the alert gate and the alert in the drift image.
"""

from typing import List  # noqa: UP035 - KFP reads this annotation

from kfp.dsl import HTML, Input, Markdown, Metrics, Output
from kfp.dsl.python_component import PythonComponent

from components.common.images import ImageSet, build_component

ALERT_FILE_TITLE = "Embedding drift alert"


def shard_indices(num_shards: int) -> List[int]:  # noqa: UP006 - KFP reads this annotation
    """0..num_shards-1, the items of the embed ParallelFor."""
    if num_shards < 1:
        raise ValueError(f"num_shards={num_shards}: expected 1 or more")
    return list(range(num_shards))


def alert_gate(alert: bool) -> bool:
    """The drift alert as a single output, the value ``dsl.If`` tests.

    kfp.local 2.17 cannot resolve a condition on a *named* output of a NamedTuple (``drift-alert``
    is read as a pipeline input), but resolves ``<task>-Output``: this gate lets the alert branch run
    locally as on a cluster.
    """
    print(f"drift alert: {alert}")
    return alert


def drift_alert(report: Input[HTML], metrics: Input[Metrics], notice: Output[Markdown]):
    """Runs only when drift raised its alert: writes a notice that links the report and fails loudly in the log."""
    import json
    import os

    values = dict(getattr(metrics, "metadata", {}) or {})
    lines = [
        "# Embedding drift alert",
        "",
        f"The drift stage raised its alert. Report: `{report.uri}`",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(values.items())),
        "",
    ]
    tmp = notice.path + ".tmp"
    os.makedirs(os.path.dirname(notice.path) or ".", exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    os.replace(tmp, notice.path)
    print(f"ALERT: embedding drift; report {report.uri}; metrics {json.dumps(values, sort_keys=True)}")


def shard_indices_component(images: ImageSet | None = None) -> PythonComponent:
    """The KFP component of the shard list (runs in the prepare image)."""
    return build_component(shard_indices, "prepare", images)


def alert_gate_component(images: ImageSet | None = None) -> PythonComponent:
    """The KFP component of the alert gate (runs in the drift image)."""
    return build_component(alert_gate, "drift", images)


def drift_alert_component(images: ImageSet | None = None) -> PythonComponent:
    """The KFP component of the alert notice (runs in the drift image)."""
    return build_component(drift_alert, "drift", images)
