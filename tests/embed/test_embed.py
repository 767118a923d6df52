"""The embed stage: values against a plain forward pass, order, shards, failures, bad input."""

from __future__ import annotations

import io
import json
import shutil

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from transformers import AutoModelForImageClassification

from components.common import schema
from components.common.preprocess import (
    ImageGeometry,
    eval_transform,
    local_image_processor,
    pil_to_rgb_tensor,
)
from components.common.schema import DatasetColumns as C
from components.common.schema import EmbedColumns as E
from components.embed.config import EmbedConfig
from components.embed.embed import FAILURES_SCHEMA, embed_dataset, image_features, summary_markdown

# torchvision 0.29 announces on every decode that its decoders move to TorchCodec (see embed.py)
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)


@pytest.fixture(scope="module")
def full_run(embed_dataset_dir, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed-out") / "embeddings"
    # a batch size that does not divide the splits, so the last batch is short
    result = embed_dataset(
        embed_dataset_dir, model_dir, out, EmbedConfig(embed_batch_size=32, threads=1), progress=False
    )
    return result, pq.read_table(out / schema.EMBED_FILE)


def test_output_contract(full_run, model_dir):
    result, table = full_run
    assert table.schema.equals(schema.EMBED_ARROW_SCHEMA, check_metadata=False)
    assert table.num_rows == 120 + 40 + 90 == result.rows
    assert pq.read_table(result.output_dir / schema.EMBED_FAILURES_FILE).num_rows == 0
    version = json.loads((model_dir / "training_summary.json").read_text())["model_version"]
    assert set(table.column(E.MODEL_VERSION).to_pylist()) == {version}
    emb = np.asarray(table.column(E.EMBEDDING).to_pylist(), dtype=np.float32)
    assert emb.shape == (250, 256)  # hidden size of the local ResNet's last stage
    probs = np.asarray(table.column(E.PROBABILITIES).to_pylist())
    assert probs.shape == (250, 10)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(axis=1), table.column(E.PREDICTION).to_numpy())
    assert np.allclose(probs.max(axis=1), table.column(E.PREDICTION_SCORE).to_numpy(), atol=1e-6)
    # no temporary sibling left behind
    assert sorted(p.name for p in result.output_dir.parent.iterdir()) == ["embeddings"]


def test_order_ids_and_carried_columns(full_run, embed_dataset_dir):
    _, table = full_run
    dd = datasets.load_from_disk(str(embed_dataset_dir))
    start = 0
    for split in schema.SPLITS:
        ds = dd[split]
        part = table.slice(start, len(ds))
        start += len(ds)
        assert set(part.column(E.SPLIT).to_pylist()) == {split}
        assert part.column(E.IMAGE_ID).to_pylist() == ds[C.IMAGE_ID]
        assert part.column(E.LABEL).to_pylist() == ds[C.LABEL]
        assert part.column(E.DEGRADATION).to_pylist() == ds[C.DEGRADATION]
        assert part.column(E.PREDICTION_TS).to_pylist() == ds.data.column(C.PREDICTION_TS).to_pylist()
    degraded = table.filter(table.column(E.SPLIT).to_numpy(zero_copy_only=False) == schema.PRODUCTION)
    assert set(degraded.column(E.DEGRADATION).to_pylist()) - {schema.DEGRADATION_NONE}  # some degraded rows


def test_embedding_is_mean_of_last_hidden_state(full_run, embed_dataset_dir, model_dir):
    """Against the plain transformers API: PIL decode, per-image transform, all hidden states."""
    _, table = full_run
    ds = datasets.load_from_disk(str(embed_dataset_dir))[schema.VALIDATION]
    model = AutoModelForImageClassification.from_pretrained(model_dir).eval()
    geometry = ImageGeometry.from_processor(local_image_processor(32))
    rows = [0, 7, 39]
    pixels = torch.stack([eval_transform(geometry)(pil_to_rgb_tensor(ds[i][C.IMAGE])) for i in rows])
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
    expected = out.hidden_states[-1].mean(dim=(2, 3)).numpy()
    expected_probs = torch.softmax(out.logits, -1).numpy()
    val = table.filter(table.column(E.SPLIT).to_numpy(zero_copy_only=False) == schema.VALIDATION)
    got = np.asarray([val.column(E.EMBEDDING)[i].as_py() for i in rows], dtype=np.float32)
    got_probs = np.asarray([val.column(E.PROBABILITIES)[i].as_py() for i in rows], dtype=np.float32)
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-5)
    assert np.allclose(got_probs, expected_probs, atol=1e-5)


def test_image_features_by_hand():
    flat = torch.full((1, 6, 6), 128, dtype=torch.uint8)
    half = torch.zeros((1, 6, 6), dtype=torch.uint8)
    half[0, :, 3:] = 255
    b, c, s = image_features(torch.cat([flat, half]))
    assert b[0] == pytest.approx(128 / 255) and c[0] == pytest.approx(0.0) and s[0] == pytest.approx(0.0)
    assert b[1] == pytest.approx(0.5) and c[1] == pytest.approx(0.5)
    # Laplacian of a vertical edge: columns 2 and 3 of the 4x4 valid area are +1 and -1, others 0
    assert s[1] == pytest.approx(0.5)


def test_features_follow_blur(full_run):
    _, table = full_run
    prod = table.filter(table.column(E.SPLIT).to_numpy(zero_copy_only=False) == schema.PRODUCTION)
    kinds = np.asarray(prod.column(E.DEGRADATION).to_pylist())
    sharp = prod.column(E.SHARPNESS).to_numpy()
    blurred = np.isin(kinds, [schema.DEGRADATION_BLUR, schema.DEGRADATION_BOTH])
    assert blurred.any() and (kinds == schema.DEGRADATION_NONE).any()
    assert sharp[blurred].mean() < sharp[kinds == schema.DEGRADATION_NONE].mean()


def test_shards_are_contiguous_slices(full_run, embed_dataset_dir, model_dir, tmp_path):
    _, table = full_run
    parts = []
    for i in range(3):
        r = embed_dataset(
            embed_dataset_dir,
            model_dir,
            tmp_path / f"s{i}",
            EmbedConfig(
                splits="production",
                shard_index=i,
                num_shards=3,
                embed_batch_size=16,
                threads=1,
                decode_workers=i % 2,  # shard 1 is decoded by a worker process, the others by a thread
            ),
            progress=False,
        )
        parts.append(pq.read_table(r.output_dir / schema.EMBED_FILE))
    ids = sum((p.column(E.IMAGE_ID).to_pylist() for p in parts), [])
    prod = table.filter(table.column(E.SPLIT).to_numpy(zero_copy_only=False) == schema.PRODUCTION)
    assert [p.num_rows for p in parts] == [30, 30, 30]
    assert ids == prod.column(E.IMAGE_ID).to_pylist()
    got = np.concatenate([np.asarray(p.column(E.EMBEDDING).to_pylist()) for p in parts])
    assert np.allclose(got, np.asarray(prod.column(E.EMBEDDING).to_pylist()), atol=1e-5)


def _broken_image_set(src, dst, bad_rows):
    dd = datasets.load_from_disk(str(src))
    val = dd[schema.VALIDATION].cast_column(C.IMAGE, datasets.Image(decode=False))

    def spoil(row, i):
        if i in bad_rows:
            return {
                C.IMAGE: {
                    "bytes": b"this is not an image" if i % 2 else b"\x89PNG\r\n\x1a\ntruncated",
                    "path": None,
                }
            }
        return {C.IMAGE: row[C.IMAGE]}

    dd[schema.VALIDATION] = val.map(spoil, with_indices=True).cast_column(C.IMAGE, datasets.Image())
    dd.save_to_disk(str(dst))
    return dst


def test_undecodable_images_are_listed_not_fatal(embed_dataset_dir, model_dir, tmp_path):
    data = _broken_image_set(embed_dataset_dir, tmp_path / "data", {3, 4, 33})
    ids = datasets.load_from_disk(str(data))[schema.VALIDATION][C.IMAGE_ID]
    out = tmp_path / "out"
    config = EmbedConfig(splits="validation", embed_batch_size=16, threads=1)
    r = embed_dataset(data, model_dir, out, config, progress=False)
    table = pq.read_table(out / schema.EMBED_FILE)
    failures = pq.read_table(out / schema.EMBED_FAILURES_FILE)
    assert failures.schema.equals(FAILURES_SCHEMA, check_metadata=False)
    assert failures.column("row").to_pylist() == [3, 4, 33]
    assert failures.column("image_id").to_pylist() == [ids[3], ids[4], ids[33]]
    assert all(e for e in failures.column("error").to_pylist())
    assert table.column(E.IMAGE_ID).to_pylist() == [x for i, x in enumerate(ids) if i not in {3, 4, 33}]
    assert r.stats[0].failed == 3 and r.stats[0].embedded == 37
    md = summary_markdown(r)
    assert "did not decode (3)" in md and ids[33] in md


@pytest.mark.parametrize("shards", [None, 1])  # datasets writes no file for 0 rows unless told 1 shard
def test_empty_split(embed_dataset_dir, model_dir, tmp_path, shards):
    dd = datasets.load_from_disk(str(embed_dataset_dir))
    dd[schema.PRODUCTION] = dd[schema.PRODUCTION].select([])
    dd.save_to_disk(str(tmp_path / "d"), num_shards={k: 1 for k in dd} if shards else None)
    with pytest.raises(ValueError, match="split 'production' is empty"):
        embed_dataset(tmp_path / "d", model_dir, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("column", [C.IMAGE, C.LABEL])
def test_dataset_without_column(embed_dataset_dir, model_dir, tmp_path, column):
    dd = datasets.load_from_disk(str(embed_dataset_dir))
    datasets.DatasetDict({k: v.remove_columns(column) for k, v in dd.items()}).save_to_disk(
        str(tmp_path / "d")
    )
    with pytest.raises(ValueError, match=rf"split 'training'.*missing column\(s\) {column}"):
        embed_dataset(tmp_path / "d", model_dir, tmp_path / "o", progress=False)


def test_labels_out_of_range(embed_dataset_dir, model_dir, tmp_path):
    dd = datasets.load_from_disk(str(embed_dataset_dir))
    prod = dd[schema.PRODUCTION].cast_column(C.LABEL, datasets.Value("int64"))
    dd[schema.PRODUCTION] = prod.map(lambda r, i: {C.LABEL: -3 if i == 5 else r[C.LABEL]}, with_indices=True)
    dd.save_to_disk(str(tmp_path / "d"))
    with pytest.raises(ValueError, match=r"split 'production'.*\(row 5 = -3\)"):
        embed_dataset(
            tmp_path / "d", model_dir, tmp_path / "o", EmbedConfig(splits="production"), progress=False
        )


@pytest.mark.parametrize(
    "remove, message",
    [
        ("model.safetensors", "weights"),
        ("preprocessor_config.json", "image processor"),
        ("config.json", "config"),
    ],
)
def test_incomplete_model_folder(embed_dataset_dir, model_dir, tmp_path, remove, message):
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / remove).unlink()
    with pytest.raises(ValueError, match=rf"model folder .*model: missing .*{message}"):
        embed_dataset(embed_dataset_dir, broken, tmp_path / "o", progress=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"splits": "training,holdout"}, r"splits: unknown holdout; expected names from training"),
        ({"splits": ""}, r"splits '': name at least one of training, validation, production"),
        ({"splits": "training,training"}, r"splits 'training,training': a split is named twice"),
        ({"shard_index": 2, "num_shards": 2}, r"shard_index 2: expected 0\.\.1 for num_shards=2"),
        ({"num_shards": 0}, r"num_shards 0: expected at least 1"),
        ({"embed_batch_size": 0}, r"embed_batch_size 0: expected at least 1"),
        ({"threads": -1}, r"threads -1: give 0"),
        ({"precision": "fp8"}, r"precision 'fp8': expected one of auto, fp32, bf16, fp16"),
        ({"decode_workers": -2}, r"decode_workers -2: give -1"),
    ],
)
def test_parameter_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EmbedConfig(**kwargs)


def test_config_splits_in_order():
    assert EmbedConfig().split_names == list(schema.SPLITS)
    assert EmbedConfig(splits=" production, training ").split_names == [schema.PRODUCTION, schema.TRAINING]


def test_pil_and_torchvision_decode_agree(embed_dataset_dir):
    """The stage decodes with torchvision; users and the seed decode with PIL: same pixels."""
    from torchvision.io import ImageReadMode, decode_image

    ds = datasets.load_from_disk(str(embed_dataset_dir))[schema.PRODUCTION].cast_column(
        C.IMAGE, datasets.Image(decode=False)
    )
    for i in (0, 1, 2):
        raw = ds[i][C.IMAGE]["bytes"]
        tv = decode_image(torch.frombuffer(bytearray(raw), dtype=torch.uint8), mode=ImageReadMode.RGB)
        pil = pil_to_rgb_tensor(Image.open(io.BytesIO(raw)))
        assert torch.equal(tv, pil)


def test_command_line(embed_dataset_dir, model_dir, tmp_path, capsys):
    from components.embed.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--embed-batch-size" in capsys.readouterr().out
    args = ["--dataset", str(embed_dataset_dir), "--model", str(model_dir), "--output", str(tmp_path / "o")]
    assert main([*args, "--splits", "validation", "--summary", str(tmp_path / "s.md"), "--threads", "1"]) == 0
    assert pq.read_table(tmp_path / "o" / schema.EMBED_FILE).num_rows == 40
    assert "| validation | 40 | 40 | 0 |" in (tmp_path / "s.md").read_text()
    assert "embed: 40 rows embedded" in capsys.readouterr().out
