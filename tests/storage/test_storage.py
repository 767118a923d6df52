"""components.common.storage against real emulators on loopback (GCS and S3) and the local disk."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest

from components.common import storage
from components.common.storage import StorageConfig, StorageError


def _payload(seed: int, size: int = 50_000) -> bytes:
    # Random bytes, not text: any re-encoding on the way would show in the comparison.
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


@pytest.fixture
def gcs_config(gcs_endpoint) -> StorageConfig:
    return StorageConfig(gcs_endpoint=gcs_endpoint, connect_timeout=2, read_timeout=10, retries=1)


@pytest.fixture
def s3_config(s3_endpoint, fake_aws_credentials) -> StorageConfig:
    return StorageConfig(
        s3_endpoint=s3_endpoint, minio_endpoint=s3_endpoint, connect_timeout=2, read_timeout=10
    )


def test_gcs_upload_reads_back_byte_for_byte(gcs_config, gcs_endpoint):
    storage._gcs_client(gcs_config).create_bucket("images-gcs")
    data = _payload(1)
    link = storage.write_bytes("gs://images-gcs/run 1/img-0001.png", data, "image/png", config=gcs_config)

    assert link == f"{gcs_endpoint}/images-gcs/run%201/img-0001.png"
    assert storage.read_bytes(link, config=gcs_config) == data
    assert storage.read_bytes("gs://images-gcs/run 1/img-0001.png", config=gcs_config) == data
    # The link is a real URL: a plain HTTP GET (what Arize does with a public link) returns the bytes.
    with urllib.request.urlopen(link, timeout=5) as response:
        assert response.read() == data
    blob = storage._gcs_client(gcs_config).bucket("images-gcs").get_blob("run 1/img-0001.png")
    assert blob.content_type == "image/png"
    assert blob.size == len(data)


def test_gcs_missing_object_names_the_uri(gcs_config):
    storage._gcs_client(gcs_config).create_bucket("images-gcs-missing")
    with pytest.raises(FileNotFoundError, match="gs://images-gcs-missing/nope.png"):
        storage.read_bytes("gs://images-gcs-missing/nope.png", config=gcs_config)


def test_s3_upload_reads_back_byte_for_byte(s3_config, s3_endpoint):
    import boto3

    independent = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    independent.create_bucket(Bucket="mlpipeline")
    data = _payload(2)
    link = storage.write_bytes("s3://mlpipeline/images/a.png", data, "image/png", config=s3_config)

    assert link == f"{s3_endpoint}/mlpipeline/images/a.png"
    assert storage.read_bytes(link, config=s3_config) == data
    assert storage.read_bytes("s3://mlpipeline/images/a.png", config=s3_config) == data
    # Read with a client that shares nothing with the module under test.
    obj = independent.get_object(Bucket="mlpipeline", Key="images/a.png")
    assert obj["Body"].read() == data
    assert obj["ContentType"] == "image/png"


def test_minio_scheme_uses_the_s3_api(s3_config, s3_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="minio-bucket")
    data = _payload(3, 1000)
    link = storage.write_bytes("minio://minio-bucket/x/y.bin", data, config=s3_config)
    assert link == f"{s3_endpoint}/minio-bucket/x/y.bin"
    assert storage.read_bytes("minio://minio-bucket/x/y.bin", config=s3_config) == data
    assert storage.read_bytes("s3://minio-bucket/x/y.bin", config=s3_config) == data


def test_s3_missing_object_names_the_uri(s3_config, s3_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="empty")
    with pytest.raises(FileNotFoundError, match="s3://empty/none.png"):
        storage.read_bytes("s3://empty/none.png", config=s3_config)


def test_uri_links_are_returned_as_written(s3_config, s3_endpoint):
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="uri-links")
    config = StorageConfig(s3_endpoint=s3_endpoint, links="uri", connect_timeout=2, read_timeout=10)
    assert storage.write_bytes("s3://uri-links/k.bin", b"\x00\x01", config=config) == "s3://uri-links/k.bin"
    assert storage.read_bytes("s3://uri-links/k.bin", config=config) == b"\x00\x01"


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_unreachable_endpoint_fails_fast_with_the_endpoint_named(scheme, fake_aws_credentials):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    config = StorageConfig(
        s3_endpoint=dead, gcs_endpoint=dead, connect_timeout=0.5, read_timeout=0.5, retries=0
    )
    started = time.monotonic()
    with pytest.raises(StorageError, match=rf"writing {scheme}://b/k.bin \(endpoint {dead}\) failed"):
        storage.write_bytes(f"{scheme}://b/k.bin", b"x", config=config)
    assert time.monotonic() - started < 15


def test_local_round_trip(tmp_path):
    data = _payload(4, 100)
    link = storage.write_bytes(str(tmp_path / "a" / "b.png"), data)
    assert link == str(tmp_path / "a" / "b.png")
    assert storage.read_bytes(link) == data
    assert not list((tmp_path / "a").glob(".*tmp*"))


def test_local_missing_file():
    with pytest.raises(FileNotFoundError, match="/nonexistent/x.png"):
        storage.read_bytes("/nonexistent/x.png")


@pytest.mark.parametrize(
    "uri,config,link",
    [
        ("gs://b/k/x.png", StorageConfig(), "https://storage.googleapis.com/b/k/x.png"),
        ("s3://b/k/x.png", StorageConfig(), "https://b.s3.amazonaws.com/k/x.png"),
        ("s3://b/k.png", StorageConfig(s3_endpoint="http://seaweed:8333/"), "http://seaweed:8333/b/k.png"),
        ("minio://mlpipeline/k.png", StorageConfig(), "http://seaweedfs.kubeflow:9000/mlpipeline/k.png"),
        ("gs://b/k.png", StorageConfig(links="uri"), "gs://b/k.png"),
    ],
)
def test_links_map_both_ways(uri, config, link):
    assert storage.link_for(uri, config) == link
    back = storage.uri_from_link(link, config)
    assert back.split("://", 1)[1] == uri.split("://", 1)[1]


@pytest.mark.parametrize("uri", ["gs://bucket-only", "s3://b/", "s3:///k", "ftp://b/k"])
def test_bad_uris_are_refused(uri):
    with pytest.raises(ValueError, match="expected"):
        storage.split_uri(uri)


def test_unknown_link_is_refused():
    with pytest.raises(ValueError, match="not a link this store wrote"):
        storage.uri_from_link("https://example.com/x.png", StorageConfig())


def test_config_is_read_from_the_environment_at_call_time(monkeypatch):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:9023")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://seaweedfs:8333")
    config = StorageConfig.from_env()
    assert config.gcs_endpoint == "http://localhost:9023"
    assert config.s3_endpoint == "http://seaweedfs:8333"
    assert StorageConfig.from_env({}).gcs_endpoint is None


@pytest.mark.parametrize(
    "kwargs", [{"links": "html"}, {"connect_timeout": 0}, {"retries": -1}, {"s3_endpoint": "seaweed:8333"}]
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        StorageConfig(**kwargs)


def test_parallel_uploads_from_threads(gcs_config, s3_config, s3_endpoint):
    """prepare uploads images from a thread pool: every object arrives intact."""
    from concurrent.futures import ThreadPoolExecutor

    import boto3

    storage._gcs_client(gcs_config).create_bucket("threads-gs")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="threads-s3")
    jobs = [
        (f"{scheme}://threads-{scheme}/img-{i:03d}.png", _payload(100 + i, 2000))
        for scheme in ("gs", "s3")
        for i in range(12)
    ]

    def upload(job):
        uri, data = job
        config = gcs_config if uri.startswith("gs") else s3_config
        return storage.write_bytes(uri, data, "image/png", config=config)

    with ThreadPoolExecutor(4) as pool:
        links = list(pool.map(upload, jobs))
    for (uri, data), link in zip(jobs, links, strict=True):
        config = gcs_config if uri.startswith("gs") else s3_config
        assert storage.read_bytes(link, config=config) == data
