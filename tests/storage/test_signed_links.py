"""Links Arize can open: signed URLs (GCS V4, S3 SigV4) that fetch the image until they expire, public
base URLs used as given, and no credential in a link that never expires.

The emulators serve any GET whatever its signature, so each signed link is fetched through
:class:`tests.storage.signed_gate.SignedGate`, which checks signature and expiry as the stores do.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import boto3
import pytest

from components.common import storage
from components.common.storage import StorageConfig, StorageError
from tests.storage.signed_gate import SignedGate

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def gcs_gate(gcs_endpoint, service_account_key):
    gate = SignedGate(gcs_endpoint, gcs_public_key=service_account_key[1])
    yield gate
    gate.close()


@pytest.fixture
def s3_gate(s3_endpoint, fake_aws_credentials):
    gate = SignedGate(s3_endpoint, s3_secret="testing")
    yield gate
    gate.close()


def _gcs(gcs_endpoint, service_account_key, **kw) -> StorageConfig:
    return StorageConfig(
        gcs_endpoint=gcs_endpoint, gcs_signing_key=str(service_account_key[0]), links="signed", **kw
    )


def _put_gcs(config: StorageConfig, bucket: str, key: str) -> str:
    client = storage._gcs_client(config)
    if client.lookup_bucket(bucket) is None:
        client.create_bucket(bucket)
    uri = f"gs://{bucket}/{key}"
    storage.write_bytes(uri, PNG, "image/png", config=config)
    return uri


def _put_s3(endpoint: str, scheme: str, bucket: str, key: str) -> str:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=key, Body=PNG, ContentType="image/png")
    return f"{scheme}://{bucket}/{key}"


def test_gcs_signed_link_fetches_the_image(gcs_endpoint, service_account_key, gcs_gate):
    config = _gcs(gcs_endpoint, service_account_key, link_expiry=600)
    uri = _put_gcs(config, "signed-gs", "run 1/production/img-0001.png")
    link = storage.record_link(uri, config)

    assert link.startswith(f"{gcs_endpoint}/signed-gs/run%201/production/img-0001.png?")
    assert "X-Goog-Expires=600" in link and "X-Goog-Signature=" in link
    assert "PRIVATE KEY" not in link and "link-signer%40" in link  # the signer's name, never its key
    assert _get(gcs_gate.via(link)) == (200, PNG)
    # the gate is not a pass-through: an unsigned or altered link is refused
    assert _get(gcs_gate.via(storage.link_for(uri, config)))[0] == 403
    status, body = _get(gcs_gate.via(link.replace("X-Goog-Expires=600", "X-Goog-Expires=604800")))
    assert (status, body) == (403, b"signature does not match")
    # drift maps a signed link back to the object it signs (its query ignored)
    assert storage.uri_from_link(link, config) == uri


def test_gcs_expired_link_is_refused(gcs_endpoint, service_account_key, gcs_gate):
    config = _gcs(gcs_endpoint, service_account_key, link_expiry=1)
    link = storage.record_link(_put_gcs(config, "signed-gs-expiry", "a.png"), config)
    assert _get(gcs_gate.via(link)) == (200, PNG)
    time.sleep(2.1)  # the link was valid for 1 s
    status, body = _get(gcs_gate.via(link))
    assert status == 403 and body.startswith(b"expired")


@pytest.mark.parametrize("scheme", ["s3", "minio"])
def test_s3_signed_link_fetches_the_image(scheme, s3_endpoint, s3_gate):
    config = StorageConfig(
        s3_endpoint=s3_endpoint, minio_endpoint=s3_endpoint, links="signed", link_expiry=900
    )
    uri = _put_s3(s3_endpoint, scheme, f"signed-{scheme}", "production/img 0001.png")
    link = storage.record_link(uri, config)

    assert link.startswith(f"{s3_endpoint}/signed-{scheme}/production/img%200001.png?")
    assert "X-Amz-Expires=900" in link and "X-Amz-Signature=" in link
    assert (
        "testing" not in link.split("X-Amz-Credential=")[1].split("%2F", 1)[1]
    )  # no secret, only the key id
    assert _get(s3_gate.via(link)) == (200, PNG)
    assert _get(s3_gate.via(storage.link_for(uri, config)))[0] == 403
    assert _get(s3_gate.via(link.replace("X-Amz-Expires=900", "X-Amz-Expires=604800")))[0] == 403


def test_s3_expired_link_is_refused(s3_endpoint, s3_gate):
    config = StorageConfig(s3_endpoint=s3_endpoint, links="signed", link_expiry=1)
    link = storage.record_link(_put_s3(s3_endpoint, "s3", "signed-s3-expiry", "a.png"), config)
    assert _get(s3_gate.via(link)) == (200, PNG)
    time.sleep(2.1)
    status, body = _get(s3_gate.via(link))
    assert status == 403 and body.startswith(b"expired")


def test_the_gate_refuses_a_link_of_a_crafted_past(s3_endpoint, fake_aws_credentials):
    """The same check with the time crafted instead of waited for: 8 days after signing."""
    config = StorageConfig(s3_endpoint=s3_endpoint, links="signed", link_expiry=storage.MAX_LINK_EXPIRY)
    link = storage.record_link(_put_s3(s3_endpoint, "s3", "signed-s3-crafted", "a.png"), config)
    later = SignedGate(s3_endpoint, s3_secret="testing", clock=lambda: time.time() + 8 * 24 * 3600)
    try:
        assert _get(later.via(link))[0] == 403
    finally:
        later.close()


@pytest.mark.parametrize(
    "uri,store,base,link",
    [
        (
            "gs://b/imgs/production/x 1.png",
            "gs://b/imgs",
            "https://cdn.example.com/m",
            "https://cdn.example.com/m/production/x%201.png",
        ),
        (
            "s3://b/imgs/production/x.png",
            None,
            "https://b.example.com/",
            "https://b.example.com/imgs/production/x.png",
        ),
        (
            "/data/prepared/images/training/x.png",
            "/data/prepared/images",
            "http://img.local:8080",
            "http://img.local:8080/training/x.png",
        ),
    ],
)
def test_a_public_base_url_is_used_as_given(uri, store, base, link):
    config = StorageConfig(links="public", link_base=base)
    assert storage.record_link(uri, config, store=store) == link
    assert storage.link_kind(config).describe().startswith(f"public links under {base.rstrip('/')}")


@pytest.mark.parametrize(
    "base",
    [
        "https://user:secret@cdn.example.com/imgs",
        "https://cdn.example.com/imgs?sig=abc",
        "https://cdn.example.com/imgs#token",
        "cdn.example.com/imgs",
    ],
)
def test_a_public_base_with_a_credential_is_refused(base):
    with pytest.raises(ValueError, match="link_base") as info:
        StorageConfig(links="public", link_base=base)
    assert "secret" not in str(info.value) and "sig=abc" not in str(info.value)


def test_public_links_need_a_base():
    with pytest.raises(ValueError, match="link_base"):
        StorageConfig(links="public")


@pytest.mark.parametrize("expiry", [0, -5, storage.MAX_LINK_EXPIRY + 1])
def test_signed_links_live_at_most_seven_days(expiry):
    with pytest.raises(ValueError, match="link_expiry"):
        StorageConfig(links="signed", link_expiry=expiry)


def test_a_local_file_has_no_signed_link(tmp_path):
    with pytest.raises(ValueError, match="links=signed needs a gs://"):
        storage.record_link(str(tmp_path / "x.png"), StorageConfig(links="signed"))


def test_an_anonymous_gcs_client_cannot_sign_and_says_what_to_give(gcs_endpoint):
    config = StorageConfig(gcs_endpoint=gcs_endpoint, links="signed")
    with pytest.raises(StorageError, match="gcs_signing_key"):
        storage.record_link("gs://b/x.png", config)


def test_s3_without_credentials_cannot_sign(monkeypatch, s3_endpoint):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    config = StorageConfig(s3_endpoint=s3_endpoint, links="signed", connect_timeout=1, read_timeout=1)
    with pytest.raises(StorageError, match="needs AWS credentials"):
        storage.record_link("s3://b/x.png", config)


def test_link_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STORAGE_LINKS", "signed")
    monkeypatch.setenv("STORAGE_LINK_EXPIRY", "3600")
    config = StorageConfig.from_env()
    assert (config.links, config.link_expiry) == ("signed", 3600)
    monkeypatch.setenv("STORAGE_LINK_EXPIRY", "an hour")
    with pytest.raises(ValueError, match="STORAGE_LINK_EXPIRY"):
        StorageConfig.from_env()


def test_plain_and_uri_links_are_unchanged():
    assert storage.record_link("gs://b/k.png", StorageConfig()) == "https://storage.googleapis.com/b/k.png"
    assert storage.record_link("gs://b/k.png", StorageConfig(links="uri")) == "gs://b/k.png"
    assert (
        "do not expire"
        in storage.link_kind(StorageConfig(links="public", link_base="https://x.example")).describe()
    )
