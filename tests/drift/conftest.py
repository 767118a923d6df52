"""Fixtures of the drift stage's tests: small prepared folders built from the column contract."""

from __future__ import annotations

import pytest

from tests.fixtures.drift_rows import write_prepared

# The S3 emulator (moto on loopback) of the storage tests, for the drift history at an s3:// URI.
from tests.storage.conftest import fake_aws_credentials, s3_endpoint  # noqa: F401


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    """10 daily production windows of 120 rows; days 6 and 7 shifted; training, validation, images."""
    return write_prepared(tmp_path_factory.mktemp("prepared"), seed=0, n_train=1200, n_validation=600)
