"""Image preprocessing shared by train and embed, derived from the model's image processor.

Hugging Face users expect the image processor saved with a model to say how images are sized
and normalised.  For ResNet, ``AutoImageProcessor`` loads a ``ConvNextImageProcessor``: images
are resized so the shortest edge is ``shortest_edge / crop_pct`` and centre-cropped to
``shortest_edge`` (for sizes under 384).  The same geometry is used here, with torchvision:

- training: optional drift augmentations (:func:`augmentation_transforms`: rotation, blur,
  brightness, noise; off by default), ``RandomResizedCrop(size)`` (a mild scale range suited to
  small, centred images), ``Normalize(mean, std)``;
- evaluation and embedding: ``Resize``, ``CenterCrop``, ``Normalize`` only.

The local profile's processor (:func:`local_image_processor`) is built here too: train saves it
next to the model and embed reads it back from the model folder.

Every transform works on uint8 tensors ``[..., 3, H, W]`` so the embed stage can run the
evaluation transform on a whole batch at once and get what the per-image path gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from PIL import Image
from torchvision.transforms import v2

if TYPE_CHECKING:
    from transformers import ConvNextImageProcessor

# Fashion-MNIST intensity statistics (greyscale copied to three channels).
FASHION_MEAN = (0.2860, 0.2860, 0.2860)
FASHION_STD = (0.3530, 0.3530, 0.3530)

# mean or std as image processors hold it: one value or one per channel
_MeanOrStd = float | list[float] | tuple[float, ...]


class _ImageProcessor(Protocol):
    """What :meth:`ImageGeometry.from_processor` reads of an image processor besides ``size``/``crop_*``."""

    @property
    def image_mean(self) -> _MeanOrStd: ...

    @property
    def image_std(self) -> _MeanOrStd: ...


@dataclass(frozen=True)
class ImageGeometry:
    """Crop size, resize size, mean and std read from an image processor."""

    crop_size: int
    resize_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_processor(cls, processor: _ImageProcessor) -> ImageGeometry:
        """The geometry of a Hugging Face image processor (``size``, ``crop_pct`` / ``crop_size``, mean, std)."""
        size = dict(getattr(processor, "size", None) or {})
        crop_pct = getattr(processor, "crop_pct", None)
        crop = getattr(processor, "crop_size", None)
        if "shortest_edge" in size:
            edge = int(size["shortest_edge"])
            if crop_pct and edge < 384:
                return cls(
                    edge, int(edge / crop_pct), _triple(processor.image_mean), _triple(processor.image_std)
                )
            return cls(edge, edge, _triple(processor.image_mean), _triple(processor.image_std))
        if "height" in size and "width" in size:
            edge = int(min(size["height"], size["width"]))
            if crop and "height" in dict(crop):
                return cls(
                    int(dict(crop)["height"]),
                    edge,
                    _triple(processor.image_mean),
                    _triple(processor.image_std),
                )
            return cls(edge, edge, _triple(processor.image_mean), _triple(processor.image_std))
        raise ValueError(
            f"image processor {type(processor).__name__}: size {size!r} has neither 'shortest_edge' nor "
            "'height'/'width'; save a processor with one of them next to the model"
        )


def _triple(values: _MeanOrStd) -> tuple[float, float, float]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError(f"image processor mean/std {values!r}: expected 1 or 3 values")
    return (values[0], values[1], values[2])


def local_image_processor(image_size: int = 32) -> ConvNextImageProcessor:
    """The processor saved with the locally built model: no crop margin, Fashion-MNIST statistics."""
    from transformers import ConvNextImageProcessor

    return ConvNextImageProcessor(
        size={"shortest_edge": image_size},
        crop_pct=1.0,
        image_mean=list(FASHION_MEAN),
        image_std=list(FASHION_STD),
        do_rescale=True,
        do_normalize=True,
    )


def pil_to_rgb_tensor(image: Image.Image) -> torch.Tensor:
    """Greyscale (or any mode) PIL image -> uint8 tensor [3, H, W]."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    tensor: torch.Tensor = v2.functional.pil_to_tensor(image)
    return tensor


def eval_transform(geometry: ImageGeometry) -> v2.Compose:
    """Resize, centre crop, normalise: uint8 [..., 3, H, W] -> float32 [..., 3, S, S]."""
    return v2.Compose(
        [
            v2.Resize(geometry.resize_size, antialias=True),
            v2.CenterCrop(geometry.crop_size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(geometry.mean, geometry.std),
        ]
    )


class AddGaussianNoise(torch.nn.Module):
    """Gaussian noise on a uint8 image ``[..., C, H, W]``, the same on every channel (grey stays grey)."""

    def __init__(self, std: float) -> None:
        """``std``: the noise's standard deviation as a share of the full range (255)."""
        super().__init__()
        self.std = float(std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """The image plus noise, rounded and clipped to 0..255 (uint8 kept)."""
        noise = torch.randn(image.shape[:-3] + (1,) + image.shape[-2:]) * (self.std * 255.0)
        return (image.to(torch.float32) + noise).round().clamp(0, 255).to(torch.uint8)


def augmentation_transforms(names: Sequence[str]) -> list[torch.nn.Module]:
    """The transforms of the named augmentations (:mod:`components.common.augment`), for uint8 images.

    Applied on the image's own pixel grid, before the resize, so the strengths are those of the
    data stage's degraded production: rotation up to ``ROTATION_MAX_DEGREES`` either way (bilinear,
    black fill), Gaussian blur of sigma ``BLUR_RADIUS`` pixels, brightness factor within
    ``1 +- BRIGHTNESS_FACTOR``, noise of ``NOISE_STD``. Each is applied with probability
    ``AUGMENT_PROBABILITY``, independently. Draws use torch's random state (seeded per run and per
    data-loader worker), so a run is deterministic per seed.
    """
    from components.common import augment as aug

    p = aug.AUGMENT_PROBABILITY
    radius_max = aug.BLUR_RADIUS[1]
    make: dict[str, Callable[[], torch.nn.Module]] = {
        aug.ROTATION: lambda: v2.RandomRotation(
            aug.ROTATION_MAX_DEGREES, interpolation=v2.InterpolationMode.BILINEAR, fill=0
        ),
        # kernel +-3 sigma of the largest radius: PIL's GaussianBlur(radius) is a Gaussian of sigma=radius
        aug.BLUR: lambda: v2.GaussianBlur(2 * math.ceil(3 * radius_max) + 1, sigma=aug.BLUR_RADIUS),
        aug.BRIGHTNESS: lambda: v2.ColorJitter(brightness=aug.BRIGHTNESS_FACTOR),
        aug.NOISE: lambda: AddGaussianNoise(aug.NOISE_STD),
    }
    unknown = [n for n in names if n not in make]
    if unknown:
        raise ValueError(f"augmentations {unknown}: expected some of {', '.join(aug.AUGMENTATIONS)}")
    return [v2.RandomApply([make[n]()], p=p) for n in aug.AUGMENTATIONS if n in names]


def train_transform(
    geometry: ImageGeometry, min_scale: float = 1.0, augmentations: Sequence[str] = ()
) -> v2.Compose:
    """Augmentation: the named drift augmentations (none by default), random resized crop, flip, normalise.

    Fashion-MNIST items are centred and small: on the local profile the crop keeps the whole image
    (``min_scale=1``) and only jitters the aspect ratio; at 1 epoch that gave validation accuracy
    0.884 against 0.874 with ``min_scale=0.8``. ``augmentations``: names of
    :data:`components.common.augment.AUGMENTATIONS` (:func:`augmentation_transforms`), applied first.
    """
    return v2.Compose(
        [
            *augmentation_transforms(augmentations),
            v2.RandomResizedCrop(
                geometry.crop_size, scale=(min_scale, 1.0), ratio=(0.85, 1.18), antialias=True
            ),
            v2.RandomHorizontalFlip(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(geometry.mean, geometry.std),
        ]
    )
