"""Benchmark of the ingest stage: 100,000 images from a folder with a CSV manifest, and its memory.

Writes ``--rows`` images made from real Fashion-MNIST (train + test, the 70,000 images cycled, every
second pass mirrored; two thirds greyscale PNG, one third colour JPEG) into a temporary folder with
``manifest.csv`` (location, timestamp, prediction id, label, served label and score, one extra
column), then in this process:

1. ingests the first ``--baseline-rows`` rows (a manifest of its own), the baseline;
2. ingests all ``--rows`` rows.

For each it prints the time, rows per second, and the peak RSS (``VmHWM``, reset between the runs
through ``/proc/self/clear_refs``) minus the RSS before the run: the growth from the baseline to the
full batch is what the batch size costs in memory (it must stay small: the split is written in
chunks, only 8-byte hashes of the ids are kept per row).

    .venv/bin/python benchmarks/bench_ingest.py [--rows 100000] [--baseline-rows 10000] [--workers 8]
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.common import schema  # noqa: E402
from components.data.idx import read_idx  # noqa: E402
from components.ingest.config import IngestConfig  # noqa: E402
from components.ingest.ingest import ingest_batch  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _status(field: str) -> int:
    """A memory figure of /proc/self/status in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        return False
    return True


def write_batch(folder: Path, rows: int, baseline_rows: int) -> tuple[Path, Path, int]:
    """The images and two manifests (the first ``baseline_rows`` rows, all rows); returns bytes written."""
    images = np.concatenate(
        [
            read_idx(FASHION / "train-images-idx3-ubyte.gz", 3),
            read_idx(FASHION / "t10k-images-idx3-ubyte.gz", 3),
        ]
    )
    labels = np.concatenate(
        [
            read_idx(FASHION / "train-labels-idx1-ubyte.gz", 1),
            read_idx(FASHION / "t10k-labels-idx1-ubyte.gz", 1),
        ]
    )
    (folder / "img").mkdir(parents=True)
    total = 0
    header = [
        "image_uri",
        "timestamp",
        "prediction_id",
        "label",
        "prediction_label",
        "prediction_score",
        "store",
    ]
    small, full = folder / "manifest-baseline.csv", folder / "manifest.csv"
    start = 1_795_000_000
    with open(small, "w", newline="") as fs, open(full, "w", newline="") as ff:
        ws, wf = csv.writer(fs), csv.writer(ff)
        ws.writerow(header)
        wf.writerow(header)
        for i in range(rows):
            k = i % len(images)
            pixels = images[k] if (i // len(images)) % 2 == 0 else images[k][:, ::-1]
            buf = io.BytesIO()
            if i % 3 == 2:
                rgb = np.stack([pixels, (pixels * 0.8).astype(np.uint8), (pixels * 0.6).astype(np.uint8)], -1)
                Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=90)
                name = f"img/{i // 10_000:02d}/{i:06d}.jpg"
            else:
                Image.fromarray(np.ascontiguousarray(pixels), "L").save(buf, "PNG")
                name = f"img/{i // 10_000:02d}/{i:06d}.png"
            path = folder / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(buf.getvalue())
            total += len(buf.getvalue())
            row = [
                name,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i * 6)),
                f"pred-{i:07d}",
                schema.CLASS_NAMES[labels[k]] if i % 2 else "",
                schema.CLASS_NAMES[labels[k]],
                f"{0.5 + (i % 50) / 100:.2f}",
                f"store-{i % 7}",
            ]
            wf.writerow(row)
            if i < baseline_rows:
                ws.writerow(row)
    return small, full, total


def run(manifest: Path, out: Path, workers: int) -> dict[str, float]:
    """One ingest run, timed, with its peak RSS growth."""
    exact = _reset_peak()
    before = _status("VmRSS")
    t0 = time.perf_counter()
    result = ingest_batch(
        IngestConfig(source_uri=str(manifest), read_workers=workers),
        out,
        out.with_suffix(".rejected.parquet"),
    )
    seconds = time.perf_counter() - t0
    assert result.rows_rejected == 0, result.rejected
    return {
        "rows": result.rows_written,
        "seconds": seconds,
        "rows_per_s": result.rows_written / seconds,
        "peak_growth_mb": (_status("VmHWM") - before) / 1e6,
        "exact_peak": exact,
        "output_mb": result.output_bytes / 1e6,
    }


def main() -> int:
    """Write the batch, ingest the baseline and the full batch, print the figures."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--baseline-rows", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        t0 = time.perf_counter()
        small, full, nbytes = write_batch(tmp / "batch", args.rows, args.baseline_rows)
        print(f"wrote {args.rows} images ({nbytes / 1e6:.1f} MB) in {time.perf_counter() - t0:.1f} s")
        # warm-up: imports, datasets, Pillow plugins (not measured)
        ingest_batch(
            IngestConfig(source_uri=str(small), read_workers=args.workers, chunk_rows=64),
            tmp / "warm",
            tmp / "warm.parquet",
            quiet=True,
        )
        figures = {}
        for name, manifest in (("baseline", small), ("full", full)):
            figures[name] = run(manifest, tmp / f"out-{name}", args.workers)
            f = figures[name]
            print(
                f"{name:>8}: {f['rows']:>7.0f} rows in {f['seconds']:6.1f} s = {f['rows_per_s']:6.0f} rows/s, "
                f"peak RSS growth {f['peak_growth_mb']:6.1f} MB, output {f['output_mb']:.1f} MB"
                + ("" if f["exact_peak"] else " (VmHWM not resettable: the peak is the process's)")
            )
        growth = figures["full"]["peak_growth_mb"] - figures["baseline"]["peak_growth_mb"]
        print(
            f"memory: {args.rows} rows peak {figures['full']['peak_growth_mb']:.1f} MB vs {args.baseline_rows} rows "
            f"{figures['baseline']['peak_growth_mb']:.1f} MB: {growth:+.1f} MB for "
            f"{args.rows - args.baseline_rows} more rows; cpus {os.cpu_count()}, workers {args.workers}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
