"""The data stage's parameters: :class:`DataConfig`, the single source of its command line and component.

Light on purpose (stdlib and ``components.common`` only): the pipelines read its defaults
(``DataConfig().training_size``) and ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from components.common.config import param
from components.common.files import parse_utc

DEFAULT_SOURCE_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
# Fixed, so that the output is reproducible; the prepare stage shifts times to "now".
DEFAULT_PRODUCTION_END = "2026-11-01T00:00:00Z"
CENTRED = -1  # window_start_day: the window is centred in production
# validation_part: the source part validation rows come from (the source's "train" or "test" part)
VALIDATION_PARTS = ("test", "train")


class ConfigError(ValueError):
    """A parameter of the data stage that is out of range."""


def _whole(value, at_least: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= at_least


@dataclass
class DataConfig:
    """Parameters of the data stage; every bad value raises :class:`ConfigError` naming it.

    The default sizes fit a CPU run of the whole pipeline in a few minutes.
    """

    source: str = param(
        DEFAULT_SOURCE_DIR,
        "folder of IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]) or hf:<name> "
        "for a Hugging Face Hub data set (e.g. hf:zalando-datasets/fashion_mnist)",
    )
    training_size: int = param(30_000, "rows of the training split (from the source's train part)")
    validation_size: int = param(3_000, "rows of the validation split (from the part validation_part names)")
    production_size: int = param(6_000, "rows of the production split (from the source's test part)")
    validation_part: str = param(
        "test",
        "part of the source the validation rows come from: 'test' (production's part, rows disjoint from "
        "production: train keeps the checkpoint that is best on production-like data, and the drift "
        "stage's calibration on validation rows then holds its false-alarm rate on clean production) or "
        "'train' (training's part: the harmless gap between the parts can raise false drift alarms)",
    )
    production_days: int = param(30, "days spanned by production")
    production_end: str = param(
        DEFAULT_PRODUCTION_END, "end of production, ISO 8601 (UTC); fixed so that the output is reproducible"
    )
    window_days: int = param(7, "length in days of the degraded window")
    window_start_day: int = param(
        CENTRED, "first day of the window, counted from the production start (-1: centred)"
    )
    degraded_share: float = param(0.5, "share of the window's rows that are degraded, in [0, 1]")
    rotation_min: float = param(20.0, "smallest rotation in degrees (either way)")
    rotation_max: float = param(60.0, "largest rotation in degrees (either way)")
    blur_min: float = param(1.0, "smallest Gaussian blur radius in pixels")
    blur_max: float = param(2.0, "largest Gaussian blur radius in pixels")
    seed: int = param(0, "random seed; the same seed gives byte-for-byte the same output")
    hub_image_column: str = param("image", "image column of a Hub source")
    hub_label_column: str = param("label", "label column of a Hub source (class indices 0..9)")
    hub_train_split: str = param("train", "split of a Hub source that gives training and validation")
    hub_test_split: str = param("test", "split of a Hub source that gives production")

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError(
                f"source='': expected a folder of IDX files (e.g. {DEFAULT_SOURCE_DIR}) or hf:<name>"
            )
        for name in ("training_size", "validation_size", "production_size", "production_days"):
            value = getattr(self, name)
            if not _whole(value, 1):
                raise ConfigError(f"{name}={value!r}: expected a whole number of at least 1")
        if self.production_size < self.production_days:
            raise ConfigError(
                f"production_size={self.production_size}: expected at least production_days="
                f"{self.production_days}, so that every production day has rows"
            )
        if self.validation_part not in VALIDATION_PARTS:
            raise ConfigError(
                f"validation_part={self.validation_part!r}: expected one of {', '.join(VALIDATION_PARTS)}"
            )
        try:
            self.end = parse_utc(self.production_end, "production_end", DEFAULT_PRODUCTION_END)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not _whole(self.window_days, 0):
            raise ConfigError(f"window_days={self.window_days!r}: expected a whole number of at least 0")
        if self.window_days > self.production_days:
            raise ConfigError(
                f"window_days={self.window_days}: the window is longer than the production span; "
                f"expected at most production_days={self.production_days}"
            )
        latest = self.production_days - self.window_days
        if self.window_start_day != CENTRED and not (
            _whole(self.window_start_day, 0) and self.window_start_day <= latest
        ):
            raise ConfigError(
                f"window_start_day={self.window_start_day!r}: expected 0..{latest} so that the "
                f"{self.window_days}-day window fits in the {self.production_days} production days"
            )
        if not isinstance(self.degraded_share, int | float) or not 0.0 <= self.degraded_share <= 1.0:
            raise ConfigError(f"degraded_share={self.degraded_share!r}: expected a share in [0, 1]")
        if not 0.0 <= self.rotation_min <= self.rotation_max <= 180.0:
            raise ConfigError(
                f"rotation_min={self.rotation_min}, rotation_max={self.rotation_max}: "
                "expected 0 <= rotation_min <= rotation_max <= 180 degrees"
            )
        if not 0.0 < self.blur_min <= self.blur_max:
            raise ConfigError(
                f"blur_min={self.blur_min}, blur_max={self.blur_max}: expected 0 < blur_min <= blur_max (pixels)"
            )
        if not _whole(self.seed, 0):
            raise ConfigError(f"seed={self.seed!r}: expected a whole number of at least 0")

    @property
    def start(self) -> datetime:
        """Start of production (``production_end`` minus ``production_days``), UTC."""
        return self.end - timedelta(days=self.production_days)

    @property
    def window_start(self) -> int:
        """First window day, counted from the production start (``window_start_day`` or centred)."""
        if self.window_start_day != CENTRED:
            return self.window_start_day
        return (self.production_days - self.window_days) // 2

    @property
    def window(self) -> tuple[datetime, datetime]:
        """The degraded window as [first, end) UTC times."""
        first = self.start + timedelta(days=self.window_start)
        return first, first + timedelta(days=self.window_days)

    def parameters(self) -> dict:
        """The parameters as the data card shows them (``window_start_day`` resolved)."""
        return {**asdict(self), "window_start_day": self.window_start}
