"""Drift augmentations: off by default, each changes a training image as stated, deterministic per seed,
chosen from a drift explanation with augment=auto, never applied to validation; extra labelled rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageFilter
from torchvision.transforms import v2

from components.common import augment as aug
from components.common import explanation, schema
from components.common.preprocess import (
    ImageGeometry,
    augmentation_transforms,
    local_image_processor,
    pil_to_rgb_tensor,
    train_transform,
)
from components.data.config import DataConfig
from components.train.config import TrainConfig

GEOMETRY = ImageGeometry.from_processor(local_image_processor(32))


def _item(seed: int = 0) -> np.ndarray:
    """A 28x28 greyscale 'garment': a bright asymmetric block with texture on black (like Fashion-MNIST)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), np.uint8)
    img[5:24, 8:18] = rng.integers(120, 250, (19, 10))
    img[5:10, 18:23] = 200
    return img


def _tensor(img: np.ndarray) -> torch.Tensor:
    return pil_to_rgb_tensor(Image.fromarray(img, mode="L"))


def _sharpness(t: torch.Tensor) -> float:
    """Mean absolute Laplacian (the data stage's sharpness feature is of this kind)."""
    x = t[0].to(torch.float32)
    lap = 4 * x[1:-1, 1:-1] - x[:-2, 1:-1] - x[2:, 1:-1] - x[1:-1, :-2] - x[1:-1, 2:]
    return float(lap.abs().mean())


def _only(name: str) -> torch.nn.Module:
    """The named augmentation's transform itself (its RandomApply's inner transform: always applied)."""
    (wrapper,) = augmentation_transforms([name])
    assert isinstance(wrapper, v2.RandomApply) and wrapper.p == aug.AUGMENT_PROBABILITY
    return wrapper.transforms[0]


def test_strengths_are_the_data_stages_degradation():
    data = DataConfig()
    assert aug.ROTATION_MAX_DEGREES == data.rotation_max >= data.rotation_min
    assert aug.BLUR_RADIUS == (data.blur_min, data.blur_max)


def test_off_by_default_and_parsed():
    assert TrainConfig().augment == "" and augmentation_transforms(()) == []
    default, explicit = train_transform(GEOMETRY), train_transform(GEOMETRY, 1.0, ())
    assert [type(t) for t in default.transforms] == [type(t) for t in explicit.transforms]
    assert not any(isinstance(t, v2.RandomApply) for t in default.transforms)
    x = _tensor(_item())
    torch.manual_seed(1)
    a = default(x)
    torch.manual_seed(1)
    assert torch.equal(a, explicit(x))
    assert aug.parse_augment(" Blur,rotation ,blur") == ("rotation", "blur")  # canonical order, no repeats
    assert TrainConfig(augment="noise,BRIGHTNESS").augment == "noise,brightness"
    with pytest.raises(ValueError, match="unknown augmentation.*shear.*rotation, blur, brightness, noise"):
        TrainConfig(augment="rotation,shear")
    with pytest.raises(ValueError, match="augment='auto' needs drift_uri"):
        TrainConfig(augment="auto")


def test_rotation_is_a_bilinear_black_fill_rotation_within_the_data_stages_range():
    img = _item()
    x = _tensor(img)
    rot = _only(aug.ROTATION)
    for seed in range(5):
        torch.manual_seed(seed)
        out = rot(x)
        assert out.dtype == torch.uint8 and out.shape == x.shape and not torch.equal(out, x)
        # the nearest of the data stage's rotations (PIL, bilinear, black fill) over -60..60 degrees
        errors = {
            a: float(np.abs(np.asarray(Image.fromarray(img, mode="L").rotate(a, Image.Resampling.BILINEAR,
                     fillcolor=0), np.float32) - out[0].numpy()).mean())
            for a in np.arange(-60.0, 60.5, 0.5)
        }  # fmt: skip
        best = min(errors, key=errors.get)
        assert errors[best] < 3.0, (seed, best, errors[best])  # grey levels of 255: the same image
        assert (
            float(np.abs(img.astype(np.float32) - out[0].numpy()).mean()) > 3 * errors[best] or abs(best) < 2
        )


def test_blur_matches_the_data_stages_blur_radius():
    img = _item()
    x = _tensor(img)
    pil = {r: _sharpness(_tensor(np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(r)))))
           for r in (0.8, 1.0, 2.0, 2.4)}  # fmt: skip
    blur = _only(aug.BLUR)
    seen = []
    for seed in range(8):
        torch.manual_seed(seed)
        out = blur(x)
        s = _sharpness(out)
        seen.append(s)
        assert pil[2.4] <= s <= pil[0.8], (s, pil)  # between PIL's blur of radius 1 and 2 (with a margin)
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])  # grey stays grey
    assert _sharpness(x) > 1.5 * max(seen)
    assert max(seen) - min(seen) > 0.05 * pil[1.0]  # the radius is drawn, not fixed


def test_brightness_and_noise():
    x = _tensor(_item())
    torch.manual_seed(0)
    factors = []
    for _ in range(20):
        out = _only(aug.BRIGHTNESS)(x).to(torch.float32)
        mask = (x[0] > 0) & (x[0] < 150)  # not clipped at 255 after scaling by up to 1.4
        factors.append(float(out[0][mask].sum() / x[0][mask].to(torch.float32).sum()))
    assert (
        min(factors) >= 1 - aug.BRIGHTNESS_FACTOR - 0.01 and max(factors) <= 1 + aug.BRIGHTNESS_FACTOR + 0.01
    )
    assert max(factors) - min(factors) > 0.3
    torch.manual_seed(0)
    noisy = _only(aug.NOISE)(x)
    diff = noisy.to(torch.float32) - x.to(torch.float32)
    interior = (x[0] > 40) & (x[0] < 215)  # not clipped
    assert abs(float(diff[0][interior].std()) / 255 - aug.NOISE_STD) < 0.01
    assert torch.equal(noisy[0], noisy[2])  # the same noise on every channel


def test_each_applied_to_about_half_the_images_and_deterministic_per_seed():
    x = _tensor(_item())
    tf = train_transform(GEOMETRY, 1.0, ("rotation", "blur"))

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [tf(x) for _ in range(50)]

    a, b, c = run(7), run(7), run(8)
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))  # same seed, same images
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    rot = augmentation_transforms(["rotation"])[0]
    torch.manual_seed(3)
    changed = sum(not torch.equal(rot(x), x) for _ in range(400))
    assert 160 <= changed <= 240  # p = 0.5, binomial(400): within 4 standard deviations


def _explanation(features: list[tuple[str, float, bool]], window: str = "2026-11-24") -> dict:
    return {
        "window": window,
        "sentence": "...",
        "features": [{"feature": f, "smd": s, "wasserstein": abs(s), "p_value": 1e-9, "named": n}
                     for f, s, n in features],
    }  # fmt: skip


def test_auto_maps_what_moved_to_augmentations():
    names, why = aug.augmentations_for(
        [_explanation([("sharpness", -1.2, True), ("brightness", -0.4, True), ("contrast", 0.1, False)])]
    )
    assert names == ("blur", "brightness")
    assert why[0].startswith("blur: sharpness fell (-1.20 sd) in 2026-11-24")
    assert aug.augmentations_for([_explanation([("sharpness", 0.9, True)])])[0] == ("noise",)
    assert aug.augmentations_for([_explanation([("contrast", -0.5, True)])])[0] == ("brightness",)
    # a contrast drop beside a sharpness drop is what blur does (the degraded week): blur alone
    both = [_explanation([("sharpness", -0.9, True), ("contrast", -0.4, True)])]
    assert aug.augmentations_for(both)[0] == ("blur",)
    assert aug.augmentations_for([_explanation([("sharpness", -0.9, True), ("contrast", 0.4, True)])])[0] == (
        "blur",
        "brightness",
    )
    # flagged, no feature named: the embeddings moved, the intensities did not -> a change of shape
    assert aug.augmentations_for([_explanation([("sharpness", -0.1, False)])])[0] == ("rotation",)
    assert aug.augmentations_for([])[0] == ()


def test_auto_reads_the_drift_tables_explanation(tmp_path):
    from components.drift.explain import Explanation, FeatureShift
    from components.drift.stage import write_drift_table

    table = pd.DataFrame({"window_start": pd.to_datetime(["2026-11-24"], utc=True), "flagged": [True]})
    shifts = [
        FeatureShift("sharpness", 10.0, 6.0, -1.5, 1.6, 0.5, 1e-12),  # named: large and significant
        FeatureShift("brightness", 0.3, 0.31, 0.05, 0.1, 0.05, 0.4),  # not named
    ]
    e = Explanation(window_start=pd.Timestamp("2026-11-24", tz="UTC"), label="2026-11-24", n_rows=300,
                    features=shifts, sentence="2026-11-24: sharpness fell by 1.5 baseline SDs.")  # fmt: skip
    path = tmp_path / "drift_table"
    write_drift_table(table, path, [e])
    assert pd.read_parquet(path)["flagged"].tolist() == [True]  # the table itself is unchanged
    windows = explanation.read_explanation(str(path))
    assert windows[0]["window"] == "2026-11-24"
    assert [(f["feature"], f["named"]) for f in windows[0]["features"]] == [
        ("sharpness", True),
        ("brightness", False),
    ]
    names, why = explanation.resolve_augment("auto", str(path))
    assert names == ("blur",) and "sharpness fell" in why[0]
    assert explanation.resolve_augment("auto", str(tmp_path))[0] == ("blur",)  # the folder holding it
    write_drift_table(table.assign(flagged=[False]), tmp_path / "quiet", [])
    assert explanation.resolve_augment("auto", str(tmp_path / "quiet"))[0] == ()
    with pytest.raises(FileNotFoundError, match="no drift table there"):
        explanation.resolve_augment("auto", str(tmp_path / "missing"))
    (tmp_path / "bad").write_text("not parquet")
    with pytest.raises(ValueError, match="not a Parquet drift table"):
        explanation.read_explanation(str(tmp_path / "bad"))


def _ingested_batch(small_dataset, path, labels: list[int]):
    """A data-stage folder like ingest writes: one production split, some rows without a label (-1)."""
    import datasets

    prod = datasets.load_from_disk(str(small_dataset))[schema.PRODUCTION].select(range(len(labels)))
    features = prod.features.copy()
    prod = prod.cast(features).map(lambda _, i: {schema.DatasetColumns.LABEL: labels[i]}, with_indices=True)
    datasets.DatasetDict({schema.PRODUCTION: prod}).save_to_disk(str(path))
    return path


def test_training_run_augments_training_only_and_takes_the_extra_labelled_rows(
    small_dataset, tmp_path, monkeypatch
):
    from components.train import train as train_mod

    batch = _ingested_batch(small_dataset, tmp_path / "batch", [1, -1, 3, -1, 5, 7])
    given = []
    real = train_mod._with_transforms

    def spy(ds, tf):
        given.append((len(ds), tf))
        return real(ds, tf)

    monkeypatch.setattr(train_mod, "_with_transforms", spy)
    cfg = TrainConfig(
        max_steps=2, batch_size=32, threads=1, augment="rotation,blur", extra_training_uri=str(batch)
    )
    result = train_mod.train_model(small_dataset, tmp_path / "model", cfg)
    (n_train, train_tf), (n_val, val_tf) = given
    assert (n_train, n_val) == (300 + 4, 100)  # 4 labelled rows joined; 2 without a label left out
    assert [type(t.transforms[0]) for t in train_tf.transforms[:2]] == [v2.RandomRotation, v2.GaussianBlur]
    assert not any(isinstance(t, v2.RandomApply) for t in val_tf.transforms)  # validation: never augmented
    s = result.summary
    assert s["augmentations"] == ["rotation", "blur"] and s["config"]["augment"] == "rotation,blur"
    assert s["extra_training"] == {
        "uri": str(batch),
        "labelled_rows": {schema.PRODUCTION: 4},
        "unlabelled_rows_left_out": 2,
    }
    assert s["metrics"]["train_rows"] == 304
