"""A loopback stand-in for Arize's file-upload endpoint, and a small prepared folder.

The server decodes what the real SDK posts to ``/v1/pandas_arrow``: an Arrow IPC stream whose
schema metadata ``arize-schema`` holds the base64 protobuf ``Schema`` (model, version,
environment, batch ID).  It can answer the first requests with a chosen status (503, 401, ...),
receive a request and drop the connection without answering (the answer is lost), or receive one
and hold it unanswered until the test releases it (a sender killed mid-chunk).
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest

from components.common import schema
from components.prepare.config import PrepareConfig
from components.prepare.prepare import prepare_records
from tests.fixtures import prepare_inputs

COUNTS = {schema.TRAINING: 12, schema.VALIDATION: 5, schema.PRODUCTION: 9}
DIM = 8


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    table: pa.Table
    environment: str
    model_id: str
    model_version: str
    batch_id: str


@dataclass
class FakeArize:
    host: str
    port: int
    received: list[Received] = field(default_factory=list)
    # statuses to answer, in order, before answering 200 (e.g. [503, 503] or [401])
    fail_with: list[int] = field(default_factory=list)
    # answer 200 to this many requests, then fail every later one with fail_after_status
    fail_after: int | None = None
    fail_after_status: int = 500
    # seconds to stall, in order, before answering (then 503, nothing recorded): the client times out
    stall_s: list[float] = field(default_factory=list)
    # request numbers (1-based) that are received and recorded, then the connection is closed unanswered
    drop: set[int] = field(default_factory=set)
    # requests after this many are received and recorded, then held unanswered until `release` is set
    hold_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def prediction_ids(self) -> list[str]:
        """Every prediction ID received, in order (repeated when a row came twice)."""
        return [i for r in self.received for i in r.table.column("prediction_id").to_pylist()]

    def by_environment(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        for r in self.received:
            out.setdefault(r.environment, []).append(r)
        return out


def _decode(body: bytes) -> tuple[pa.Table, object]:
    from arize._generated.protocol.rec import public_pb2 as pb2

    table = pa.ipc.open_stream(body).read_all()
    proto = pb2.Schema()
    proto.ParseFromString(base64.b64decode(table.schema.metadata[b"arize-schema"]))
    return table, proto


@pytest.fixture
def fake_arize(monkeypatch):
    """Start the loopback server and point the SDK at it through ARIZE_API_HOST/SCHEME/PORT."""
    from arize._generated.protocol.rec import public_pb2 as pb2

    state: FakeArize

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with state.lock:
                state.requests += 1
                n = state.requests
                status = state.fail_with.pop(0) if state.fail_with else 200
                stall = state.stall_s.pop(0) if state.stall_s else 0.0
                if state.fail_after is not None and n > state.fail_after:
                    status = state.fail_after_status
            if stall:
                time.sleep(stall)
                status = 503
            if status == 200 or n in state.drop or (state.hold_after is not None and n > state.hold_after):
                table, proto = _decode(body)
                with state.lock:
                    state.received.append(
                        Received(
                            path=self.path,
                            headers=dict(self.headers),
                            table=table,
                            environment=pb2.Schema.Environment.Name(proto.constants.environment).lower(),
                            model_id=proto.constants.model_id,
                            model_version=proto.constants.model_version,
                            batch_id=proto.constants.batch_id,
                        )
                    )
            if n in state.drop:  # stored, but the answer is lost
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if state.hold_after is not None and n > state.hold_after:
                state.release.wait(60)
            payload = b"{}" if status == 200 else b'{"error": "try again"}'
            try:
                self._answer(status, payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                pass

        def _answer(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state = FakeArize("127.0.0.1", server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("ARIZE_API_HOST", "127.0.0.1")
    monkeypatch.setenv("ARIZE_API_SCHEME", "http")
    monkeypatch.setenv("ARIZE_API_PORT", str(state.port))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ARIZE_PROXY_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield state
    state.release.set()  # held requests end
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory, fashion_dir) -> Path:
    """A prepared folder: 12 training, 5 validation, 9 production rows, vectors of 8 values."""
    root = tmp_path_factory.mktemp("arize-input")
    images = prepare_inputs.read_idx_images(fashion_dir / "t10k-images-idx3-ubyte.gz", sum(COUNTS.values()))
    prepare_inputs.write_dataset(root / "dataset", COUNTS, images)
    dirs = [
        prepare_inputs.write_embed_dir(
            root / f"embed-{split}",
            prepare_inputs.embed_table(split, n, dim=DIM, seed=i, spacing=timedelta(minutes=5)),
        )
        for i, (split, n) in enumerate(COUNTS.items())
    ]
    # The newest row at 20 minutes past the current hour: the 9 production rows, 5 minutes apart, then
    # always straddle an hour boundary (4 before it, 5 after), whatever the time the tests run.
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    now = (hour + timedelta(minutes=20)).isoformat()
    prepare_records(dirs, root / "dataset", root / "prepared", PrepareConfig(now=now), progress=False)
    return root / "prepared"


@pytest.fixture
def no_credentials(monkeypatch):
    monkeypatch.delenv("ARIZE_API_KEY", raising=False)
    monkeypatch.delenv("ARIZE_SPACE_ID", raising=False)


@pytest.fixture
def credentials(monkeypatch) -> tuple[str, str]:
    key, space = "test-key-5f3a9c", "U3BhY2U6dGVzdA=="
    monkeypatch.setenv("ARIZE_API_KEY", key)
    monkeypatch.setenv("ARIZE_SPACE_ID", space)
    return key, space
