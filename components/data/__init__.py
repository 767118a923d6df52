"""The data stage: Fashion-MNIST splits with a window of degraded production images.

``from components.data import DataConfig, build_dataset`` (loaded on first use, so that
importing ``components.data.component`` stays light).
"""

from __future__ import annotations

__all__ = ["DataConfig", "DataSummary", "build_dataset"]


def __getattr__(name: str):
    """``DataConfig`` from the light ``config`` module, the rest from ``build`` (loaded on first use)."""
    if name == "DataConfig":
        from components.data.config import DataConfig

        return DataConfig
    if name in __all__:
        from components.data import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
