"""Fixtures of the evaluate-stage tests: a small real data set, two briefly trained models, a registry."""

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
def eval_dataset_dir(fashion_dir, tmp_path_factory) -> Path:
    """120 training / 60 validation / 140 production rows of real Fashion-MNIST (production degraded)."""
    out = tmp_path_factory.mktemp("eval-data") / "dataset"
    build_dataset(
        DataConfig(
            source=str(fashion_dir), training_size=120, validation_size=60, production_size=140, seed=7
        ),
        out,
        quiet=True,
    )
    return out


def _train(dataset: Path, out: Path, steps: int, seed: int) -> Path:
    train_model(dataset, out, TrainConfig(max_steps=steps, batch_size=32, threads=1, seed=seed))
    return out


@pytest.fixture(scope="session")
def model_a(eval_dataset_dir, tmp_path_factory) -> Path:
    """A model folder written by the train stage after 3 real steps."""
    return _train(eval_dataset_dir, tmp_path_factory.mktemp("eval-model-a") / "model", 3, 0)


@pytest.fixture(scope="session")
def model_b(eval_dataset_dir, tmp_path_factory) -> Path:
    """Another model folder: 4 steps from another seed (other weights, other predictions)."""
    return _train(eval_dataset_dir, tmp_path_factory.mktemp("eval-model-b") / "model", 4, 1)


def registry_with_production(root: Path, model_dir: Path, name: str = "fashion-mnist-classifier") -> str:
    """A local registry whose production version of ``name`` is ``model_dir``; returns its URI."""
    from components.common import registry

    reg = registry.open_registry(str(root), name)
    v = reg.register(str(model_dir), {}, {}, "test: first model")
    reg.promote(v.version, "test: in production")
    return str(root)
