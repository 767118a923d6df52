"""A production batch made from real Fashion-MNIST test images: mixed formats, colour, odd sizes, broken rows.

``make_batch(folder)`` writes the image files and returns the manifest rows (one per prediction):
``GOOD`` usable rows, then one broken row of every kind (``BROKEN``: reason -> rows).
``write_manifest`` writes those rows as CSV, JSON Lines or Parquet.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from components.common import schema
from components.data.idx import read_idx
from tests.storage.conftest import fake_aws_credentials, gcs_endpoint, s3_endpoint  # noqa: F401

FASHION = Path("/usr/share/datasets/fashion-mnist")
GOOD = 12  # usable rows of make_batch
MAX_BYTES = 20_000  # the tests' max_image_bytes: the noise PNG of the too_large row is bigger
# One broken row of each kind; what the rejected file must say.
BROKEN = {
    "missing": 1,
    "unreadable": 1,
    "empty": 1,
    "too_large": 1,
    "bad_timestamp": 1,
    "unknown_label": 1,
    "unknown_served_label": 1,
    "bad_score": 1,
    "duplicate_id": 1,
}
KINDS = ("png-grey", "jpeg-colour", "webp-grey", "png-rgba-odd", "jpeg-grey-wide", "webp-colour-tall")


def fashion(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` real Fashion-MNIST test images (uint8 [n, 28, 28]) and their labels."""
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz", 3)
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz", 1)
    return np.asarray(images[offset : offset + n]), np.asarray(labels[offset : offset + n]).astype(np.int64)


def encode(image: np.ndarray, kind: str) -> tuple[bytes, str, tuple[int, int]]:
    """One 28x28 greyscale image as the file kind; returns bytes, suffix and the (width, height) stored."""
    grey = Image.fromarray(image, mode="L")
    colour = Image.fromarray(
        np.stack([image, (image * 0.8).astype(np.uint8), (image * 0.5).astype(np.uint8)], axis=-1), mode="RGB"
    )
    buf = io.BytesIO()
    if kind == "png-grey":
        grey.save(buf, "PNG")
        return buf.getvalue(), ".png", (28, 28)
    if kind == "jpeg-colour":
        colour.save(buf, "JPEG", quality=95)
        return buf.getvalue(), ".jpg", (28, 28)
    if kind == "webp-grey":
        grey.save(buf, "WEBP", lossless=True)
        return buf.getvalue(), ".webp", (28, 28)
    if kind == "png-rgba-odd":
        rgba = colour.resize((33, 17)).convert("RGBA")
        rgba.save(buf, "PNG")
        return buf.getvalue(), ".png", (33, 17)
    if kind == "jpeg-grey-wide":
        grey.resize((90, 40)).save(buf, "JPEG", quality=90)
        return buf.getvalue(), ".jpeg", (90, 40)
    if kind == "webp-colour-tall":
        colour.resize((40, 64)).save(buf, "WEBP", quality=90)
        return buf.getvalue(), ".webp", (40, 64)
    raise ValueError(kind)


def make_batch(folder: Path, good: int = GOOD, broken: bool = True) -> list[dict[str, str]]:
    """Write the images under ``folder/img`` and return the manifest rows (all values as text)."""
    img = folder / "img"
    img.mkdir(parents=True, exist_ok=True)
    images, labels = fashion(good)
    rows = []
    for i in range(good):
        data, suffix, _ = encode(images[i], KINDS[i % len(KINDS)])
        name = f"img/{i:03d}{suffix}"
        (folder / name).write_bytes(data)
        label = schema.CLASS_NAMES[labels[i]] if i % 3 == 0 else (str(labels[i]) if i % 3 == 1 else "")
        rows.append(
            {
                "image_uri": name,
                "timestamp": f"2026-11-{20 + i % 5:02d}T{i % 24:02d}:00:00Z",
                "prediction_id": f"pred-{i:03d}",
                "label": label,
                "prediction_label": schema.CLASS_NAMES[(labels[i] + (i % 4 == 0)) % 10],
                "prediction_score": f"{0.5 + i / 100:.2f}",
                "store": f"store-{i % 2}",
            }
        )
    if not broken:
        return rows
    ok = rows[1]
    made = iter(range(100))

    def row(**changes: str) -> dict[str, str]:
        out = dict(ok, prediction_id=f"pred-broken-{next(made)}")
        out.update(changes)
        return out

    (img / "garbage.png").write_bytes(np.random.default_rng(0).bytes(500))
    (img / "empty.png").write_bytes(b"")
    noise = np.random.default_rng(1).integers(0, 256, (200, 200), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise, mode="L").save(buf, "PNG")
    assert len(buf.getvalue()) > MAX_BYTES
    (img / "huge.png").write_bytes(buf.getvalue())
    rows += [
        row(image_uri="img/not-there.png"),
        row(image_uri="img/garbage.png"),
        row(image_uri="img/empty.png"),
        row(image_uri="img/huge.png"),
        row(timestamp="yesterday"),
        row(label="Hat"),
        row(prediction_label="Scarf"),
        row(prediction_score="1.7"),
        dict(rows[0]),  # the same prediction id again
    ]
    return rows


def write_manifest(rows: list[dict[str, str]], path: Path, fmt: str) -> Path:
    """The rows as CSV, JSON Lines (numbers as JSON numbers where they are) or Parquet (text columns)."""
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as fh:
            for r in rows:
                r = dict(r)
                try:
                    r["prediction_score"] = float(r["prediction_score"])
                except ValueError:
                    pass
                if r["label"].isdigit():
                    r["label"] = int(r["label"])
                elif r["label"] == "":
                    r["label"] = None
                fh.write(json.dumps(r) + "\n")
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="session")
def fashion_dir_checked() -> Path:
    if not (FASHION / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"{FASHION} is missing: run `make setup` (installs dataset-fashion-mnist)")
    return FASHION
