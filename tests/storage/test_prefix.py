"""Listing and downloading a folder (a prefix) with components.common.storage, on both emulators and on disk."""

from __future__ import annotations

import boto3
import numpy as np
import pytest

from components.common import storage
from components.common.storage import StorageConfig

FILES = {  # a data-stage folder's shape, nested, with a space in one name
    "dataset_dict.json": b'{"splits": ["production"]}',
    "production/state.json": b"{}",
    "production/dataset_info.json": b"{}",
    "production/data-00000-of-00001.arrow": np.random.default_rng(0).bytes(300_000),
    "production/extra dir/a b.bin": b"\x00\x01\x02",
}


@pytest.fixture
def gcs_config(gcs_endpoint) -> StorageConfig:
    return StorageConfig(gcs_endpoint=gcs_endpoint, connect_timeout=2, read_timeout=10, retries=1)


@pytest.fixture
def s3_config(s3_endpoint, fake_aws_credentials) -> StorageConfig:
    return StorageConfig(
        s3_endpoint=s3_endpoint, minio_endpoint=s3_endpoint, connect_timeout=2, read_timeout=10
    )


def _upload(root: str, config: StorageConfig, files=FILES) -> None:
    for rel, data in files.items():
        storage.write_bytes(storage.join(root, rel), data, config=config)


def _s3_bucket(endpoint: str, name: str) -> None:
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=name)


def _check_copy(dest, copied) -> None:
    assert sorted(copied.files) == sorted(FILES)
    assert copied.bytes == sum(len(v) for v in FILES.values())
    for rel, data in FILES.items():
        assert (dest / rel).read_bytes() == data
    assert not [p for p in dest.rglob(".*tmp*")]


@pytest.mark.parametrize("scheme", ["gs", "s3", "minio"])
def test_a_folder_is_listed_and_copied_byte_for_byte(scheme, gcs_config, s3_config, s3_endpoint, tmp_path):
    bucket = f"prefix-{scheme}"
    config = gcs_config if scheme == "gs" else s3_config
    if scheme == "gs":
        storage._gcs_client(config).create_bucket(bucket)
    else:
        _s3_bucket(s3_endpoint, bucket)
    _upload(f"{scheme}://{bucket}/batches/2026-11-24", config)
    _upload(
        f"{scheme}://{bucket}/batches/2026-11-240", config, {"other.bin": b"not mine"}
    )  # a sibling prefix

    for uri in (f"{scheme}://{bucket}/batches/2026-11-24", f"{scheme}://{bucket}/batches/2026-11-24/"):
        listed = {f.relative: f.size for f in storage.list_prefix(uri, config=config)}
        assert listed == {rel: len(data) for rel, data in FILES.items()}
    dest = tmp_path / "copy"
    _check_copy(
        dest, storage.download_prefix(f"{scheme}://{bucket}/batches/2026-11-24/", dest, config=config)
    )


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_listing_reads_every_page(scheme, gcs_config, s3_config, s3_endpoint, monkeypatch):
    """Pages of 2 objects: all 7 are listed (the listing follows the continuation tokens).

    moto honours the page size (4 requests here); gcp-storage-emulator ignores maxResults and
    answers in one page, so for gs:// this checks the listing, not the paging.
    """
    bucket = f"pages-{scheme}"
    config = gcs_config if scheme == "gs" else s3_config
    if scheme == "gs":
        storage._gcs_client(config).create_bucket(bucket)
    else:
        _s3_bucket(s3_endpoint, bucket)
    _upload(f"{scheme}://{bucket}/many", config, {f"f{i}.bin": bytes([i]) * (i + 1) for i in range(7)})
    monkeypatch.setattr(storage, "LIST_PAGE_SIZE", 2)
    listed = list(storage.list_prefix(f"{scheme}://{bucket}/many", config=config))
    assert [(f.relative, f.size) for f in listed] == [(f"f{i}.bin", i + 1) for i in range(7)]


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_missing_folder_lists_nothing(scheme, gcs_config, s3_config, s3_endpoint, tmp_path):
    bucket = f"empty-{scheme}"
    config = gcs_config if scheme == "gs" else s3_config
    if scheme == "gs":
        storage._gcs_client(config).create_bucket(bucket)
    else:
        _s3_bucket(s3_endpoint, bucket)
    assert list(storage.list_prefix(f"{scheme}://{bucket}/batches/2026-11-30", config=config)) == []
    copied = storage.download_prefix(f"{scheme}://{bucket}/batches/2026-11-30", tmp_path / "d", config=config)
    assert copied.files == () and copied.bytes == 0


@pytest.mark.parametrize("scheme", ["gs", "s3"])
def test_a_missing_bucket_names_the_uri(scheme, gcs_config, s3_config):
    config = gcs_config if scheme == "gs" else s3_config
    with pytest.raises(FileNotFoundError, match=f"{scheme}://no-such-bucket-x/b"):
        list(storage.list_prefix(f"{scheme}://no-such-bucket-x/b", config=config))


def test_a_local_folder_is_copied(tmp_path):
    src = tmp_path / "src"
    for rel, data in FILES.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    dest = tmp_path / "copy"
    _check_copy(dest, storage.download_prefix(str(src), dest))
    assert list(storage.list_prefix(str(tmp_path / "nothing"))) == []


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_an_unreachable_endpoint_fails_fast_naming_it(scheme, fake_aws_credentials):
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    config = StorageConfig(
        s3_endpoint=dead, gcs_endpoint=dead, connect_timeout=0.5, read_timeout=0.5, retries=0
    )
    started = time.monotonic()
    with pytest.raises(storage.StorageError, match=rf"listing {scheme}://b/p \(endpoint {dead}\) failed"):
        list(storage.list_prefix(f"{scheme}://b/p", config=config))
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("uri", ["gs://", "s3:///k", "ftp://b/k", "/local/path"])
def test_bad_folder_uris_are_refused(uri):
    with pytest.raises(ValueError, match="expected"):
        storage.split_prefix(uri)


def test_folder_uris_split_into_a_prefix():
    assert storage.split_prefix("gs://b") == ("gs", "b", "")
    assert storage.split_prefix("s3://b/a/b/") == ("s3", "b", "a/b/")
    assert storage.split_prefix("minio://mlpipeline/x") == ("minio", "mlpipeline", "x/")
