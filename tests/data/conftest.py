"""Fixtures of the data-stage tests: small configurations and one tiny built data set."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from components.data.build import build_dataset
from components.data.config import DataConfig

TINY = dict(training_size=200, validation_size=40, production_size=300)


def write_idx(path: Path, array: np.ndarray, gz: bool = True, magic: bytes | None = None) -> Path:
    """Write ``array`` (uint8) as an IDX file; ``magic`` replaces the real 4-byte magic."""
    dims = array.shape
    header = magic or bytes([0, 0, 0x08, len(dims)])
    raw = header + b"".join(int(d).to_bytes(4, "big") for d in dims) + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return path


def hash_tree(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def tiny_config(fashion_dir) -> DataConfig:
    return DataConfig(source=str(fashion_dir), seed=7, **TINY)


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory, fashion_dir):
    """One tiny data set, built once: (summary, output folder, card path, grid path)."""
    root = tmp_path_factory.mktemp("tiny")
    config = DataConfig(source=str(fashion_dir), seed=3, **TINY)
    summary = build_dataset(config, root / "dataset", root / "card.md", root / "grid.png", quiet=True)
    return summary, root / "dataset", root / "card.md", root / "grid.png"
