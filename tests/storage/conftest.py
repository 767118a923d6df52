"""Real object-storage emulators on loopback: gcp-storage-emulator (GCS JSON API) and moto (S3 API).

Each fixture picks a free port, starts the server as a subprocess, waits until it answers,
and stops that process (by its own id) at the end of the session.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before answering at {url}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{proc.args[0]} did not answer at {url} within {timeout:.0f} s")


def _start(args: list[str], url: str, tmp: Path):
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        _wait_until_up(url, proc)
    except Exception:
        proc.kill()
        proc.wait()
        log.close()
        raise
    return proc, log


def _stop(proc: subprocess.Popen, log) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory) -> str:
    """URL of a gcp-storage-emulator (in memory) on loopback."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    tmp = tmp_path_factory.mktemp("gcs-emulator")
    args = [
        str(BIN / "gcp-storage-emulator"),
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--in-memory",
    ]
    proc, log = _start(args, url + "/", tmp)
    yield url
    _stop(proc, log)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """URL of a moto S3 server on loopback."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    tmp = tmp_path_factory.mktemp("moto")
    proc, log = _start(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], url + "/moto-api/", tmp
    )
    yield url
    _stop(proc, log)


@pytest.fixture
def fake_aws_credentials(monkeypatch):
    """moto accepts any credentials; never let a test reach a real account's."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)


@pytest.fixture(autouse=True)
def _closed_breakers():
    """Every test starts with every endpoint's circuit breaker closed (they live per process)."""
    from components.common import storage

    storage.reset_breakers()
    yield
    storage.reset_breakers()


@pytest.fixture(scope="session")
def service_account_key(tmp_path_factory):
    """A service-account JSON key made here (RSA 2048, never used outside loopback) and its public key.

    The GCS emulator's clients are anonymous and cannot sign; a key file is what a user passes as
    ``gcs_signing_key`` (or ``GOOGLE_APPLICATION_CREDENTIALS``) to sign ``gs://`` links.
    """
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "loopback-test",
        "private_key_id": "test-key-1",
        "private_key": pem,
        "client_email": "link-signer@loopback-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    path = tmp_path_factory.mktemp("sa") / "key.json"
    path.write_text(json.dumps(info))
    return path, key.public_key()


@contextlib.contextmanager
def recorded_gcs_requests(config):
    """Every HTTP request the GCS client of ``config`` sends inside the block, as ``"METHOD URL"``."""
    from components.common import storage

    client = storage._gcs_client(config)
    sent: list[str] = []
    original = client._http.request

    def recording(method, url, *args, **kwargs):
        sent.append(f"{method} {url}")
        return original(method, url, *args, **kwargs)

    client._http.request = recording
    try:
        yield sent
    finally:
        client._http.request = original
