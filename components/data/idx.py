"""Read IDX files (the MNIST / Fashion-MNIST format), gzipped or not.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the values.  Only
unsigned bytes (type code 0x08) are read: that is what (Fashion-)MNIST uses.
Every problem raises :class:`IdxError` (a ``ValueError``) naming the file and
saying what was expected.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"

# The two parts of an IDX folder and the base names of their files.
IDX_PARTS: dict[str, str] = {"train": "train", "test": "t10k"}
IMAGES_SUFFIX = "-images-idx3-ubyte"
LABELS_SUFFIX = "-labels-idx1-ubyte"


class IdxError(ValueError):
    """An IDX file or folder that cannot be used."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxError(f"{path}: file not found; expected an IDX file (gzipped or not)") from None
    if raw[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise IdxError(
                f"{path}: broken or truncated gzip stream ({exc}); expected a complete .gz file"
            ) from None
    return raw


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file of unsigned bytes; ``ndim`` is the expected number of dimensions.

    The array is read-only; a file read before (same path, size and modification time)
    comes from a small in-process cache.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise IdxError(f"{path}: file not found; expected an IDX file (gzipped or not)") from None
    return _read_idx_cached(path.resolve(), stat.st_size, stat.st_mtime_ns, ndim)


@lru_cache(maxsize=8)
def _read_idx_cached(path: Path, size: int, mtime_ns: int, ndim: int | None) -> np.ndarray:
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxError(f"{path}: {len(data)} bytes, too short for an IDX header; expected at least 4")
    zero, dtype_code, dims = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or dtype_code != UBYTE:
        want = f"0x0000{UBYTE:02x}{ndim:02x}" if ndim else f"0x0000{UBYTE:02x}NN"
        raise IdxError(
            f"{path}: wrong magic number 0x{data[:4].hex()}; expected {want} (IDX of unsigned bytes)"
        )
    if ndim is not None and dims != ndim:
        raise IdxError(f"{path}: {dims} dimension(s) in the header; expected {ndim}")
    header = 4 + 4 * dims
    if len(data) < header:
        raise IdxError(
            f"{path}: truncated header ({len(data)} bytes); expected {header} for {dims} dimensions"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=dims, offset=4))
    # Python ints: a product of up to 255 uint32 sizes must not wrap around (numpy's int64 would)
    expected = math.prod(shape) if shape else 0
    body = len(data) - header
    if body < expected:
        raise IdxError(
            f"{path}: truncated: {body} data bytes; expected {expected} for shape {'x'.join(map(str, shape))}"
        )
    if body > expected:
        raise IdxError(
            f"{path}: {body - expected} unexpected trailing bytes; "
            f"expected exactly {expected} for shape {'x'.join(map(str, shape))}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, base: str) -> Path:
    for name in (base + ".gz", base):
        if (folder / name).is_file():
            return folder / name
    raise IdxError(f"{folder}: no {base}.gz or {base}; expected the IDX files of one part of the data set")


@dataclass(frozen=True)
class IdxPart:
    """Images (N, H, W) and labels (N,) of one part of an IDX folder."""

    images: np.ndarray
    labels: np.ndarray
    images_file: Path
    labels_file: Path


def read_idx_part(folder: str | Path, part: str) -> IdxPart:
    """Read ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` of ``part`` (``train`` or ``test``)."""
    folder = Path(folder)
    if part not in IDX_PARTS:
        raise IdxError(f"unknown part {part!r}; expected one of {', '.join(IDX_PARTS)}")
    if not folder.is_dir():
        raise IdxError(f"{folder}: source folder not found; expected a folder of IDX files")
    base = IDX_PARTS[part]
    images_file = _find(folder, base + IMAGES_SUFFIX)
    labels_file = _find(folder, base + LABELS_SUFFIX)
    images = read_idx(images_file, ndim=3)
    labels = read_idx(labels_file, ndim=1)
    if len(images) != len(labels):
        raise IdxError(
            f"{images_file} has {len(images)} images but {labels_file} has {len(labels)} labels; "
            "expected the same count"
        )
    return IdxPart(images=images, labels=labels, images_file=images_file, labels_file=labels_file)
