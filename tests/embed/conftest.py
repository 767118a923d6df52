"""Fixtures of the embed-stage tests: a small real data set and a briefly trained model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components.data.build import build_dataset
from components.data.config import DataConfig
from components.train.config import TrainConfig
from components.train.train import train_model

# The tests share two busy cores with other jobs: one intra-op thread is the fast setting.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def embed_dataset_dir(fashion_dir, tmp_path_factory) -> Path:
    """120 training / 40 validation / 90 production rows of real Fashion-MNIST (production degraded)."""
    out = tmp_path_factory.mktemp("embed-data") / "dataset"
    build_dataset(
        DataConfig(
            source=str(fashion_dir), training_size=120, validation_size=40, production_size=90, seed=5
        ),
        out,
        quiet=True,
    )
    return out


@pytest.fixture(scope="session")
def model_dir(embed_dataset_dir, tmp_path_factory) -> Path:
    """A model folder written by the train stage after a few real steps."""
    out = tmp_path_factory.mktemp("embed-model") / "model"
    train_model(embed_dataset_dir, out, TrainConfig(max_steps=3, batch_size=32, threads=1))
    return out
