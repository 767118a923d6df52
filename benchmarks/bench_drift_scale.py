"""The whole drift stage at cluster sizes: time and peak memory from 100,000 to 1,000,000 production rows.

    .venv/bin/python benchmarks/bench_drift_scale.py                          # 100k, 300k, 1M x 2,048
    .venv/bin/python benchmarks/bench_drift_scale.py --sizes 20000,60000      # quicker

For each size a prepared folder is written in chunks (synthetic rows with the prepare stage's
column contract, ``schema.PREPARED_ARROW_SCHEMA``: 2,048 float32 values per embedding, 10
probabilities, labels, 30 days of timestamps), next to a fixed baseline (20,000 training and
5,000 validation rows), and the stage (``components.drift.stage.run_drift``: baseline samples,
calibration, the chunked production scan, the table, the report with its embedding view) runs on
it in a fresh Python process. That process reports its wall time and its peak resident memory
(``VmHWM`` of /proc/self/status, read at the end: ``getrusage``'s ``ru_maxrss`` would carry the
parent's peak across ``exec``) and the same after imports only, so the stage's own peak is the
difference. The production file is deleted after each size (1,000,000 rows take 8.2 GB).

Memory bound, by construction: the production scan holds one chunk of 8,192 rows (64 MiB of
vectors and its copies), each window's running sums and a sample of at most ``max_window_rows``
(1,000) rows (30 daily windows: 30 x 1,000 x 2,048 x 4 B = 234 MiB), the baseline samples (5,000
rows, 39 MiB) and the view's 3,000 points; none of it grows with the rows. The printed growth
from the smallest to the largest size checks that.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.common import schema  # noqa: E402

C = schema.PreparedColumns
GB = 1e9
DAY_US = 86_400_000_000
START_US = 1_793_491_200_000_000  # 2026-11-01 00:00 UTC
STRINGS = [C.PREDICTION_ID, C.PREDICTION_LABEL, C.ACTUAL_LABEL, C.IMAGE_LINK, C.IMAGE_ID, C.DEGRADATION]


def _vm_hwm_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def write_rows(
    path: Path, rows: int, dim: int, seed: int, t0_us: int, span_us: int, shift_from: float = 1.0
) -> None:
    """``rows`` prepared rows in chunks of 10,000, timestamps spread evenly over ``[t0, t0 + span)``.

    Vectors: one of ten class centres plus noise; rows after ``shift_from`` (a share of the span)
    are shifted, so some windows drift. Written chunk by chunk: memory stays one chunk.
    """
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(12345).normal(0.0, 1.0, (schema.NUM_CLASSES, dim)).astype(np.float32)
    noise = rng.normal(0.0, 1.0, (4096, dim)).astype(np.float32)  # recycled noise: cheap to write 8 GB
    shift = np.random.default_rng(999).normal(0.0, 0.5, dim).astype(np.float32)
    k = schema.NUM_CLASSES
    names = np.array(schema.CLASS_NAMES, dtype=object)
    chunk = 10_000
    with pq.ParquetWriter(path, schema.PREPARED_ARROW_SCHEMA, use_dictionary=STRINGS) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            idx = np.arange(start, start + n)
            ts = t0_us + idx * span_us // max(rows, 1)
            labels = rng.integers(0, k, n)
            vec = centres[labels] + noise[rng.integers(0, len(noise), n)] * rng.uniform(0.8, 1.2, (n, 1))
            late = (ts - t0_us) >= shift_from * span_us
            vec[late] += shift
            prob = np.full((n, k), 0.02, dtype=np.float32)
            prob[np.arange(n), labels] = 0.82
            ids = [f"p{seed}-{i}" for i in idx]
            table = pa.table(
                {
                    C.PREDICTION_ID: ids,
                    C.PREDICTION_TS: pa.array(ts, pa.int64()).cast(schema.TIMESTAMP_TYPE),
                    C.PREDICTION_LABEL: names[labels],
                    C.ACTUAL_LABEL: names[labels],
                    C.PREDICTION_SCORE: pa.array(np.full(n, 0.82, dtype=np.float32)),
                    C.IMAGE_VECTOR: pa.ListArray.from_arrays(
                        pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32)),
                        pa.array(vec.astype(np.float32).ravel()),
                    ),
                    C.IMAGE_LINK: [""] * n,
                    C.PROBABILITIES: pa.ListArray.from_arrays(
                        pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)), pa.array(prob.ravel())
                    ),
                    C.IMAGE_ID: ids,
                    C.DEGRADATION: ["none"] * n,
                    C.BRIGHTNESS: pa.array(np.full(n, 0.3, dtype=np.float32)),
                    C.CONTRAST: pa.array(np.full(n, 0.3, dtype=np.float32)),
                    C.SHARPNESS: pa.array(np.full(n, 0.5, dtype=np.float32)),
                },
                schema=schema.PREPARED_ARROW_SCHEMA,
            )
            writer.write_table(table)


def child(folder: str, projection: str) -> None:
    """In a fresh process: run the whole stage on ``folder``; print one JSON line of figures."""
    from components.drift.config import DriftConfig
    from components.drift.stage import run_drift

    base = _vm_hwm_mib()
    out = Path(folder)
    t0 = time.perf_counter()
    result = run_drift(
        out,
        out,
        out / "report.html",
        out / "table.parquet",
        DriftConfig(projection=projection, thumbnails=False),
    )
    dt = time.perf_counter() - t0
    print(
        "RESULT "
        + json.dumps(
            {
                "seconds": dt,
                "peak_mib": _vm_hwm_mib(),
                "after_imports_mib": base,
                "windows": len(result.table),
                "flagged": int(result.table["flagged"].sum()),
                "report_mib": (out / "report.html").stat().st_size / 2**20,
            }
        ),
        flush=True,
    )


def main() -> None:
    """Write each size, run the stage on it in a subprocess, print the growth."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,300000,1000000", help="production rows, comma-separated")
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--projection", default="umap", choices=("umap", "pca"))
    ap.add_argument("--dir", default="", help="folder for the files (default: a temporary folder)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.projection)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    need = max(sizes) * (args.dim * 4 + 120) + 25_000 * (args.dim * 4 + 120)
    with tempfile.TemporaryDirectory(dir=args.dir or None, prefix="drift-scale-") as tmp:
        folder = Path(tmp) / "prepared"
        folder.mkdir()
        free = shutil.disk_usage(tmp).free
        print(f"disk: {free / GB:.1f} GB free in {tmp}; the largest size needs about {need / GB:.1f} GB")
        if need > free * 0.9:
            raise SystemExit(
                f"not enough disk for {max(sizes):,} rows; pass smaller --sizes or another --dir"
            )
        t = time.perf_counter()
        write_rows(
            folder / schema.prepared_file(schema.TRAINING),
            20_000,
            args.dim,
            1,
            START_US - 60 * DAY_US,
            30 * DAY_US,
        )
        write_rows(
            folder / schema.prepared_file(schema.VALIDATION),
            5_000,
            args.dim,
            2,
            START_US - 30 * DAY_US,
            5 * DAY_US,
        )
        print(
            f"baseline: 20,000 training + 5,000 validation rows x {args.dim} ({time.perf_counter() - t:.1f} s)"
        )
        results = []
        for n in sizes:
            prod = folder / schema.prepared_file(schema.PRODUCTION)
            t = time.perf_counter()
            write_rows(prod, n, args.dim, 3, START_US, 30 * DAY_US, shift_from=0.8)
            size_gb = prod.stat().st_size / GB
            print(
                f"{n:>9,} production rows: wrote {size_gb:.2f} GB in {time.perf_counter() - t:.0f} s",
                flush=True,
            )
            cmd = [sys.executable, __file__, "--child", str(folder), "--projection", args.projection]
            proc = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if proc.returncode or line is None:
                print(proc.stdout[-3000:], proc.stderr[-3000:])
                raise SystemExit(f"the drift stage failed at {n:,} rows (exit status {proc.returncode})")
            r = json.loads(line[len("RESULT ") :])
            r.update(rows=n, file_gb=size_gb, stage_mib=r["peak_mib"] - r["after_imports_mib"])
            results.append(r)
            print(
                f"{n:>9,} rows: whole stage {r['seconds']:.1f} s ({n / r['seconds']:,.0f} rows/s), peak RSS "
                f"{r['peak_mib']:,.0f} MiB ({r['stage_mib']:,.0f} MiB over the {r['after_imports_mib']:,.0f} "
                f"after imports), {r['windows']} windows, {r['flagged']} flagged, report {r['report_mib']:.1f} MiB",
                flush=True,
            )
            prod.unlink()
    print("\n| production rows | file (GB) | whole stage (s) | rows/s | peak RSS (MiB) | stage's own (MiB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['rows']:,} | {r['file_gb']:.2f} | {r['seconds']:.1f} | {r['rows'] / r['seconds']:,.0f} "
            f"| {r['peak_mib']:,.0f} | {r['stage_mib']:,.0f} |"
        )
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(
            f"{a['rows']:,} -> {b['rows']:,} rows ({b['rows'] / a['rows']:.0f}x): time x{b['seconds'] / a['seconds']:.2f}, "
            f"peak RSS x{b['peak_mib'] / a['peak_mib']:.2f} ({b['peak_mib'] - a['peak_mib']:+,.0f} MiB); "
            f"marginal {(b['seconds'] - a['seconds']) / (b['rows'] - a['rows']) * 1e6:.1f} s per million rows"
        )


if __name__ == "__main__":
    main()
