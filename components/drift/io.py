"""Reading prepared Parquet files in one chunked pass: validation, window sums, samples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from components.common import schema

C = schema.PreparedColumns
META_COLUMNS = (
    C.PREDICTION_ID,
    C.PREDICTION_LABEL,
    C.ACTUAL_LABEL,
    C.IMAGE_LINK,
    C.IMAGE_ID,
    C.DEGRADATION,
    C.BRIGHTNESS,
    C.CONTRAST,
    C.SHARPNESS,
)
REQUIRED = (
    C.PREDICTION_TS,
    C.PREDICTION_LABEL,
    C.ACTUAL_LABEL,
    C.PREDICTION_SCORE,
    C.IMAGE_VECTOR,
    C.PROBABILITIES,
)


@dataclass
class Rows:
    """Valid rows of a chunk (or a sample): arrays of equal length."""

    ts: np.ndarray  # int64 microseconds UTC
    vectors: np.ndarray  # (n, d) float32
    probabilities: np.ndarray  # (n, k) float32
    scores: np.ndarray  # (n,) float32
    meta: dict[str, np.ndarray]  # META_COLUMNS that the file has

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, idx: np.ndarray) -> Rows:
        """The rows at ``idx`` (an index array or boolean mask)."""
        return Rows(
            self.ts[idx],
            self.vectors[idx],
            self.probabilities[idx],
            self.scores[idx],
            {k: v[idx] for k, v in self.meta.items()},
        )

    @staticmethod
    def concat(parts: list[Rows]) -> Rows:
        """``parts`` one after the other (the meta columns of the first part)."""
        keys = parts[0].meta.keys()
        return Rows(
            np.concatenate([p.ts for p in parts]),
            np.concatenate([p.vectors for p in parts]),
            np.concatenate([p.probabilities for p in parts]),
            np.concatenate([p.scores for p in parts]),
            {k: np.concatenate([p.meta[k] for p in parts]) for k in keys},
        )


@dataclass
class Rejected:
    """Rows that cannot be used, kept aside with their reason (never silently dropped)."""

    rows: list[tuple[str, str, int, str, str]] = field(default_factory=list)  # env, file, row, id, reason

    def add(self, env: str, file: str, row: int, pid: str, reason: str) -> None:
        """Keep row ``row`` of ``file`` (environment ``env``, prediction ID ``pid``) aside for ``reason``."""
        self.rows.append((env, file, row, pid, reason))

    def counts(self) -> dict[str, int]:
        """Rejected rows per reason."""
        out: dict[str, int] = {}
        for *_, reason in self.rows:
            out[reason] = out.get(reason, 0) + 1
        return out


def _list_matrix(col: pa.Array, width: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(n, width) float32 matrix of a list column and a boolean mask of usable rows."""
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(col)
    offsets = col.offsets.to_numpy()
    lengths = np.diff(offsets)
    if width is None:
        width = int(np.bincount(lengths[lengths > 0]).argmax()) if (lengths > 0).any() else 0
    values = col.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    if col.null_count == 0 and (lengths == width).all():  # fast path: one reshape, no copy
        flat = values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return flat.reshape(n, width), np.ones(n, dtype=bool)
    valid = ~np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    ok = valid & (lengths == width)
    out = np.zeros((n, width), dtype=np.float32)
    if ok.any():
        flat = (
            col.filter(pa.array(ok)).flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        )
        out[ok] = flat.reshape(-1, width)
    return out, ok


def dominant_dim(path: Path) -> int:
    """The vector length most rows of the first row group have."""
    pf = pq.ParquetFile(path)
    if pf.metadata.num_rows == 0:
        return 0
    batch = next(pf.iter_batches(batch_size=1024, columns=[C.IMAGE_VECTOR]))
    lengths = pc.list_value_length(batch.column(0)).fill_null(-1).to_numpy()
    good = lengths[lengths > 0]
    return int(np.bincount(good).argmax()) if len(good) else 0


def iter_rows(
    path: Path,
    env: str,
    dim: int,
    rejected: Rejected,
    batch_rows: int = 8192,
    num_classes: int = schema.NUM_CLASSES,
):
    """Yield the valid rows of ``path`` chunk by chunk; unusable rows go to ``rejected``.

    Memory stays bounded by one row group: no pre-buffering of the whole file.
    """
    pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=8 * 1024 * 1024)
    schema.require_columns(pf.schema_arrow.names, REQUIRED, f"{path} ({env})")
    meta_cols = [c for c in META_COLUMNS if c in pf.schema_arrow.names]
    columns = list(dict.fromkeys([*REQUIRED, *meta_cols]))
    offset = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        n = batch.num_rows
        vec, ok_v = _list_matrix(batch.column(columns.index(C.IMAGE_VECTOR)), dim)
        prob, ok_p = _list_matrix(batch.column(columns.index(C.PROBABILITIES)), num_classes)
        ts_col = batch.column(columns.index(C.PREDICTION_TS)).cast(pa.int64())
        ok_t = ~np.asarray(ts_col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        ts = ts_col.fill_null(0).to_numpy()
        sc_col = batch.column(columns.index(C.PREDICTION_SCORE))
        scores = sc_col.fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float32)
        fin_v = np.isfinite(vec).all(axis=1)
        fin_p = np.isfinite(prob).all(axis=1)
        # A served label without a served score (prepare keeps that score null on purpose): the
        # model's own confidence stands in, so the row is not lost.
        null_s = np.asarray(sc_col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        fill = null_s & ok_p & fin_p
        if fill.any():
            scores[fill] = prob[fill].max(axis=1)
        ok_s = np.isfinite(scores)
        good = ok_v & fin_v & ok_p & fin_p & ok_t & ok_s
        if not good.all():
            pid_col = C.PREDICTION_ID if C.PREDICTION_ID in columns else None
            pids = batch.column(columns.index(pid_col)).to_pylist() if pid_col else [""] * n
            for i in np.flatnonzero(~good):
                if not ok_v[i]:
                    reason = f"{C.IMAGE_VECTOR}: missing or not {dim} values long"
                elif not fin_v[i]:
                    reason = f"{C.IMAGE_VECTOR}: NaN or infinite values"
                elif not ok_p[i] or not fin_p[i]:
                    reason = f"{C.PROBABILITIES}: missing, non-finite or not {num_classes} values long"
                elif not ok_t[i]:
                    reason = f"{C.PREDICTION_TS}: missing"
                else:
                    reason = f"{C.PREDICTION_SCORE}: missing or non-finite"
                rejected.add(env, str(path), offset + int(i), str(pids[i] or ""), reason)
        idx = np.flatnonzero(good)
        meta = {}
        for c in meta_cols:
            arr = batch.column(columns.index(c)).to_numpy(zero_copy_only=False)
            meta[c] = arr[idx]
        offset += n
        if len(idx):
            yield Rows(ts[idx], vec[idx], prob[idx], scores[idx], meta)


class Reservoir:
    """A uniform sample of at most ``cap`` rows over a stream (random keys, keep the smallest)."""

    def __init__(self, cap: int, rng: np.random.Generator) -> None:
        self.cap = cap
        self.rng = rng
        self.keys = np.empty(0)
        self.rows: Rows | None = None

    def add(self, rows: Rows) -> None:
        """Offer ``rows`` to the sample."""
        keys = self.rng.random(len(rows))
        if self.rows is None:
            allk, allr = keys, rows
        else:
            allk = np.concatenate([self.keys, keys])
            allr = Rows.concat([self.rows, rows])
        if len(allk) > self.cap:
            keep = np.argpartition(allk, self.cap - 1)[: self.cap]
            keep.sort()
            allk, allr = allk[keep], allr.take(keep)
        self.keys, self.rows = allk, allr

    def __len__(self) -> int:
        return 0 if self.rows is None else len(self.rows)
