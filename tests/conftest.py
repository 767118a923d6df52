"""Fixtures shared by every test module."""

from __future__ import annotations

import builtins
from pathlib import Path

import pytest

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    """Debian's real Fashion-MNIST IDX files (installed by scripts/setup.sh)."""
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"{FASHION_MNIST_DIR} is missing: run `make setup` (installs dataset-fashion-mnist)")
    return FASHION_MNIST_DIR


_REAL_PRINT = builtins.print


@pytest.fixture(autouse=True)
def _restore_print():
    """Put the real ``print`` back after each test.

    kfp.local 2.17 swaps ``builtins.print`` for an indenting wrapper while a task runs; tasks in
    parallel threads can leave one installed, which then leaks into later tests (numba trips on it).
    """
    yield
    builtins.print = _REAL_PRINT
