"""The components the pipelines are built from, as typed attributes of :class:`Stages`.

Each stage's ``components/<stage>/component.py`` defines ``component(images)``; the helper
components that belong to no stage come from ``components.common.helpers``. Tests replace stages
with stand-ins of the same signatures through ``overrides``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from kfp.dsl.python_component import PythonComponent

from components.common import helpers
from components.common.images import STAGES, ImageSet

ComponentFactory = Callable[[ImageSet | None], PythonComponent]
"""What builds one component for an :class:`ImageSet`: a stage's ``component`` function."""

HELPER_FACTORIES: dict[str, ComponentFactory] = {
    body.__name__: functools.partial(helpers.helper_component, body) for body in helpers.HELPER_STAGES
}


def _stage_factory(stage: str) -> ComponentFactory:
    try:
        module = importlib.import_module(f"components.{stage}.component")
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            f"components/{stage}/component.py is missing ({exc}); every stage must define "
            f"component(images) before the pipelines can be built"
        ) from exc
    return module.component


@dataclass(frozen=True)
class Stages:
    """Every component of the pipelines, built for one :class:`ImageSet`."""

    data: PythonComponent
    ingest: PythonComponent  # the monitoring run's production batch, as it arrives -> data-stage layout
    train: PythonComponent
    embed: PythonComponent
    prepare: PythonComponent
    arize: PythonComponent
    drift: PythonComponent
    evaluate: PythonComponent  # candidate against production per slice, and the release gate
    resolve_batch: PythonComponent  # which batch the monitoring run reads: {date} filled (ingest image)
    shard_indices: PythonComponent  # the embed fan-out's list (prepare image)
    alert_gate: PythonComponent  # drift's alert as the single output dsl.If tests (drift image)
    drift_alert: PythonComponent  # the notice written when drift raised its alert (drift image)
    notify_drift: PythonComponent  # the webhook message sent when drift raised its alert
    status_gate: PythonComponent  # drift's status as the single output dsl.If tests (drift image)
    insufficient_data: PythonComponent  # the notice written when drift could test no window (drift image)
    register_model: PythonComponent  # records the trained model in the model registry (ingest image)
    resolve_model: PythonComponent  # monitoring: a model folder, or <name>@production (ingest image)
    decision_gate: PythonComponent  # evaluate's decision as the single output dsl.If tests (drift image)
    start_retraining: (
        PythonComponent  # monitoring: a confirmed alert starts the training pipeline (ingest image)
    )

    @classmethod
    def build(
        cls, images: ImageSet | None = None, overrides: Mapping[str, ComponentFactory] | None = None
    ) -> Stages:
        """Every component built for ``images``; ``overrides`` replaces some by name (tests)."""
        overrides = dict(overrides or {})
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise TypeError(f"unknown stage(s) {', '.join(unknown)}; expected some of {', '.join(names)}")
        images = images or ImageSet()
        built = {}
        for name in names:
            factory = overrides.get(name)
            if factory is None:
                factory = _stage_factory(name) if name in STAGES else HELPER_FACTORIES[name]
            built[name] = factory(images)
        return cls(**built)
