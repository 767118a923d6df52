"""The degradation schedule, reproducibility, the column contract, the card and grid, atomic writes."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime

import datasets
import numpy as np
import pyarrow as pa
import pytest

from components.common import schema
from components.common.schema import DatasetColumns as C
from components.data.build import build_dataset, degrade, make_splits
from components.data.config import DataConfig
from components.data.sources import load_source

from .conftest import TINY, hash_tree

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def real_source(fashion_dir):
    return load_source(str(fashion_dir))


def sharpness(img: np.ndarray) -> float:
    x = img.astype(float)
    lap = x[1:-1, :-2] + x[1:-1, 2:] + x[:-2, 1:-1] + x[2:, 1:-1] - 4 * x[1:-1, 1:-1]
    return float(lap.var())


def test_only_the_window_is_degraded_and_share_matches(real_source, fashion_dir):
    config = DataConfig(
        source=str(fashion_dir), training_size=100, validation_size=20, production_size=3000, seed=11
    )
    assert config.window_start == 11  # centred: 11 clean days, 7 degraded, 12 clean
    splits = make_splits(config, real_source)
    prod = splits[schema.PRODUCTION]
    ts = prod.seconds
    kinds = np.asarray(prod.degradation)
    w0, w1 = (t.timestamp() for t in config.window)
    inside = (ts >= w0) & (ts < w1)
    degraded = kinds != schema.DEGRADATION_NONE

    assert inside.sum() == 7 * 100  # 3000 rows over 30 days: 100 per day
    assert not degraded[~inside].any(), "a degraded row outside the window"
    assert degraded[inside].sum() == round(0.5 * inside.sum())
    # Seed 11 draws these 350 rows: per window day (the share is 0.5 over the window, not per day) ...
    day = (ts - config.start.timestamp()) // 86400
    assert [int(degraded[day == d].sum()) for d in range(11, 18)] == [47, 55, 53, 43, 50, 53, 49]
    # ... and per kind (drawn uniformly).
    assert {k: int((kinds == k).sum()) for k in schema.DEGRADATIONS} == {
        schema.DEGRADATION_NONE: 2650,
        schema.DEGRADATION_ROTATE: 116,
        schema.DEGRADATION_BLUR: 112,
        schema.DEGRADATION_BOTH: 122,
    }
    # Training and validation are clean and stamped before production.
    for name in (schema.TRAINING, schema.VALIDATION):
        assert set(splits[name].degradation) == {schema.DEGRADATION_NONE}
        assert splits[name].seconds.max() < config.start.timestamp()
    assert config.start.timestamp() <= ts.min() and ts.max() < config.end.timestamp()
    assert np.all(np.diff(ts) >= 0)


def test_degraded_images_differ_from_their_source(real_source, fashion_dir):
    config = DataConfig(source=str(fashion_dir), seed=5, **TINY)
    prod = make_splits(config, real_source)[schema.PRODUCTION]
    test_images = real_source.test.images
    changed = 0
    for img, image_id, kind in zip(prod.images, prod.image_ids, prod.degradation, strict=True):
        original = test_images[int(image_id.split("-")[1])]
        same = np.array_equal(img, original)
        assert same == (kind == schema.DEGRADATION_NONE), (image_id, kind)
        changed += not same
    assert changed == 35  # 70 rows in the 7-day window (10 a day), half of them degraded


def test_degrade_rotates_and_blurs():
    img = np.zeros((28, 28), np.uint8)
    img[4:24, 12:16] = 255  # a vertical bar
    rotated = degrade(img, schema.DEGRADATION_ROTATE, 45.0, 1.0)
    assert rotated[4:24, 12:16].mean() < 200  # the bar moved
    assert sharpness(degrade(img, schema.DEGRADATION_BLUR, 0.0, 1.5)) < 0.2 * sharpness(img)
    assert degrade(img, schema.DEGRADATION_NONE, 45.0, 1.0) is img


def test_no_window_no_share(real_source, fashion_dir):
    for kw in (dict(window_days=0), dict(degraded_share=0.0)):
        config = DataConfig(source=str(fashion_dir), seed=1, **TINY, **kw)
        prod = make_splits(config, real_source)[schema.PRODUCTION]
        assert set(prod.degradation) == {schema.DEGRADATION_NONE}


def test_window_start_is_configurable(real_source, fashion_dir):
    config = DataConfig(source=str(fashion_dir), seed=1, window_start_day=0, degraded_share=1.0, **TINY)
    prod = make_splits(config, real_source)[schema.PRODUCTION]
    day = (prod.seconds - config.start.timestamp()) // 86400
    degraded = np.asarray(prod.degradation) != schema.DEGRADATION_NONE
    assert degraded[day < 7].all() and not degraded[day >= 7].any()


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, fashion_dir):
    hashes = []
    for run, seed in (("a", 4), ("b", 4), ("c", 5)):
        root = tmp_path / run
        config = DataConfig(source=str(fashion_dir), seed=seed, **TINY)
        build_dataset(config, root / "dataset", root / "card.md", root / "grid.png", quiet=True)
        hashes.append(hash_tree(root))
    assert len(hashes[0]) >= 11  # 3 splits x (arrow, info, state) + dataset_dict.json + card + grid
    assert hashes[0] == hashes[1]
    assert (
        hashes[0]["dataset/production/data-00000-of-00001.arrow"]
        != (hashes[2]["dataset/production/data-00000-of-00001.arrow"])
    )


def test_column_contract(tiny_built):
    summary, out, _, _ = tiny_built
    dd = datasets.load_from_disk(str(out))
    assert list(dd) == list(schema.SPLITS)
    for name in schema.SPLITS:
        split = dd[name]
        assert tuple(split.column_names) == C.ALL
        assert len(split) == TINY[f"{name}_size"] == summary.rows[name]
        feats = split.features
        assert isinstance(feats[C.IMAGE], datasets.Image)
        assert isinstance(feats[C.LABEL], datasets.ClassLabel)
        assert tuple(feats[C.LABEL].names) == schema.CLASS_NAMES
        table = split.data.table
        assert table.schema.field(C.PREDICTION_TS).type == schema.TIMESTAMP_TYPE
        for col in (C.IMAGE_ID, C.URL, C.DEGRADATION):
            assert table.schema.field(col).type == pa.string()
        assert set(split[C.URL]) == {""}
        assert set(split[C.DEGRADATION]) <= set(schema.DEGRADATIONS)
        row = split[0]
        assert row[C.IMAGE].size == (28, 28) and row[C.IMAGE].mode == "L"
        assert row[C.PREDICTION_TS].tzinfo is not None
    ids = [i for name in schema.SPLITS for i in dd[name][C.IMAGE_ID]]
    assert len(ids) == len(set(ids)), "image_id must be unique across splits"
    assert all(re.fullmatch(r"(train|test)-\d{5}", i) for i in ids)
    assert all(i.startswith("test-") for i in dd[schema.PRODUCTION][C.IMAGE_ID])
    assert all(i.startswith("train-") for i in dd[schema.TRAINING][C.IMAGE_ID])
    # validation comes from production's part by default, never the same image as a production row
    assert all(i.startswith("test-") for i in dd[schema.VALIDATION][C.IMAGE_ID])
    production_ts = dd[schema.PRODUCTION][C.PREDICTION_TS]
    assert max(production_ts) < datetime(2026, 11, 1, tzinfo=UTC)
    assert min(production_ts) >= datetime(2026, 10, 2, tzinfo=UTC)


def test_card_and_grid(tiny_built):
    summary, _, card_path, grid_path = tiny_built
    grid = grid_path.read_bytes()
    assert grid.startswith(PNG_MAGIC)
    card = card_path.read_text()
    for heading in ("Rows per split", "Rows per degradation", "Rows per class", "Production rows per day"):
        assert f"## {heading}" in card
    assert "| production | 300 |" in card
    assert f"| 2026-10-02 | 10 | {summary.per_day[0][schema.DEGRADATION_NONE]} |" in card
    inlined = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", card)
    assert inlined and base64.b64decode(inlined.group(1)) == grid
    assert summary.degraded == {  # seed 3: 35 of the window's 70 rows
        schema.DEGRADATION_NONE: 265,
        schema.DEGRADATION_ROTATE: 6,
        schema.DEGRADATION_BLUR: 11,
        schema.DEGRADATION_BOTH: 18,
    }
    assert "| rotate+blur | 18 |" in card


def test_summary_line(tiny_built, capsys, tmp_path, tiny_config):
    build_dataset(tiny_config, tmp_path / "ds")
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("data: training=200 validation=40 production=300; production degraded ")
    assert str(tmp_path / "ds") in line


def test_failed_write_leaves_nothing(tmp_path, tiny_config, monkeypatch):
    def broken(self, path, **kwargs):
        (tmp_path.joinpath(path) / "training").mkdir(parents=True)
        raise OSError("disk full")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", broken)
    with pytest.raises(OSError, match="disk full"):
        build_dataset(tiny_config, tmp_path / "out" / "dataset", tmp_path / "out" / "card.md", quiet=True)
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_source_leaves_nothing(tmp_path, tiny_config):
    tiny_config.source = str(tmp_path / "missing")
    with pytest.raises(ValueError, match="missing: source folder not found"):
        build_dataset(tiny_config, tmp_path / "dataset", tmp_path / "card.md", tmp_path / "grid.png")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_unless_overwrite(tmp_path, tiny_config):
    out = tmp_path / "dataset"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(FileExistsError, match="dataset: already exists"):
        build_dataset(tiny_config, out, quiet=True)
    assert (out / "keep").exists()
    build_dataset(tiny_config, out, overwrite=True, quiet=True)
    assert not (out / "keep").exists() and (out / "dataset_dict.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


@pytest.mark.parametrize("part", ["test", "train"])
def test_validation_part_picks_the_source_part_and_never_overlaps(part, real_source, fashion_dir):
    """Validation from production's part is disjoint from production; training and production stay the same."""
    config = DataConfig(
        source=str(fashion_dir),
        training_size=500,
        validation_size=300,
        production_size=9000,
        validation_part=part,
        seed=3,
    )
    splits = make_splits(config, real_source)
    ids = {name: set(rows.image_ids) for name, rows in splits.items()}
    assert all(i.startswith(f"{part}-") for i in ids[schema.VALIDATION])
    assert len(ids[schema.VALIDATION]) == 300
    assert not ids[schema.VALIDATION] & ids[schema.PRODUCTION]
    assert not ids[schema.VALIDATION] & ids[schema.TRAINING]
    assert set(splits[schema.VALIDATION].degradation) == {schema.DEGRADATION_NONE}
    other = make_splits(
        DataConfig(**{**config.parameters(), "validation_part": "train" if part == "test" else "test"}),
        real_source,
    )
    # the choice moves validation only: the same training and production images
    assert set(other[schema.TRAINING].image_ids) == ids[schema.TRAINING]
    assert set(other[schema.PRODUCTION].image_ids) == ids[schema.PRODUCTION]
