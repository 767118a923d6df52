"""Fixtures of the pipeline tests: stand-in stages and a loopback KFP API."""

import pytest

from components.pipelines import definitions
from tests.pipeline import fakes
from tests.pipeline.kfp_server import FakeKfp, serve


@pytest.fixture
def fake_kfp():
    """A loopback server answering the KFP v2beta1 REST API; ``fake_kfp.url`` is its address."""
    fake = FakeKfp()
    server, url = serve(fake)
    fake.url = url
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def with_fake_stages(monkeypatch):
    """Every pipeline built from stand-in stages, for tests of the plumbing."""
    fakes.use_fake_stages(monkeypatch)
    return definitions
