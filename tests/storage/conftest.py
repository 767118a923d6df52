"""Real object-storage emulators on loopback: gcp-storage-emulator (GCS JSON API) and moto (S3 API).

Each fixture picks a free port, starts the server as a subprocess, waits until it answers,
and stops that process (by its own id) at the end of the session.
"""

from __future__ import annotations

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
