"""The ingest stage reading from both storage emulators: manifests in each format, a bucket prefix of images."""

from __future__ import annotations

from pathlib import Path

import boto3
import datasets
import pyarrow.parquet as pq
import pytest

from components.common import schema, storage
from components.common.schema import DatasetColumns as C
from components.common.storage import StorageConfig
from components.ingest.config import IngestConfig
from components.ingest.ingest import ingest_batch
from tests.ingest.conftest import BROKEN, GOOD, MAX_BYTES, make_batch, write_manifest


def _store(scheme: str, gcs_endpoint: str, s3_endpoint: str, bucket: str) -> StorageConfig:
    if scheme == "gs":
        config = StorageConfig(gcs_endpoint=gcs_endpoint, connect_timeout=2, read_timeout=10, retries=1)
        storage._gcs_client(config).create_bucket(bucket)
        return config
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return StorageConfig(
        s3_endpoint=s3_endpoint, minio_endpoint=s3_endpoint, connect_timeout=2, read_timeout=10
    )


def _upload(folder: Path, prefix: str, config: StorageConfig) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            storage.write_bytes(
                storage.join(prefix, path.relative_to(folder).as_posix()), path.read_bytes(), config=config
            )


@pytest.mark.parametrize(
    ("scheme", "fmt"), [("gs", "csv"), ("gs", "parquet"), ("s3", "jsonl"), ("minio", "csv")]
)
def test_a_manifest_in_a_bucket_with_broken_rows(
    scheme, fmt, gcs_endpoint, s3_endpoint, fake_aws_credentials, tmp_path
):
    bucket = f"ingest-{scheme}-{fmt}"
    config = _store(scheme, gcs_endpoint, s3_endpoint, bucket)
    rows = make_batch(tmp_path / "batch")
    prefix = f"{scheme}://{bucket}/batches/2026-11-24"
    rows[2]["image_uri"] = f"{prefix}/{rows[2]['image_uri']}"  # one absolute URI among the relative paths
    write_manifest(rows, tmp_path / "batch" / f"manifest.{fmt}", fmt)
    _upload(tmp_path / "batch", prefix, config)

    source = (
        prefix + "/" if fmt == "csv" else f"{prefix}/manifest.{fmt}"
    )  # a folder with manifest.csv, or the file
    result = ingest_batch(
        IngestConfig(source_uri=source, max_image_bytes=MAX_BYTES, read_workers=4, chunk_rows=7),
        tmp_path / "out",
        tmp_path / "rejected.parquet",
        storage_config=config,
        quiet=True,
    )
    assert (result.kind, result.rows_seen, result.rows_written) == ("manifest", GOOD + 9, GOOD)
    assert dict(result.rejected) == BROKEN
    split = datasets.load_from_disk(str(tmp_path / "out"))[schema.PRODUCTION]
    assert split[C.URL][:3] == [f"{prefix}/img/000.png", f"{prefix}/img/001.jpg", f"{prefix}/img/002.webp"]
    assert split[C.IMAGE_ID] == [f"pred-{i:03d}" for i in range(GOOD)]
    assert {img.mode for img in split[C.IMAGE]} == {"L"}
    missing = [
        r for r in pq.read_table(tmp_path / "rejected.parquet").to_pylist() if r["reason"] == "missing"
    ]
    assert [r["location"] for r in missing] == [f"{prefix}/img/not-there.png"]


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_bucket_prefix_of_images_takes_the_object_times(
    scheme, gcs_endpoint, s3_endpoint, fake_aws_credentials, tmp_path
):
    bucket = f"ingest-images-{scheme}"
    config = _store(scheme, gcs_endpoint, s3_endpoint, bucket)
    make_batch(tmp_path / "batch", good=8)
    _upload(tmp_path / "batch" / "img", f"{scheme}://{bucket}/day/1", config)
    storage.write_bytes(f"{scheme}://{bucket}/day/10/other.png", b"not this batch", config=config)
    result = ingest_batch(
        IngestConfig(source_uri=f"{scheme}://{bucket}/day/1", max_image_bytes=MAX_BYTES, read_workers=4),
        tmp_path / "out",
        tmp_path / "rejected.parquet",
        storage_config=config,
        quiet=True,
    )
    # 8 images + garbage.png, empty.png, huge.png (too large by its listed size, never downloaded)
    assert result.kind == "images" and "modification time" in result.time_source
    assert (result.rows_seen, result.rows_written) == (11, 8)
    assert dict(result.rejected) == {"unreadable": 1, "empty": 1, "too_large": 1}
    split = datasets.load_from_disk(str(tmp_path / "out"))[schema.PRODUCTION]
    assert all(ts.year >= 2026 for ts in split[C.PREDICTION_TS])
    assert split[C.URL][0] == f"{scheme}://{bucket}/day/1/000.png"


def test_a_data_stage_folder_in_a_bucket_is_copied(gcs_endpoint, s3_endpoint, tmp_path):
    config = _store("gs", gcs_endpoint, s3_endpoint, "ingest-dataset")
    make_batch(tmp_path / "b", good=3, broken=False)
    ingest_batch(
        IngestConfig(source_uri=str(tmp_path / "b" / "img"), time_fallback="now"),
        tmp_path / "first",
        tmp_path / "r.parquet",
        quiet=True,
    )
    _upload(tmp_path / "first", "gs://ingest-dataset/batch", config)
    result = ingest_batch(
        IngestConfig(source_uri="gs://ingest-dataset/batch"),
        tmp_path / "second",
        tmp_path / "r2.parquet",
        storage_config=config,
        quiet=True,
    )
    assert (result.kind, result.rows_written) == ("dataset", 3)
    assert datasets.load_from_disk(str(tmp_path / "second"))[schema.PRODUCTION].num_rows == 3
