"""Drift stage benchmark: the chunked centroid pass vs. a naive load, and the whole stage.

    .venv/bin/python benchmarks/bench_drift.py                 # 200,000 x 2,048 + default-sized stage
    .venv/bin/python benchmarks/bench_drift.py --rows 20000    # quicker

Part 1 computes the centroid of ``--rows`` random float32 vectors of ``--dim`` values,
chunked (``StreamingCentroid``, one pass, bounded memory) and naively (everything in
memory), first from a raw float32 file, then from a prepared ``production.parquet``
through the stage's reader (``components.drift.io.iter_rows``) vs. pandas + ``np.stack``.
Each step runs in a forked child of this process, so each gets its own memory peak
(growth of the resident set over the step).
Part 2 runs the whole stage on a default-sized input (30,000 training, 3,000
validation, 6,000 production rows over 30 days, like the data stage's defaults).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from components.common import schema
from components.drift import io as dio
from components.drift.config import DriftConfig
from components.drift.detectors import StreamingCentroid
from components.drift.stage import run_drift

# The test fixtures live under tests/ (they never ship in an image); `python benchmarks/bench_drift.py`
# puts benchmarks/ on sys.path, not the repository root that holds them.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.fixtures.drift_rows import write_prepared  # noqa: E402

C = schema.PreparedColumns
MB = 1024 * 1024


def write_vectors(path: Path, rows: int, dim: int, chunk: int = 10_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2026-11-01", tz="UTC")
    with pq.ParquetWriter(path, schema.PREPARED_ARROW_SCHEMA) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            vec = rng.random((n, dim), dtype=np.float32)
            prob = np.full((n, schema.NUM_CLASSES), 0.1, dtype=np.float32)
            offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
            poff = pa.array(np.arange(0, (n + 1) * schema.NUM_CLASSES, schema.NUM_CLASSES, dtype=np.int32))
            ids = [f"r{start + i}" for i in range(n)]
            table = pa.table(
                {
                    C.PREDICTION_ID: ids,
                    C.PREDICTION_TS: pa.array(
                        (t0 + pd.to_timedelta(np.arange(start, start + n), unit="s")).astype(
                            "datetime64[us, UTC]"
                        ),
                        type=schema.TIMESTAMP_TYPE,
                    ),
                    C.PREDICTION_LABEL: ["Bag"] * n,
                    C.ACTUAL_LABEL: ["Bag"] * n,
                    C.PREDICTION_SCORE: pa.array(np.full(n, 0.5, dtype=np.float32)),
                    C.IMAGE_VECTOR: pa.ListArray.from_arrays(offsets, pa.array(vec.ravel())),
                    C.IMAGE_LINK: [""] * n,
                    C.PROBABILITIES: pa.ListArray.from_arrays(poff, pa.array(prob.ravel())),
                    C.IMAGE_ID: ids,
                    C.DEGRADATION: ["none"] * n,
                    C.BRIGHTNESS: pa.array(np.zeros(n, dtype=np.float32)),
                    C.CONTRAST: pa.array(np.zeros(n, dtype=np.float32)),
                    C.SHARPNESS: pa.array(np.zeros(n, dtype=np.float32)),
                },
                schema=schema.PREPARED_ARROW_SCHEMA,
            )
            writer.write_table(table)


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def measure(fn):
    """Run ``fn`` in a forked child of this process: (result, seconds, peak RSS growth in MiB).

    Forking gives each step its own peak (ru_maxrss) while it shares this process's state.
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)

    def run():
        gc.collect()
        before = _rss_mib()
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child.send((out, dt, peak - before))

    proc = ctx.Process(target=run)
    proc.start()
    result = parent.recv()
    proc.join()
    return result


def chunked_centroid_parquet(path: Path, dim: int) -> np.ndarray:
    acc = StreamingCentroid(dim)
    for rows in dio.iter_rows(path, "production", dim, dio.Rejected()):
        acc.update(rows.vectors)
    return acc.centroid


def naive_centroid_parquet(path: Path) -> np.ndarray:
    df = pd.read_parquet(path, columns=[C.IMAGE_VECTOR])
    return np.stack(df[C.IMAGE_VECTOR].to_numpy()).mean(axis=0, dtype=np.float64)


def chunked_centroid_array(path: Path, rows: int, dim: int, chunk: int = 8192) -> np.ndarray:
    acc = StreamingCentroid(dim)
    with open(path, "rb") as fh:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            acc.update(np.fromfile(fh, dtype=np.float32, count=n * dim).reshape(n, dim))
    return acc.centroid


def naive_centroid_array(path: Path, rows: int, dim: int) -> np.ndarray:
    x = np.fromfile(path, dtype=np.float32).reshape(rows, dim)
    return x.mean(axis=0, dtype=np.float64)


def centroid_part(tmp: Path, rows: int, dim: int) -> None:
    raw = tmp / "vectors.f32"
    rng = np.random.default_rng(0)
    with open(raw, "wb") as fh:
        for start in range(0, rows, 10_000):
            fh.write(rng.random((min(10_000, rows - start), dim), dtype=np.float32).tobytes())
    a1, t1, m1 = measure(lambda: chunked_centroid_array(raw, rows, dim))
    print(f"centroid of {rows} x {dim} float32, chunked (8,192 rows): {t1:.2f} s, peak +{m1:.0f} MiB")
    a2, t2, m2 = measure(lambda: naive_centroid_array(raw, rows, dim))
    print(f"centroid, naive (whole array in memory, then mean): {t2:.2f} s, peak +{m2:.0f} MiB")
    print(f"  max |difference|: {np.abs(a1 - a2).max():.2e}")
    raw.unlink()

    path = tmp / "production.parquet"
    t0 = time.perf_counter()
    write_vectors(path, rows, dim)
    print(
        f"wrote {rows} x {dim} as prepared Parquet ({path.stat().st_size / MB:.0f} MiB) "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    c1, t1, m1 = measure(lambda: chunked_centroid_parquet(path, dim))
    print(f"centroid from Parquet, chunked (stage reader, incl. decoding): {t1:.2f} s, peak +{m1:.0f} MiB")
    c2, t2, m2 = measure(lambda: naive_centroid_parquet(path))
    print(f"centroid from Parquet, naive (pandas + np.stack): {t2:.2f} s, peak +{m2:.0f} MiB")
    print(f"  max |difference|: {np.abs(c1 - c2).max():.2e}")
    path.unlink()


def stage_part(tmp: Path, dim: int, projection: str) -> None:
    folder = write_prepared(
        tmp / "prepared",
        seed=0,
        dim=dim,
        n_train=30_000,
        n_validation=3_000,
        days=30,
        per_day=200,
        drift_days=tuple(range(12, 19)),
        shift=1.0,
    )
    cfg = DriftConfig(projection=projection)
    result, dt, mem = measure(
        lambda: run_drift(folder, folder, tmp / "report.html", tmp / "table.parquet", cfg)
    )
    size = (tmp / "report.html").stat().st_size / MB
    print(
        f"whole stage ({projection}, 39,000 rows x {dim}, fresh process incl. numba compilation): {dt:.1f} s, "
        f"peak +{mem:.0f} MiB, report {size:.1f} MiB, flagged {int(result.table['flagged'].sum())} of 30 windows"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--stage-dim", type=int, default=512, help="embedding size in the whole-stage run")
    ap.add_argument("--projection", default="umap", choices=("umap", "pca"))
    ap.add_argument("--skip-stage", action="store_true")
    ap.add_argument("--skip-centroid", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.skip_centroid:
            centroid_part(tmp, args.rows, args.dim)
        if not args.skip_stage:
            stage_part(tmp, args.stage_dim, args.projection)


if __name__ == "__main__":
    main()
