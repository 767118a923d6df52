"""Fixtures of the prepare tests: real Fashion-MNIST images and a DatasetDict holding them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.common import schema
from tests.fixtures import prepare_inputs

# rows per split of the data set (tests/prepare/test_prepare.py's COUNTS)
COUNTS = {schema.TRAINING: 30, schema.VALIDATION: 10, schema.PRODUCTION: 25}


@pytest.fixture(scope="module")
def images(fashion_dir) -> np.ndarray:
    return prepare_inputs.read_idx_images(fashion_dir / "t10k-images-idx3-ubyte.gz", sum(COUNTS.values()))


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory, images) -> Path:
    return prepare_inputs.write_dataset(tmp_path_factory.mktemp("ds") / "dataset", COUNTS, images)
