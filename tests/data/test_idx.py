"""The IDX reader on the real Fashion-MNIST files and on broken ones."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from components.data.idx import IdxError, read_idx, read_idx_part
from components.data.sources import SourceError, load_idx_folder

from .conftest import write_idx


def test_real_files(fashion_dir):
    train = read_idx_part(fashion_dir, "train")
    test = read_idx_part(fashion_dir, "test")
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28)
    assert train.labels.shape == (60000,) and test.labels.shape == (10000,)
    # Fashion-MNIST is balanced: 6000 / 1000 of each class.
    assert np.bincount(train.labels).tolist() == [6000] * 10
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert train.images.max() == 255 and train.images.min() == 0


def test_uncompressed_folder_reads_the_same(fashion_dir, tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(gzip.decompress((fashion_dir / f"{name}.gz").read_bytes()))
    plain = read_idx_part(tmp_path, "test")
    gz = read_idx_part(fashion_dir, "test")
    assert plain.images_file.suffix != ".gz"
    np.testing.assert_array_equal(plain.images, gz.images)
    np.testing.assert_array_equal(plain.labels, gz.labels)


def test_small_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a.gz", arr), ndim=3), arr)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "a", arr, gz=False), ndim=3), arr)


def test_truncated_raw_file(tmp_path):
    path = write_idx(tmp_path / "x-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8), gz=False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IdxError, match=r"x-images-idx3-ubyte: truncated: 3820 data bytes; expected 3920"):
        read_idx(path, ndim=3)


def test_truncated_gzip_file(fashion_dir, tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes((fashion_dir / path.name).read_bytes()[:2000])
    with pytest.raises(IdxError, match=r"t10k-labels-idx1-ubyte\.gz: broken or truncated gzip"):
        read_idx(path, ndim=1)


def test_truncated_header(tmp_path):
    path = tmp_path / "h"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(IdxError, match="truncated header"):
        read_idx(path)


def test_wrong_magic(tmp_path):
    path = write_idx(tmp_path / "bad.gz", np.zeros((2, 2, 2), np.uint8), magic=b"PK\x03\x04")
    with pytest.raises(IdxError, match=r"bad\.gz: wrong magic number 0x504b0304; expected 0x00000803"):
        read_idx(path, ndim=3)


def test_wrong_number_of_dimensions(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros((2, 2), np.uint8))
    with pytest.raises(IdxError, match=r"labels\.gz: 2 dimension\(s\) in the header; expected 1"):
        read_idx(path, ndim=1)


def test_trailing_bytes(tmp_path):
    path = write_idx(tmp_path / "t", np.zeros((3,), np.uint8), gz=False)
    path.write_bytes(path.read_bytes() + b"\x00\x00")
    with pytest.raises(IdxError, match="2 unexpected trailing bytes"):
        read_idx(path, ndim=1)


def test_count_mismatch(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros((4,), np.uint8))
    with pytest.raises(IdxError, match=r"has 5 images but .*t10k-labels-idx1-ubyte\.gz has 4 labels"):
        read_idx_part(tmp_path, "test")


def test_missing_folder(tmp_path):
    with pytest.raises(SourceError, match=r"no-such-folder: source folder not found"):
        load_idx_folder(tmp_path / "no-such-folder")


def test_missing_file(fashion_dir, tmp_path):
    shutil.copy(fashion_dir / "train-images-idx3-ubyte.gz", tmp_path)
    with pytest.raises(SourceError, match=r"no train-labels-idx1-ubyte\.gz or train-labels-idx1-ubyte"):
        load_idx_folder(tmp_path)


def test_labels_outside_classes_are_kept_aside(tmp_path):
    for part, labels in (("train", [0, 1, 12, 3, 200, 5]), ("t10k", [9, 0, 4])):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", np.zeros((len(labels), 28, 28), np.uint8))
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", np.array(labels, np.uint8))
    source = load_idx_folder(tmp_path)
    assert len(source.train) == 4
    assert source.train.index.tolist() == [0, 1, 3, 5]
    assert [i for i, _ in source.train.rejected] == [2, 4]
    assert "label 12 outside 0..9" in source.train.rejected[0][1]
    assert source.test.rejected == []


def test_huge_dimensions_byte_count_does_not_overflow(tmp_path):
    """Three sizes of 2**32-1: the expected byte count is (2**32-1)**3, not an int64 wrapped around."""
    path = tmp_path / "huge"
    size = 2**32 - 1
    path.write_bytes(bytes([0, 0, 8, 3]) + size.to_bytes(4, "big") * 3 + b"\x00" * 10)
    expected = size**3
    assert expected > 2**63  # numpy's int64 product wraps to 12884901887
    with pytest.raises(IdxError) as err:
        read_idx(path, ndim=3)
    assert str(err.value) == (
        f"{path}: truncated: 10 data bytes; expected {expected} for shape {size}x{size}x{size}"
    )
