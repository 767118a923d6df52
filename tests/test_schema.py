import pyarrow as pa
import pytest

from components.common import schema


def test_arrow_schemas_follow_the_column_lists():
    assert tuple(schema.EMBED_ARROW_SCHEMA.names) == schema.EmbedColumns.ALL
    assert tuple(schema.PREPARED_ARROW_SCHEMA.names) == schema.PreparedColumns.ALL


def test_vectors_are_float32_lists_and_timestamps_utc():
    for s, col in ((schema.EMBED_ARROW_SCHEMA, "embedding"), (schema.PREPARED_ARROW_SCHEMA, "image_vector")):
        assert s.field(col).type == pa.list_(pa.float32())
        assert s.field("prediction_ts").type == pa.timestamp("us", tz="UTC")


def test_ten_class_names_and_three_splits():
    assert len(schema.CLASS_NAMES) == 10 and len(set(schema.CLASS_NAMES)) == 10
    assert schema.SPLITS == ("training", "validation", "production")


def test_require_columns_names_every_missing_column():
    with pytest.raises(ValueError, match=r"embeddings.parquet: missing column\(s\) split, embedding"):
        schema.require_columns(
            ["image_id", "label"], ("image_id", "split", "embedding"), "embeddings.parquet"
        )


def test_prepared_file_rejects_unknown_environment():
    assert schema.prepared_file("production") == "production.parquet"
    with pytest.raises(ValueError, match="unknown environment 'staging'"):
        schema.prepared_file("staging")
