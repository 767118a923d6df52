"""Preprocessing (``components.common.preprocess``, shared with embed): shapes, geometry, batched == per image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor, ConvNextImageProcessor

from components.common.preprocess import (
    ImageGeometry,
    eval_transform,
    local_image_processor,
    pil_to_rgb_tensor,
    train_transform,
)
from components.train.train import collate


def grey_image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L")


def test_grey_becomes_rgb_with_equal_channels():
    t = pil_to_rgb_tensor(grey_image())
    assert t.shape == (3, 28, 28) and t.dtype == torch.uint8
    assert torch.equal(t[0], t[1]) and torch.equal(t[1], t[2])


def test_local_processor_round_trips_through_auto_image_processor(tmp_path):
    local_image_processor(32).save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(loaded, ConvNextImageProcessor)
    g = ImageGeometry.from_processor(loaded)
    assert (g.crop_size, g.resize_size) == (32, 32)
    assert g.mean == pytest.approx((0.286, 0.286, 0.286))


def test_resnet50_style_processor_geometry():
    # microsoft/resnet-50 ships shortest_edge 224 with crop_pct 0.875: resize to 256, crop 224.
    g = ImageGeometry.from_processor(ConvNextImageProcessor(size={"shortest_edge": 224}, crop_pct=0.875))
    assert (g.crop_size, g.resize_size) == (224, 256)
    out = eval_transform(g)(pil_to_rgb_tensor(grey_image()))
    assert out.shape == (3, 224, 224) and out.dtype == torch.float32


def test_processor_without_usable_size_is_rejected():
    class Odd:
        size = {"longest_edge": 10}
        image_mean = [0.5]
        image_std = [0.5]

    with pytest.raises(ValueError, match="shortest_edge"):
        ImageGeometry.from_processor(Odd())


def test_train_and_eval_shapes_and_normalisation():
    g = ImageGeometry.from_processor(local_image_processor(32))
    x = pil_to_rgb_tensor(grey_image(1))
    torch.manual_seed(0)
    tr = train_transform(g)(x)
    ev = eval_transform(g)(x)
    assert tr.shape == ev.shape == (3, 32, 32)
    # normalised with the processor's mean and std: a 0 pixel maps to -mean/std
    black = eval_transform(g)(torch.zeros(3, 28, 28, dtype=torch.uint8))
    assert torch.allclose(black, torch.full_like(black, -0.286 / 0.353))
    # augmentation changes the image, evaluation is deterministic
    assert not torch.allclose(tr, ev)
    assert torch.equal(ev, eval_transform(g)(x))


def test_batched_eval_equals_per_image():
    g = ImageGeometry.from_processor(local_image_processor(32))
    xs = torch.stack([pil_to_rgb_tensor(grey_image(s)) for s in range(5)])
    batched = eval_transform(g)(xs)
    single = torch.stack([eval_transform(g)(x) for x in xs])
    assert batched.shape == (5, 3, 32, 32)
    assert torch.allclose(batched, single, atol=1e-6)


def test_collate_stacks_pixel_values_and_labels():
    batch = collate([{"pixel_values": torch.zeros(3, 32, 32), "labels": i} for i in range(4)])
    assert batch["pixel_values"].shape == (4, 3, 32, 32)
    assert batch["labels"].tolist() == [0, 1, 2, 3] and batch["labels"].dtype == torch.long
