"""The Hub mapping on small local ``datasets`` objects, and the real load_dataset path on a local folder."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from PIL import Image

from components.common import schema
from components.common.schema import DatasetColumns as C
from components.data.build import build_dataset
from components.data.config import DataConfig
from components.data.idx import read_idx_part
from components.data.sources import SourceError, hub_part, source_from_hub

# The class names as zalando-datasets/fashion_mnist spells them: same order, other spelling.
HUB_NAMES = ["T - shirt / top", *schema.CLASS_NAMES[1:]]


@pytest.fixture(scope="module")
def hub_like(fashion_dir) -> datasets.DatasetDict:
    """A small DatasetDict shaped like zalando-datasets/fashion_mnist (image + ClassLabel label)."""
    parts = {}
    for split, n in (("train", 120), ("test", 60)):
        p = read_idx_part(fashion_dir, split)
        parts[split] = datasets.Dataset.from_dict(
            {"image": [Image.fromarray(a) for a in p.images[:n]], "label": p.labels[:n].tolist()},
            features=datasets.Features(
                {"image": datasets.Image(), "label": datasets.ClassLabel(names=HUB_NAMES)}
            ),
        )
    return datasets.DatasetDict(parts)


def test_mapping(hub_like, fashion_dir):
    source = source_from_hub(hub_like, "zalando-like")
    idx = read_idx_part(fashion_dir, "test")
    assert source.test.images.shape == (60, 28, 28) and source.test.images.dtype == np.uint8
    np.testing.assert_array_equal(source.test.images, idx.images[:60])
    np.testing.assert_array_equal(source.test.labels, idx.labels[:60])
    assert source.train.index.tolist() == list(range(120))
    assert (source.train.name, source.test.name) == ("train", "test")
    assert "zalando-like" in source.description and source.train.rejected == []


def test_unusable_rows_are_kept_aside():
    grey = Image.fromarray(np.full((28, 28), 10, np.uint8))
    rgb = Image.fromarray(np.full((28, 28, 3), 200, np.uint8), mode="RGB")
    big = Image.fromarray(np.zeros((32, 32), np.uint8))
    split = datasets.Dataset.from_dict(
        {"img": [grey, rgb, big, grey, grey], "y": [0, 9, 3, 10, -1]},
        features=datasets.Features({"img": datasets.Image(), "y": datasets.Value("int64")}),
    )
    part = hub_part(split, "train", image_column="img", label_column="y")
    assert part.index.tolist() == [0, 1]
    assert part.images[1].tolist() == np.full((28, 28), 200, np.uint8).tolist()  # RGB made greyscale
    reasons = dict(part.rejected)
    assert reasons[2] == "image 32x32, expected 28x28"
    assert reasons[3] == "label 10 outside 0..9" and reasons[4] == "label -1 outside 0..9"


def test_missing_column(hub_like):
    with pytest.raises(
        SourceError, match=r"no column 'pixels'; expected an image column .*present: image, label"
    ):
        source_from_hub(hub_like, "x", image_column="pixels")


def test_missing_split(hub_like):
    with pytest.raises(SourceError, match=r"no split 'validation'; expected it among train, test"):
        source_from_hub(hub_like, "x", test_split="validation")


def test_wrong_number_of_classes():
    split = datasets.Dataset.from_dict(
        {"image": [Image.new("L", (28, 28))], "label": [0]},
        features=datasets.Features(
            {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])}
        ),
    )
    with pytest.raises(SourceError, match=r"column 'label' has 2 classes; expected 10"):
        source_from_hub(datasets.DatasetDict({"train": split, "test": split}), "two")


def test_build_through_load_dataset(hub_like, tmp_path):
    """``hf:<folder>``: datasets.load_dataset on a local Parquet folder laid out like a Hub repo."""
    repo = tmp_path / "repo"
    for split, ds in hub_like.items():
        (repo / "data").mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(repo / "data" / f"{split}-00000-of-00001.parquet"))
    config = DataConfig(
        source=f"hf:{repo}",
        training_size=80,
        validation_size=20,
        production_size=60,
        degraded_share=1.0,
        validation_part="train",  # the tiny test split holds production only
    )
    summary = build_dataset(config, tmp_path / "dataset", quiet=True)
    assert summary.rows == {schema.TRAINING: 80, schema.VALIDATION: 20, schema.PRODUCTION: 60}
    assert summary.source.startswith("Hugging Face Hub data set")
    dd = datasets.load_from_disk(str(tmp_path / "dataset"))
    assert tuple(dd[schema.PRODUCTION].features[C.LABEL].names) == schema.CLASS_NAMES
    assert all(i.startswith("test-") for i in dd[schema.PRODUCTION][C.IMAGE_ID])
    assert summary.degraded[schema.DEGRADATION_NONE] == 60 - 7 * 2  # 2 rows a day, 7 days, all degraded


def test_hub_too_small_for_the_sizes(hub_like, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", lambda name: hub_like)
    config = DataConfig(
        source="hf:zalando-datasets/fashion_mnist",
        training_size=100,
        validation_size=30,
        validation_part="train",
    )
    with pytest.raises(ValueError, match=r"larger than the 120 usable rows of the source.s train part"):
        build_dataset(config, tmp_path / "dataset")
    assert list(tmp_path.iterdir()) == []
