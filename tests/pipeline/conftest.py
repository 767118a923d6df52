import importlib.util
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pipeline_module():
    """The top-level pipeline.py (not a package: loaded by path)."""
    return _load("fashion_drift_pipeline", ROOT / "pipeline.py")


@pytest.fixture(scope="session")
def fakes():
    return _load("fashion_drift_test_fakes", HERE / "fakes.py")


@pytest.fixture
def fake_kfp():
    server_module = _load("fashion_drift_test_kfp_server", HERE / "kfp_server.py")
    fake = server_module.FakeKfp()
    server, url = server_module.serve(fake)
    fake.url = url
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def with_fake_stages(monkeypatch, pipeline_module, fakes):
    """Build the pipelines from stand-in stages (same signatures) for tests of the plumbing."""
    original = pipeline_module.load_stages
    monkeypatch.setattr(
        pipeline_module, "load_stages", lambda images, factories=None: original(images, fakes.FACTORIES)
    )
    return pipeline_module
