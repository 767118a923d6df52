"""Benchmark of the ``prepared`` artifact's layout: objects, bytes and transfer time through S3 (moto).

The KFP launcher moves an artifact's files one at a time (``backend/src/v2/objectstore/object_store.go``:
the upload walks the local folder and writes each file; the download lists the prefix and reads each
object), so the number of files, not their bytes, sets the cost on a cluster. This script builds, at
``--rows`` rows (default 39,000: the data stage's default 30,000 + 3,000 + 6,000, real Fashion-MNIST
images from ``/usr/share/datasets/fashion-mnist``, random embeddings of ``--dim`` values):

1. the **new** layout, written by the real prepare stage (``prepare_records``, no image store): one
   table and one images file (``images-<environment>.parquet``) per environment, ``rejected.parquet``,
   ``manifest.json``;
2. the **baseline**, today's layout, from the same rows and the same PNG bytes: the same tables with
   ``image_link`` set to each file, and one PNG per image under ``images/<environment>/<image_id>.png``
   (what prepare wrote with ``image_store=''`` before).

Then, in this process, it starts a moto S3 server on loopback (as ``tests/storage/conftest.py`` does),
uploads each layout one object at a time (one PUT per file, in order) and downloads it the same way
(list the prefix, one GET per object), and prints objects, bytes, seconds and the ratio. It also
counts the objects of the other folder artifacts at the same size (the data set folder as
``save_to_disk`` writes it, an embed output, the drift outputs).

    .venv/bin/python benchmarks/bench_artifacts.py [--rows 39000] [--dim 256]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.common import schema  # noqa: E402
from components.prepare.config import PrepareConfig  # noqa: E402
from components.prepare.prepare import prepare_records  # noqa: E402
from tests.fixtures import prepare_inputs  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")
BIN = Path(sys.executable).parent
BUCKET = "mlpipeline"
P = schema.PreparedColumns
I = schema.PreparedImageColumns  # noqa: E741 - short name of the images columns


def split_counts(rows: int) -> dict[str, int]:
    """Rows per split in the data stage's default proportions (30,000 / 3,000 / 6,000 of 39,000)."""
    training = rows * 30 // 39
    validation = rows * 3 // 39
    return {
        schema.TRAINING: training,
        schema.VALIDATION: validation,
        schema.PRODUCTION: rows - training - validation,
    }


def build_new_layout(root: Path, rows: int, dim: int) -> tuple[Path, Path, Path, float]:
    """The data set, an embed output and the prepared folder of the new layout; prepare's seconds."""
    counts = split_counts(rows)
    images = prepare_inputs.read_idx_images(FASHION / "train-images-idx3-ubyte.gz", rows)
    dataset = prepare_inputs.write_dataset(root / "dataset", counts, images)
    table = pa.concat_tables(
        [prepare_inputs.embed_table(s, n, dim=dim, seed=i) for i, (s, n) in enumerate(counts.items())]
    )
    embed = prepare_inputs.write_embed_dir(root / "embed", table)
    t0 = time.perf_counter()
    prepare_records([embed], dataset, root / "new", PrepareConfig(now="2026-11-28T12:00:00Z"), progress=False)
    return dataset, embed, root / "new", time.perf_counter() - t0


def build_baseline_layout(new: Path, out: Path) -> Path:
    """Today's layout from the new one: the same tables, links to one PNG per image under images/."""
    out.mkdir(parents=True)
    for f in (schema.PREPARED_REJECTED_FILE, "manifest.json"):
        shutil.copy(new / f, out / f)
    for env in schema.SPLITS:
        if not (new / schema.prepared_file(env)).is_file():
            continue
        folder = out / "images" / env
        folder.mkdir(parents=True)
        images = pq.read_table(new / schema.prepared_images_file(env))
        links = []
        for image_id, data in zip(images[I.IMAGE_ID].to_pylist(), images[I.IMAGE].to_pylist(), strict=True):
            path = folder / f"{image_id}.png"
            path.write_bytes(data)
            links.append(str(path))
        table = pq.read_table(new / schema.prepared_file(env))
        table = table.set_column(table.schema.get_field_index(P.IMAGE_LINK), P.IMAGE_LINK, pa.array(links))
        pq.write_table(table, out / schema.prepared_file(env))
    return out


def folder_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted (the objects an artifact of this folder becomes)."""
    return sorted(p for p in folder.rglob("*") if p.is_file())


def start_moto(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A moto S3 server on a free loopback port, as tests/storage/conftest.py starts it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(tmp / "moto.log", "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/moto-api/", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"moto_server did not answer at {url}")


def transfer(client, folder: Path, prefix: str, into: Path) -> tuple[int, int, float, float]:
    """Upload ``folder`` one object at a time, then download it the same way; objects, bytes, seconds."""
    files = folder_files(folder)
    size = sum(f.stat().st_size for f in files)
    t0 = time.perf_counter()
    for f in files:  # the launcher: one write per file, in order
        client.put_object(
            Bucket=BUCKET, Key=f"{prefix}/{f.relative_to(folder).as_posix()}", Body=f.read_bytes()
        )
    up = time.perf_counter() - t0
    t0 = time.perf_counter()
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        keys += [o["Key"] for o in page.get("Contents", [])]
    for key in keys:  # one read per object, in order
        target = into / key[len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    down = time.perf_counter() - t0
    if len(keys) != len(files):
        raise RuntimeError(f"{prefix}: uploaded {len(files)} objects, listed {len(keys)}")
    return len(files), size, up, down


def main(argv: list[str] | None = None) -> int:
    """Build both layouts, move each through moto one object at a time, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=39_000, help="rows of the data set (default: %(default)s)")
    ap.add_argument(
        "--baseline-rows",
        type=int,
        default=10_000,
        help="rows of the run compared with today's layout (0 = --rows; default: %(default)s, since today's "
        "layout at 39,000 rows takes about 20 minutes a transfer here); the new layout is also moved at --rows",
    )
    ap.add_argument("--dim", type=int, default=256, help="embedding values (local profile: 256)")
    args = ap.parse_args(argv)
    base_rows = args.baseline_rows or args.rows
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"  # moto takes any; never a real account's
    os.environ.pop("AWS_PROFILE", None)
    import boto3

    with tempfile.TemporaryDirectory(prefix="bench-artifacts-") as tmp_name:
        tmp = Path(tmp_name)
        built = {}
        for rows in dict.fromkeys([base_rows, args.rows]):
            t0 = time.perf_counter()
            built[rows] = build_new_layout(tmp / f"rows-{rows}", rows, args.dim)
            print(
                f"{rows} rows ({split_counts(rows)}), {args.dim}-value vectors: inputs and prepare "
                f"{time.perf_counter() - t0:.0f} s, of which prepare (new layout) {built[rows][3]:.1f} s"
            )
        old = build_baseline_layout(built[base_rows][2], tmp / "old")
        runs = [
            ("today, one PNG per image", base_rows, old),
            ("new, images-<env>.parquet", base_rows, built[base_rows][2]),
        ]
        if args.rows != base_rows:
            runs.append(("new, images-<env>.parquet", args.rows, built[args.rows][2]))
        proc, url = start_moto(tmp)
        try:
            client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            figures = [
                (name, rows, transfer(client, folder, f"run-{i}", tmp / f"down-{i}"))
                for i, (name, rows, folder) in enumerate(runs)
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        dataset, embed = built[args.rows][0], built[args.rows][1]
        others = {
            "data (DatasetDict save_to_disk)": len(folder_files(dataset)),
            "embed (one shard)": len(folder_files(embed)),
            "prepared (new)": len(folder_files(built[args.rows][2])),
        }
    print("\nprepared artifact through moto S3, one object at a time (the KFP launcher's way)")
    print(
        f"{'layout':28} {'rows':>7} {'objects':>8} {'MB':>7} {'upload s':>9} {'download s':>11} {'total s':>8}"
    )
    for name, rows, (n, size, up, down) in figures:
        print(f"{name:28} {rows:7d} {n:8d} {size / 1e6:7.1f} {up:9.2f} {down:11.2f} {up + down:8.2f}")
    (_, _, (n_old, _, up_old, down_old)), (_, _, (n_new, _, up_new, down_new)) = figures[:2]
    ratio = (up_old + down_old) / (up_new + down_new)
    met = "met" if ratio >= 20 else "NOT met"
    print(
        f"ratio at {base_rows} rows: the new layout moves {ratio:.0f}x faster ({n_old} -> {n_new} objects); "
        f"target >= 20x: {met}"
    )
    print(
        f"objects per folder artifact at {args.rows} rows: "
        + ", ".join(f"{k} {v}" for k, v in others.items())
    )
    print(f"most objects in one of these artifacts: {max(others.values())} (target <= 50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
