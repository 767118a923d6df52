"""Embed on production rows as the ingest stage writes them: no label yet (-1), served predictions carried."""

from __future__ import annotations

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from components.common import schema
from components.common.schema import DatasetColumns as C
from components.common.schema import EmbedColumns as E
from components.common.schema import ServedColumns as S
from components.embed.config import EmbedConfig
from components.embed.embed import embed_dataset, summary_markdown

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)

UNLABELLED = (3, 10, 50)
SERVED = 60  # production rows 0..59 carry a served prediction


def ingested_like(embed_dataset_dir, folder):
    """The embed test data set, its production split with -1 labels and the served columns added."""
    dd = datasets.load_from_disk(str(embed_dataset_dir))
    prod = dd[schema.PRODUCTION]
    n = len(prod)
    labels = [schema.NO_LABEL if i in UNLABELLED else v for i, v in enumerate(prod[C.LABEL])]
    prod = prod.remove_columns([C.LABEL]).add_column(C.LABEL, labels)
    prod = prod.cast_column(C.LABEL, datasets.ClassLabel(names=list(schema.CLASS_NAMES)))
    prod = prod.add_column(S.PREDICTION_ID, ["pid-0"] + [None] * (n - 1))
    prod = prod.add_column(S.SERVED_LABEL, [i % 10 if i < SERVED else None for i in range(n)])
    prod = prod.add_column(S.SERVED_SCORE, [0.25 if i < SERVED else None for i in range(n)])
    prod = prod.cast_column(S.SERVED_SCORE, datasets.Value("float32"))
    prod = prod.add_column("store", ["s"] * n)  # an extra manifest column: not carried
    dd[schema.PRODUCTION] = prod
    dd.save_to_disk(str(folder))
    return folder


def test_unlabelled_production_rows_and_served_columns_are_carried(embed_dataset_dir, model_dir, tmp_path):
    data = ingested_like(embed_dataset_dir, tmp_path / "d")
    config = EmbedConfig(splits="training,production", embed_batch_size=32, threads=1)
    result = embed_dataset(data, model_dir, tmp_path / "o", config, progress=False)
    table = pq.read_table(tmp_path / "o" / schema.EMBED_FILE)
    assert table.schema.equals(schema.EMBED_SERVED_ARROW_SCHEMA, check_metadata=False)
    assert E.SERVED == S.ALL  # the same names as the ingested split's
    train = table.filter(pc.equal(table.column(E.SPLIT), schema.TRAINING))
    prod = table.filter(pc.equal(table.column(E.SPLIT), schema.PRODUCTION))
    assert (train.num_rows, prod.num_rows) == (120, 90)
    for name in E.SERVED:  # a split without the columns: null
        assert train.column(name).null_count == 120
    labels = prod.column(E.LABEL).to_pylist()
    assert [i for i, v in enumerate(labels) if v == schema.NO_LABEL] == list(UNLABELLED)
    assert prod.column(E.GIVEN_PREDICTION_ID).to_pylist() == ["pid-0"] + [None] * 89
    assert prod.column(E.SERVED_LABEL).to_pylist() == [i % 10 if i < SERVED else None for i in range(90)]
    assert prod.column(E.SERVED_SCORE).to_pylist() == [0.25] * SERVED + [None] * 30
    assert "store" not in table.column_names
    stats = {s.split: s for s in result.stats}
    assert (stats["production"].unlabelled, stats["production"].served) == (3, 60)
    assert (stats["training"].unlabelled, stats["training"].served) == (0, 0)
    text = summary_markdown(result)
    assert "- production: 3 row(s) without a label yet (label -1), embedded" in text
    assert "- production: 60 row(s) with the serving system's prediction" in text

    # the model's outputs do not depend on the extra columns: the same as on the original folder
    plain = embed_dataset(
        embed_dataset_dir,
        model_dir,
        tmp_path / "p",
        EmbedConfig(splits="production", threads=1),
        progress=False,
    )
    assert plain.stats[0].unlabelled == 0
    base = pq.read_table(tmp_path / "p" / schema.EMBED_FILE)
    assert base.schema.equals(schema.EMBED_ARROW_SCHEMA, check_metadata=False)
    for name in (E.IMAGE_ID, E.PREDICTION, E.PREDICTION_SCORE, E.EMBEDDING):
        assert prod.column(name).equals(base.column(name))


def test_shards_with_served_columns_concatenate_to_the_whole(embed_dataset_dir, model_dir, tmp_path):
    data = ingested_like(embed_dataset_dir, tmp_path / "d")
    parts = []
    for i in range(2):
        config = EmbedConfig(splits="production", shard_index=i, num_shards=2, threads=1)
        embed_dataset(data, model_dir, tmp_path / f"o{i}", config, progress=False)
        parts.append(pq.read_table(tmp_path / f"o{i}" / schema.EMBED_FILE))
    whole = pa.concat_tables(parts)
    assert whole.column(E.SERVED_LABEL).to_pylist() == [i % 10 if i < SERVED else None for i in range(90)]
    assert whole.column(E.LABEL).to_pylist().count(schema.NO_LABEL) == 3


@pytest.mark.parametrize("split", [schema.TRAINING, schema.VALIDATION])
def test_no_label_outside_production_is_refused(embed_dataset_dir, model_dir, tmp_path, split):
    dd = datasets.load_from_disk(str(embed_dataset_dir))
    ds = dd[split].cast_column(C.LABEL, datasets.Value("int64"))
    dd[split] = ds.map(lambda r, i: {C.LABEL: -1 if i == 4 else r[C.LABEL]}, with_indices=True)
    dd.save_to_disk(str(tmp_path / "d"))
    with pytest.raises(
        ValueError,
        match=rf"split '{split}': 1 label\(s\) outside 0..9 \(row 4 = -1\); .*"
        r"-1 \(no label yet\) is allowed in production rows only",
    ):
        embed_dataset(tmp_path / "d", model_dir, tmp_path / "o", EmbedConfig(splits=split), progress=False)
    assert not (tmp_path / "o").exists()
