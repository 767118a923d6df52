"""Fixtures of the registry's tests: a registry root on local disk, the GCS emulator and moto (S3)."""

from __future__ import annotations

import json
import uuid

import pytest

from components.common import schema, storage
from components.common.files import TRAINING_SUMMARY_FILE
from components.common.model_folder import weights_version

# The object-storage emulators of the storage tests (real servers on loopback).
from tests.storage.conftest import _closed_breakers, fake_aws_credentials, gcs_endpoint, s3_endpoint  # noqa: F401

BACKENDS = ("local", "gcs", "s3")


def _bucket(kind: str, config: storage.StorageConfig) -> str:
    name = f"registry-{uuid.uuid4().hex[:12]}"
    if kind == "gcs":
        storage._gcs_client(config).create_bucket(name)
        return f"gs://{name}/models"
    storage._s3_client(config, "s3").create_bucket(Bucket=name)
    return f"s3://{name}/models"


@pytest.fixture
def root(request, tmp_path, monkeypatch):
    """(registry_uri, StorageConfig) of a fresh registry on the backend named by the test's parameter.

    The environment points the default configuration at the same emulator, so code that reads it
    (resolve_model_uri, the CLI, the helper components) reaches the same store.
    """
    kind = request.param
    if kind == "local":
        yield str(tmp_path / "registry"), None
        return
    if kind == "gcs":
        endpoint = request.getfixturevalue("gcs_endpoint")
        monkeypatch.setenv(storage.ENV_GCS_ENDPOINT, endpoint)
        config = storage.StorageConfig(gcs_endpoint=endpoint, retries=0)
    else:
        request.getfixturevalue("fake_aws_credentials")
        endpoint = request.getfixturevalue("s3_endpoint")
        monkeypatch.setenv(storage.ENV_S3_ENDPOINT, endpoint)
        config = storage.StorageConfig(s3_endpoint=endpoint, retries=0)
    yield _bucket(kind, config), config


def write_model_folder(folder, weights: bytes = b"weights", accuracy: float = 0.8) -> str:
    """A model folder as the train stage writes it (configuration, weights, processor, summary)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = {str(i): name for i, name in enumerate(schema.CLASS_NAMES)}
    (folder / "config.json").write_text(json.dumps({"id2label": labels, "model_type": "resnet"}))
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 32, "width": 32}}))
    summary = {
        "model_version": weights_version(folder),
        "profile": "local",
        "model_name": "local-resnet",
        "class_names": list(schema.CLASS_NAMES),
        "config": {"epochs": 1.0, "seed": 0},
        "metrics": {"accuracy": accuracy, "f1_macro": accuracy - 0.01, "loss": float("nan")},
        "data_fingerprint": "0123456789abcdef",
    }
    (folder / TRAINING_SUMMARY_FILE).write_text(json.dumps(summary))
    return str(folder)
