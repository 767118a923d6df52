"""Training augmentations that match what drifted: their names, strengths, and the choice from a drift explanation.

Light on purpose (stdlib only at import time): train's ``config.py`` validates ``augment`` with
:func:`parse_augment`. The transforms themselves are in :mod:`components.common.preprocess`.

The strengths follow the data stage's degraded production (``components/data/build.py``):
rotation by up to :data:`ROTATION_MAX_DEGREES` either way (bilinear, black fill: the data stage's
``rotation_max``), Gaussian blur of radius :data:`BLUR_RADIUS` pixels on the image's own grid (its
``blur_min`` .. ``blur_max``). Each chosen augmentation is applied to a training image with
probability :data:`AUGMENT_PROBABILITY`, independently, so a quarter of the images of a
rotation+blur run stay clean (as in the degraded week: rotate, blur or both).

``augment="auto"`` reads the drift stage's explanation of its flagged windows (written into the
drift table's Parquet metadata under :data:`EXPLANATION_KEY`) and maps the features that moved to
augmentations (:func:`augmentations_for`):

- sharpness fell -> ``blur``; sharpness rose -> ``noise``;
- brightness or contrast moved -> ``brightness`` (not a contrast drop beside a sharpness drop in
  the same window: blur lowers contrast too, and ``blur`` covers it);
- windows flagged but no image feature named -> ``rotation`` (the embeddings moved while the
  intensity statistics did not: a change of shape, which the features cannot see).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

ROTATION = "rotation"
BLUR = "blur"
BRIGHTNESS = "brightness"
NOISE = "noise"
AUGMENTATIONS = (ROTATION, BLUR, BRIGHTNESS, NOISE)
AUTO = "auto"

ROTATION_MAX_DEGREES = 60.0  # data stage's rotation_max (its rotation_min, 20, is covered too)
BLUR_RADIUS = (1.0, 2.0)  # data stage's blur_min, blur_max: Gaussian sigma in pixels of the source image
BRIGHTNESS_FACTOR = 0.4  # intensities scaled by a factor in [0.6, 1.4]
NOISE_STD = 0.05  # Gaussian noise, as a share of the full intensity range
AUGMENT_PROBABILITY = 0.5  # each chosen augmentation, independently per image

EXPLANATION_KEY = "drift_explanation"  # key of the drift table's Parquet metadata (JSON)
EXPLANATION_VERSION = 1


def parse_augment(text: str) -> tuple[str, ...]:
    """The augmentations named in a comma list, in :data:`AUGMENTATIONS` order; ``""`` = none.

    ``auto`` is not a list: resolve it with :func:`resolve_augment`. Unknown names raise a
    ValueError that lists the known ones.
    """
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise ValueError(
            f"augment={text!r}: unknown augmentation(s) {', '.join(unknown)}; expected a comma list of "
            f"{', '.join(AUGMENTATIONS)}, '{AUTO}' (chosen from the drift explanation at drift_uri) or ''"
        )
    return tuple(a for a in AUGMENTATIONS if a in names)


def check_augment(augment: str, drift_uri: str) -> None:
    """A ValueError when ``augment`` is neither ``auto`` nor a valid list, or ``auto`` has no ``drift_uri``."""
    if augment.strip().lower() == AUTO:
        if not drift_uri:
            raise ValueError(
                f"augment={AUTO!r} needs drift_uri: the drift table (the drift stage's drift_table output, "
                "a Parquet file) whose explanation chooses the augmentations; or name them, e.g. "
                "augment='rotation,blur'"
            )
        return
    parse_augment(augment)


def augmentations_for(explanation: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, ...], list[str]]:
    """The augmentations matching a drift explanation, and why each was chosen.

    ``explanation``: one entry per flagged window, ``{"window": ..., "features": [{"feature",
    "smd", "named"}, ...]}`` (what the drift stage writes). Only features the explanation *named*
    (significant and large enough: ``components.drift.explain.named_features``) count.
    """
    chosen: dict[str, list[str]] = {}
    for window in explanation:
        label = str(window.get("window", "?"))
        named = [f for f in window.get("features") or [] if f.get("named")]
        blurred = any(f.get("feature") == "sharpness" and float(f.get("smd", 0.0)) < 0 for f in named)
        for f in named:
            feature, smd = str(f.get("feature", "")), float(f.get("smd", 0.0))
            words = f"{feature} {'rose' if smd >= 0 else 'fell'} ({smd:+.2f} sd) in {label}"
            if feature == "sharpness":
                chosen.setdefault(BLUR if smd < 0 else NOISE, []).append(words)
            elif feature == "brightness" or (feature == "contrast" and not (blurred and smd < 0)):
                # a contrast drop beside a sharpness drop is what blur does: blur covers it
                chosen.setdefault(BRIGHTNESS, []).append(words)
        if not named:
            chosen.setdefault(ROTATION, []).append(
                f"{label}: the embeddings moved but no image feature did (a change of shape)"
            )
    names = tuple(a for a in AUGMENTATIONS if a in chosen)
    return names, [f"{a}: {'; '.join(chosen[a])}" for a in names]


def explanation_json(explanation: Sequence[Mapping[str, Any]]) -> str:
    """The JSON the drift stage stores under :data:`EXPLANATION_KEY` (versioned)."""
    return json.dumps({"version": EXPLANATION_VERSION, "windows": list(explanation)}, allow_nan=False)
