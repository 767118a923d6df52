"""The embed stage's GPU levers, checked on CPU: the model-side transform and the one-batch-in-flight loop.

On a GPU they change where work happens, never the values: here the model-side transform
(``transform_device='model'``) must give the embeddings of the decoder-side one exactly, also for
a batch of images of two sizes (decoded again and transformed on CPU), with decoding processes too.
"""

from __future__ import annotations

import io

import datasets
import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from components.common import schema
from components.common.schema import DatasetColumns as C
from components.common.schema import EmbedColumns as E
from components.embed.config import EmbedConfig
from components.embed.embed import embed_dataset

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)


def _embed(data, model_dir, out, **kw):
    config = EmbedConfig(splits="validation", embed_batch_size=16, threads=1, **kw)
    result = embed_dataset(data, model_dir, out, config, progress=False)
    return result, pq.read_table(out / schema.EMBED_FILE)


@pytest.mark.parametrize("workers", [0, 1])
def test_model_side_transform_gives_the_same_embeddings(embed_dataset_dir, model_dir, tmp_path, workers):
    _, cpu = _embed(embed_dataset_dir, model_dir, tmp_path / "cpu", transform_device="cpu")
    r, dev = _embed(
        embed_dataset_dir, model_dir, tmp_path / "dev", transform_device="model", decode_workers=workers
    )
    assert r.stats[0].embedded == 40
    assert dev.column(E.IMAGE_ID).to_pylist() == cpu.column(E.IMAGE_ID).to_pylist()
    for col in (E.EMBEDDING, E.PROBABILITIES, E.BRIGHTNESS, E.SHARPNESS):
        np.testing.assert_array_equal(
            np.stack(dev.column(col).to_numpy(zero_copy_only=False)),
            np.stack(cpu.column(col).to_numpy(zero_copy_only=False)),
        )


def _png(size: int, value: int) -> bytes:
    buf = io.BytesIO()
    img = np.full((size, size), value, dtype=np.uint8)
    img[size // 4 : 3 * size // 4, size // 3 :] = 255 - value
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def test_mixed_image_sizes_fall_back_to_the_decoder_transform(embed_dataset_dir, model_dir, tmp_path):
    dd = datasets.load_from_disk(str(embed_dataset_dir))
    val = dd[schema.VALIDATION]

    def resize(row, i):  # rows 3 and 20 become 40 x 40 images: two sizes in the first two batches
        if i in (3, 20):
            return {C.IMAGE: {"bytes": _png(40, 30 + i), "path": None}}
        return {C.IMAGE: row[C.IMAGE]}

    dd[schema.VALIDATION] = (
        val.cast_column(C.IMAGE, datasets.Image(decode=False))
        .map(resize, with_indices=True)
        .cast_column(C.IMAGE, datasets.Image())
    )
    dd.save_to_disk(str(tmp_path / "d"))
    _, cpu = _embed(tmp_path / "d", model_dir, tmp_path / "cpu", transform_device="cpu")
    _, dev = _embed(tmp_path / "d", model_dir, tmp_path / "dev", transform_device="model")
    assert dev.num_rows == 40
    np.testing.assert_array_equal(
        np.stack(dev.column(E.EMBEDDING).to_numpy(zero_copy_only=False)),
        np.stack(cpu.column(E.EMBEDDING).to_numpy(zero_copy_only=False)),
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"compile_mode": "fast"}, r"compile_mode 'fast': expected one of none, default, reduce-overhead"),
        ({"transform_device": "gpu"}, r"transform_device 'gpu': expected one of auto, cpu, model"),
    ],
)
def test_lever_parameter_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EmbedConfig(**kwargs)
