"""Prepare's image links Arize can open: signed (GCS, S3, MinIO), public base URL, plain, URI.

The signed links are fetched with a plain HTTP GET through the gate that checks signature and expiry
(:mod:`tests.storage.signed_gate`; the emulators check neither), against both emulators.
"""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import boto3
import pyarrow.parquet as pq
import pytest
from PIL import Image

from components.common import schema, storage
from components.common.files import MANIFEST_FILE
from components.common.schema import PreparedColumns as P
from components.prepare.config import PrepareConfig
from components.prepare.prepare import prepare_records
from tests.fixtures import prepare_inputs
from tests.prepare.conftest import COUNTS
from tests.storage import conftest as storage_fixtures
from tests.storage.signed_gate import SignedGate

# The emulators, the service-account key and the breaker reset of tests/storage, as fixtures here.
gcs_endpoint = storage_fixtures.gcs_endpoint
s3_endpoint = storage_fixtures.s3_endpoint
fake_aws_credentials = storage_fixtures.fake_aws_credentials
service_account_key = storage_fixtures.service_account_key
_closed_breakers = storage_fixtures._closed_breakers

NOW = "2026-11-28T12:00:00Z"


def _embeds(tmp_path):
    table = prepare_inputs.embed_table(schema.PRODUCTION, COUNTS[schema.PRODUCTION])
    return [prepare_inputs.write_embed_dir(tmp_path / "embed", table)]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _links(out) -> list[str]:
    return pq.read_table(out / schema.prepared_file(schema.PRODUCTION))[P.IMAGE_LINK].to_pylist()


def _is_png(data: bytes) -> bool:
    return Image.open(io.BytesIO(data)).size == (28, 28)


@pytest.fixture
def gcs_store(monkeypatch, gcs_endpoint, service_account_key):
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    monkeypatch.setenv("STORAGE_GCS_SIGNING_KEY", str(service_account_key[0]))
    client = storage._gcs_client(storage.StorageConfig.from_env())
    if client.lookup_bucket("prep-links") is None:
        client.create_bucket("prep-links")
    gate = SignedGate(gcs_endpoint, gcs_public_key=service_account_key[1])
    yield "gs://prep-links/monitoring", gate
    gate.close()


@pytest.fixture(params=["s3", "minio"])
def s3_store(request, monkeypatch, s3_endpoint, fake_aws_credentials):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("MINIO_ENDPOINT_URL", s3_endpoint)
    bucket = f"prep-links-{request.param}"
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=bucket)
    gate = SignedGate(s3_endpoint, s3_secret="testing")
    yield f"{request.param}://{bucket}/monitoring", gate
    gate.close()


def _check_signed(out, gate, result, expiry: int, before: datetime) -> None:
    links = _links(out)
    assert len(links) == COUNTS[schema.PRODUCTION]
    for link in links[:5]:
        status, body = _get(gate.via(link))
        assert status == 200 and _is_png(body), body[:80]
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["image_links"]["kind"] == "signed"
    assert manifest["image_links"]["expiry_seconds"] == expiry
    expires = datetime.fromisoformat(manifest["image_links"]["expires"])
    # the first links were signed after `before`: they expire `expiry` seconds later (ISO time to the second)
    assert before + timedelta(seconds=expiry - 1) <= expires <= datetime.now(UTC) + timedelta(seconds=expiry)
    summary = result.summary_markdown()
    assert "signed URLs" in summary and manifest["image_links"]["expires"] in summary


def test_signed_gcs_links_fetch_the_images(gcs_store, tmp_path, dataset_dir):
    store, gate = gcs_store
    config = PrepareConfig(image_store=store, now=NOW, links="signed", link_expiry=3600)
    before = datetime.now(UTC)
    result = prepare_records(_embeds(tmp_path), dataset_dir, tmp_path / "out", config, progress=False)
    assert _links(tmp_path / "out")[0].startswith(f"{gate.upstream}/prep-links/monitoring/production/")
    _check_signed(tmp_path / "out", gate, result, 3600, before)


def test_signed_s3_links_fetch_the_images(s3_store, tmp_path, dataset_dir):
    store, gate = s3_store
    config = PrepareConfig(image_store=store, now=NOW, links="signed", link_expiry=7200)
    before = datetime.now(UTC)
    result = prepare_records(_embeds(tmp_path), dataset_dir, tmp_path / "out", config, progress=False)
    _check_signed(tmp_path / "out", gate, result, 7200, before)


def test_expired_prepared_links_stop_working(gcs_store, tmp_path, dataset_dir):
    store, gate = gcs_store
    config = PrepareConfig(image_store=store, now=NOW, links="signed", link_expiry=1)
    prepare_records(_embeds(tmp_path), dataset_dir, tmp_path / "out", config, progress=False)
    link = _links(tmp_path / "out")[0]
    time.sleep(2.1)
    status, body = _get(gate.via(link))
    assert status == 403 and body.startswith(b"expired")


def test_the_link_style_can_come_from_the_environment(s3_store, tmp_path, dataset_dir, monkeypatch):
    store, gate = s3_store
    monkeypatch.setenv("STORAGE_LINKS", "signed")
    monkeypatch.setenv("STORAGE_LINK_EXPIRY", "600")
    result = prepare_records(
        _embeds(tmp_path),
        dataset_dir,
        tmp_path / "out",
        PrepareConfig(image_store=store, now=NOW),
        progress=False,
    )
    assert result.image_links["expiry_seconds"] == 600
    assert _get(gate.via(_links(tmp_path / "out")[0]))[0] == 200


def test_a_public_base_url_is_used_as_given(s3_store, tmp_path, dataset_dir):
    store, _ = s3_store
    base = "https://images.example.com/monitoring"
    config = PrepareConfig(image_store=store, now=NOW, links="public", link_base=base)
    result = prepare_records(_embeds(tmp_path), dataset_dir, tmp_path / "out", config, progress=False)
    assert _links(tmp_path / "out")[:2] == [f"{base}/production/production-0000{i}.png" for i in range(2)]
    assert f"public links under {base}" in result.summary_markdown()
    assert result.image_links["expires"] == ""


def test_public_links_of_a_local_store(tmp_path, dataset_dir):
    """A local image store that a web server the user runs serves: public links under its base URL."""
    store = tmp_path / "store"
    config = PrepareConfig(
        image_store=str(store), now=NOW, links="public", link_base="http://images.internal:8080/run-7"
    )
    prepare_records(_embeds(tmp_path), dataset_dir, tmp_path / "out", config, progress=False)
    assert _links(tmp_path / "out")[0] == "http://images.internal:8080/run-7/production/production-00000.png"
    assert (store / "production" / "production-00000.png").is_file()


@pytest.mark.parametrize("links", ["signed", "public", "uri", "url"])
def test_links_asked_for_without_an_image_store_are_refused(links, tmp_path, dataset_dir):
    """image_store='': no per-image file exists, so a link style asked for is a mistake, said at once."""
    config = PrepareConfig(now=NOW, links=links, link_base="https://cdn.example.com/m")
    with pytest.raises(ValueError, match=f"links={links}: there is no image store to link"):
        prepare_records(_embeds(tmp_path), dataset_dir, tmp_path / "out", config, progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_link_style_from_the_environment_alone_gives_null_links_without_a_store(
    tmp_path, dataset_dir, monkeypatch
):
    monkeypatch.setenv("STORAGE_LINKS", "signed")
    result = prepare_records(
        _embeds(tmp_path), dataset_dir, tmp_path / "out", PrepareConfig(now=NOW), progress=False
    )
    assert _links(tmp_path / "out") == [None] * COUNTS[schema.PRODUCTION]
    assert result.image_links["kind"] == "none"


def test_uri_links(s3_store, tmp_path, dataset_dir):
    store, _ = s3_store
    config = PrepareConfig(image_store=store, now=NOW, links="uri")
    result = prepare_records(_embeds(tmp_path), dataset_dir, tmp_path / "out", config, progress=False)
    assert _links(tmp_path / "out")[0] == f"{store}/production/production-00000.png"
    assert "bucket URIs" in result.summary_markdown()


def test_plain_links_stay_as_they_were(s3_store, tmp_path, dataset_dir, s3_endpoint):
    store, _ = s3_store
    result = prepare_records(
        _embeds(tmp_path),
        dataset_dir,
        tmp_path / "out",
        PrepareConfig(image_store=store, now=NOW),
        progress=False,
    )
    bucket_key = store.split("://", 1)[1]
    assert _links(tmp_path / "out")[0] == f"{s3_endpoint}/{bucket_key}/production/production-00000.png"
    assert result.image_links["kind"] == "url"
    assert "plain object URLs" in result.summary_markdown()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"links": "signed"}, "links=signed: the images are linked as"),  # a local folder
        ({"links": "public"}, "links=public needs link_base"),
        ({"links": "public", "link_base": "https://u:p@cdn.example.com"}, "may not carry a user name"),
        ({"links": "signed", "link_expiry": 8 * 24 * 3600}, "link_expiry"),
        ({"links": "html"}, "links='html'"),
    ],
)
def test_bad_link_settings_fail_before_anything_is_written(kwargs, match, tmp_path, dataset_dir, monkeypatch):
    monkeypatch.delenv("STORAGE_LINK_BASE", raising=False)
    store = tmp_path / "store"
    with pytest.raises(ValueError, match=match):
        prepare_records(
            _embeds(tmp_path),
            dataset_dir,
            tmp_path / "out",
            PrepareConfig(image_store=str(store), now=NOW, **kwargs),
            progress=False,
        )
    assert not store.exists()


def _same_images_in_store_and_artifact(store: str, tmp_path, dataset_dir) -> None:
    """One object per image in the store (written in parallel), the same bytes as the artifact's few files."""
    config = PrepareConfig(image_store=store, now=NOW, links="uri", image_workers=4)
    prepare_records(_embeds(tmp_path), dataset_dir, tmp_path / "out", config, progress=False)
    links = _links(tmp_path / "out")
    inside = pq.read_table(tmp_path / "out" / schema.prepared_images_file(schema.PRODUCTION))
    assert links == [
        f"{store}/production/{i}.png" for i in inside[schema.PreparedImageColumns.IMAGE_ID].to_pylist()
    ]
    assert [storage.read_bytes(link) for link in links] == inside[
        schema.PreparedImageColumns.IMAGE
    ].to_pylist()
    assert len(list(storage.list_prefix(f"{store}/production/"))) == COUNTS[schema.PRODUCTION]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        [
            MANIFEST_FILE,
            schema.PREPARED_REJECTED_FILE,
            schema.prepared_file(schema.PRODUCTION),
            schema.prepared_images_file(schema.PRODUCTION),
        ]
    )


def test_a_gcs_image_store_holds_the_same_images_as_the_artifact(gcs_store, tmp_path, dataset_dir):
    _same_images_in_store_and_artifact(f"{gcs_store[0]}/same", tmp_path, dataset_dir)


def test_an_s3_image_store_holds_the_same_images_as_the_artifact(s3_store, tmp_path, dataset_dir):
    _same_images_in_store_and_artifact(f"{s3_store[0]}/same", tmp_path, dataset_dir)
