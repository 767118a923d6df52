"""Storage outages fail fast: a stopped or unreachable store ends prepare's upload within about a minute.

Before this was fixed, prepare's upload of 200 images held on for 430-613 s (S3, server stopped)
and 520-554 s (GCS, stopped or port closed): a 280 s deadline per object, four attempts of a 60 s
read timeout, and the upload pool waited for every queued write. The project measures speed with
benchmarks, not timed assertions; the bounds below are fault-test bounds only, generous (90 s,
against 7-9 minutes before) so that they prove "fails fast" without measuring speed.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import boto3
import pytest

from components.common import schema, storage
from components.common.storage import StorageConfig, StorageError, StorageUnavailable, Uploader
from components.prepare.config import PrepareConfig
from components.prepare.prepare import prepare_records
from tests.fixtures import prepare_inputs
from tests.storage.conftest import BIN, _free_port, _start, _stop

IMAGES = 200
FAIL_FAST_BOUND_S = 90  # fault-test bound (see the module docstring), not a speed measurement
NOW = "2026-11-28T12:00:00Z"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, fashion_dir):
    """A data set of 200 real Fashion-MNIST production images and its embed output."""
    root = tmp_path_factory.mktemp("outage")
    images = prepare_inputs.read_idx_images(fashion_dir / "t10k-images-idx3-ubyte.gz", IMAGES)
    dataset = prepare_inputs.write_dataset(root / "dataset", {schema.PRODUCTION: IMAGES}, images)
    embed = prepare_inputs.write_embed_dir(
        root / "embed", prepare_inputs.embed_table(schema.PRODUCTION, IMAGES)
    )
    return dataset, embed


class Emulator:
    """One emulator of its own (not the session's: this one is stopped), with its bucket ``bkt``."""

    def __init__(self, scheme: str, tmp: Path):
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        if scheme == "gs":
            args = [
                str(BIN / "gcp-storage-emulator"),
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--in-memory",
            ]
            self.proc, self.log = _start(args, self.url + "/", tmp)
            storage._gcs_client(StorageConfig(gcs_endpoint=self.url)).create_bucket("bkt")
        else:
            args = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
            self.proc, self.log = _start(args, self.url + "/moto-api/", tmp)
            self.s3().create_bucket(Bucket="bkt")
        self.stopped = False

    def s3(self):
        return boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")

    def stop(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung or frozen server)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def close(self) -> None:
        if self.stopped:
            os.kill(self.proc.pid, signal.SIGCONT)
        _stop(self.proc, self.log)


@pytest.fixture
def emulator(request, tmp_path, monkeypatch, fake_aws_credentials):
    scheme = request.param
    emu = Emulator(scheme, tmp_path)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST" if scheme == "gs" else "AWS_ENDPOINT_URL", emu.url)
    yield scheme, emu
    emu.close()


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _prepare(inputs, out: Path, store: str):
    dataset, embed = inputs
    return prepare_records([embed], dataset, out, PrepareConfig(image_store=store, now=NOW), progress=False)


@pytest.mark.parametrize("emulator", ["s3", "gs"], indirect=True)
def test_prepare_fails_fast_when_the_store_stops(emulator, inputs, tmp_path):
    scheme, emu = emulator
    emu.stop()
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        _prepare(inputs, tmp_path / "out", f"{scheme}://bkt/imgs")
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert f"{scheme}://bkt/imgs/production/" in message  # the URI
    assert emu.url in message and "not answering" in message  # the endpoint
    assert "write(s) of this batch not attempted" in message
    # Writes sent before the freeze got no answer: the store may hold them, and the error says so.
    assert "nothing of this run was left" in message or "may have landed under" in message
    assert elapsed < FAIL_FAST_BOUND_S, f"took {elapsed:.0f} s"  # 430-613 s before the fix
    assert not list((tmp_path / "out").glob("*.parquet"))  # no table half-written


@pytest.mark.parametrize("scheme", ["s3", "gs"])
def test_prepare_fails_fast_when_the_port_is_closed(
    scheme, inputs, tmp_path, monkeypatch, fake_aws_credentials
):
    dead = _closed_port()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST" if scheme == "gs" else "AWS_ENDPOINT_URL", dead)
    started = time.monotonic()
    with pytest.raises(
        StorageUnavailable, match=rf"writing {scheme}://bkt/imgs/production/\S+ failed: the store at {dead}"
    ):
        _prepare(inputs, tmp_path / "out", f"{scheme}://bkt/imgs")
    assert time.monotonic() - started < FAIL_FAST_BOUND_S  # GCS: 520 s before the fix


@pytest.mark.parametrize("emulator", ["s3"], indirect=True)
def test_a_store_that_stops_mid_run_names_what_is_left(emulator, inputs, tmp_path, monkeypatch):
    """A shared image store is not cleaned (a rerun writes the same names, earlier runs link them):
    the error says how many objects are left and where, and that count is what the store holds."""
    _, emu = emulator
    real_write = storage.write_bytes
    calls = {"n": 0}

    def write_then_stop(uri, data, content_type=None, **kw):
        calls["n"] += 1
        if calls["n"] == 40:
            emu.stop()
        return real_write(uri, data, content_type, **kw)

    monkeypatch.setattr(storage, "write_bytes", write_then_stop)
    with pytest.raises(StorageUnavailable) as info:
        _prepare(inputs, tmp_path / "out", "s3://bkt/imgs")
    message = str(info.value)
    assert "object(s) this run wrote are left under s3://bkt/imgs/production/" in message
    left = int(message.split(" object(s) this run wrote are left")[0].rsplit(" ", 1)[1])
    maybe = message.split(" more write(s) got no answer")[0].rsplit(" ", 1)[1]
    maybe = int(maybe) if maybe.isdigit() else 0
    os.kill(emu.proc.pid, signal.SIGCONT)
    emu.stopped = False
    # Writes in flight when the server froze may have been stored without an answer: "may have landed".
    held = emu.s3().list_objects_v2(Bucket="bkt", Prefix="imgs/").get("KeyCount", 0)
    assert 0 < left <= held <= left + maybe < IMAGES


def test_the_uploader_deletes_what_it_wrote_in_a_store_of_its_own(s3_endpoint, fake_aws_credentials):
    """cleanup=True (the images belong to this run only): the first failure deletes what was written."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket="own-run")
    config = StorageConfig(s3_endpoint=s3_endpoint)
    jobs = [(f"s3://own-run/images/{i:03d}.png", b"png %d" % i) for i in range(30)]
    jobs.insert(20, ("s3://no-such-bucket-here/images/x.png", b"x"))  # fails: NoSuchBucket
    with pytest.raises(StorageError, match=r"no-such-bucket-here.*were deleted") as info:
        with Uploader(4, config=config, cleanup=True) as uploader:
            uploader.upload(jobs)
    assert not isinstance(info.value, StorageUnavailable)  # the store answered: no outage
    assert client.list_objects_v2(Bucket="own-run").get("KeyCount", 0) == 0


def test_the_uploader_cleans_up_after_a_failure_elsewhere(tmp_path):
    """An error outside the uploads (a bad row, say) also removes what a store of its own received."""
    with pytest.raises(RuntimeError) as info:
        with Uploader(2, cleanup=True) as uploader:
            uploader.upload([(str(tmp_path / f"{i}.png"), b"x") for i in range(5)])
            raise RuntimeError("something else failed")
    assert not list(tmp_path.glob("*.png"))
    assert any("were deleted" in note for note in info.value.__notes__)


def test_the_breaker_opens_after_consecutive_failures_and_then_refuses_at_once(fake_aws_credentials):
    dead = _closed_port()
    config = StorageConfig(s3_endpoint=dead, retries=0, breaker_failures=3)
    for _ in range(3):
        with pytest.raises(StorageError, match=dead):
            storage.write_bytes("s3://b/k.png", b"x", config=config)
    started = time.monotonic()
    with pytest.raises(
        StorageUnavailable, match=rf"reading s3://b/k.png failed: the store at {dead}"
    ) as info:
        storage.read_bytes("s3://b/k.png", config=config)
    assert info.value.endpoint == dead
    assert time.monotonic() - started < 1  # no network call: the breaker refused it
    storage.reset_breakers()  # a later run (or a test) tries again
    with pytest.raises(StorageError) as again:
        storage.read_bytes("s3://b/k.png", config=config)
    assert "Could not connect" in str(again.value)


def test_a_store_that_says_no_does_not_open_the_breaker(s3_endpoint, fake_aws_credentials):
    """Missing objects and refusals are answers, not outages: the endpoint stays in use."""
    config = StorageConfig(s3_endpoint=s3_endpoint, breaker_failures=1)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="answers")
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            storage.read_bytes("s3://answers/none.png", config=config)
    storage.write_bytes("s3://answers/yes.png", b"ok", config=config)
    assert storage.read_bytes("s3://answers/yes.png", config=config) == b"ok"
