"""Container image references, one per stage, and the lightweight-component factory.

The registry and tag are chosen when the pipeline is compiled (``pipeline.py
compile --registry ... --tag ...``) and passed down as an :class:`ImageSet`.
Nothing here reads the environment: a value read at import time would be baked
silently into the compiled YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components import __version__

if TYPE_CHECKING:
    from kfp.dsl.python_component import PythonComponent

STAGES: tuple[str, ...] = ("data", "ingest", "train", "embed", "prepare", "arize", "drift", "evaluate")
DEFAULT_REGISTRY = "ghcr.io/fashion-drift"
IMAGE_PREFIX = "fashion-drift-"


@dataclass(frozen=True)
class ImageSet:
    """Where the stage images live: ``{registry}/fashion-drift-{stage}:{tag}``."""

    registry: str = DEFAULT_REGISTRY
    tag: str = __version__

    def __post_init__(self) -> None:
        if not self.registry or self.registry.endswith("/"):
            raise ValueError(f"registry {self.registry!r}: give a host/path without a trailing '/'")
        if not self.tag or ":" in self.tag or "/" in self.tag:
            raise ValueError(f"tag {self.tag!r}: give a plain tag such as {__version__!r}")

    def ref(self, stage: str) -> str:
        """The image reference of ``stage``: ``{registry}/fashion-drift-{stage}:{tag}``."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
        return f"{self.registry}/{IMAGE_PREFIX}{stage}:{self.tag}"


def build_component(
    func: Callable[..., Any], stage: str, images: ImageSet | None = None, doc: str | None = None
) -> PythonComponent:
    """Turn a stage's component body into a KFP lightweight component.

    The body must import its stage function inside itself (the image has the
    ``components`` package installed), so there is nothing to pip-install at run
    time: ``install_kfp_package=False`` and no ``packages_to_install``. ``doc``
    (``config.component_doc``) becomes the docstring KFP reads for the inputs' help.
    """
    from kfp import dsl

    if doc is not None:
        func.__doc__ = doc

    return dsl.component(
        func,
        base_image=(images or ImageSet()).ref(stage),
        install_kfp_package=False,
    )
