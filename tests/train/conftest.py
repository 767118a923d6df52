"""Fixtures of the train-stage tests: a small real data set built by the data stage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.data.build import build_dataset
from components.data.config import DataConfig

# The tests share two busy cores with other jobs: one intra-op thread is the fast setting.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def small_dataset(fashion_dir, tmp_path_factory) -> Path:
    """300 training / 100 validation / 100 production rows of real Fashion-MNIST."""
    out = tmp_path_factory.mktemp("train-data") / "dataset"
    build_dataset(
        DataConfig(
            source=str(fashion_dir), training_size=300, validation_size=100, production_size=100, seed=3
        ),
        out,
        quiet=True,
    )
    return out
