"""Drift history across runs: one Parquet table holding every window any run has computed.

A scheduled monitoring run computes the drift of its own batch's windows. To see the trend over
weeks, each run records its windows in one history table at a stable location (``history_uri``: a
local path, or a ``gs://``, ``s3://`` or ``minio://`` URI of ONE Parquet file):

1. :func:`read_history`: the stored table; a missing file is an empty history;
2. :func:`check_columns`: the stored columns must be this run's (else :class:`HistoryError`: the file
   is never silently overwritten);
3. :func:`merge_history`: the rows of the windows this run computed are dropped (key: window start
   and window length, :data:`KEY`), this run's rows appended with :func:`stamp` (when they were
   recorded, the model version), sorted by window start;
4. :func:`write_history`: written back whole, atomically (a local temporary file renamed into place,
   or one object PUT).

:func:`update_history` does the four in order. A re-run of the same batch replaces its windows and
never duplicates them. Two runs writing the same history at the same moment both keep their rows
(:func:`read_change_write`): in a bucket the write is conditional on the version read (GCS
``ifGenerationMatch``, S3 ``If-Match``), and a run whose write is refused reads the other run's
table and merges again; on disk the read, merge and write hold an exclusive lock on the folder
holding the history.

Late labels (the arize stage's ``actuals`` entry point) add two columns, :data:`LATE_LABEL_COLUMNS`:
per window, ``labelled_rows`` (predictions of the window with a late label) and ``correct_rows``
(those whose prediction is the label), and set ``accuracy`` to ``correct_rows / labelled_rows``
where ``labelled_rows > 0``. :func:`apply_labels` computes them from every late label known
(recomputed whole each time, so applying the same labels twice changes nothing) and
:func:`update_accuracy` reads, applies and writes the history back (the same atomic writer). A drift
run keeps these columns: :func:`check_columns` does not count them, and :func:`merge_history` carries
them over to the windows a run computes again (their ``accuracy`` stays the late labels').
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from components.common import storage
from components.common.files import MANIFEST_FILE, write_with_atomic

# A window is identified by its start and its length ('hourly', 'daily', 'weekly').
KEY = ("window_start", "window")
RECORDED_AT = "recorded_at"  # when the run that computed the window recorded it (UTC)
MODEL_VERSION = "model_version"  # the model version of that run's prepared rows ("" if unknown)
RUN_COLUMNS = (RECORDED_AT, MODEL_VERSION)
TIME_COLUMNS = ("window_start", "window_end", RECORDED_AT)
ACCURACY = "accuracy"  # a window's accuracy: the drift stage's, or over its late-labelled rows
LABELLED_ROWS = "labelled_rows"  # predictions of the window with a late label (actuals)
CORRECT_ROWS = "correct_rows"  # of those, the ones whose prediction is the label
LATE_LABEL_COLUMNS = (LABELLED_ROWS, CORRECT_ROWS)
# What apply_labels reads of each late label: when its prediction was made, and whether it was right.
LABEL_TS, LABEL_CORRECT = "prediction_ts", "correct"
PARQUET_TYPE = "application/vnd.apache.parquet"


class HistoryError(ValueError):
    """The stored history cannot be read or does not match this run; the message says what to do."""


@dataclass(frozen=True)
class HistoryUpdate:
    """The history after this run: the whole table, where it is, and what changed."""

    table: pd.DataFrame  # every stored window, this run's included, sorted by window start
    this_run: pd.Series  # True on the rows of the windows this run computed (aligned with table)
    uri: str  # "" = no history configured: the table is this run's windows only, nothing stored
    previous_rows: int  # rows stored before this run
    replaced_rows: int  # rows of earlier runs for windows this run computed again


def read_history(uri: str, config: storage.StorageConfig | None = None) -> pd.DataFrame | None:
    """The stored history at ``uri``; None when there is none yet.

    Raises:
        HistoryError: the object cannot be read, or is not a Parquet table; the message names the URI.
    """
    return _read_versioned(uri, config)[0]


def _read_versioned(uri: str, config: storage.StorageConfig | None) -> tuple[pd.DataFrame | None, str]:
    """The stored history and its version (a bucket object's generation or ETag; ``""``: none, or on disk)."""
    version = ""
    try:
        if storage.is_remote(uri):
            data, version = storage.read_versioned(uri, config=config)
        else:
            data = storage.read_bytes(uri, config=config)
    except FileNotFoundError:
        return None, ""
    except OSError as err:  # storage.StorageError: endpoint, credentials, network
        raise HistoryError(
            f"history_uri={uri!r}: could not read the drift history ({err}); check the storage "
            "endpoint and credentials, or set history_uri='' to run without history"
        ) from err
    try:
        return pd.read_parquet(io.BytesIO(data)), version
    except Exception as err:  # pyarrow raises several types for a damaged or foreign file
        raise HistoryError(
            f"history_uri={uri!r}: not a readable Parquet table ({type(err).__name__}: {err}); it was "
            "left as it is: move it away (a new history then starts) or give another history_uri"
        ) from err


def check_columns(history: pd.DataFrame, run_rows: pd.DataFrame, uri: str) -> None:
    """Check that the stored history holds exactly the columns of this run's stamped rows.

    Raises:
        HistoryError: naming the columns that differ and what to do (the file is left unchanged).
    """
    stored, expected = set(history.columns) - set(LATE_LABEL_COLUMNS), set(run_rows.columns)
    if stored == expected:
        for col in TIME_COLUMNS:
            if not pd.api.types.is_datetime64_any_dtype(history[col]):
                raise HistoryError(
                    f"history_uri={uri!r}: column {col} holds {history[col].dtype}, not timestamps; "
                    "it was written by another program and was left unchanged: give another "
                    "history_uri (or move the file away) to start a new history"
                )
        return
    extra, missing = sorted(stored - expected), sorted(expected - stored)
    raise HistoryError(
        f"history_uri={uri!r}: its columns do not match this run's drift table "
        f"(only in the history: {', '.join(extra) or 'none'}; only in this run: "
        f"{', '.join(missing) or 'none'}). It was written with other settings (detectors) or by "
        "another program and was left unchanged: run with the settings that wrote it, or give "
        "another history_uri (or move the file away) to start a new history"
    )


def _utc_us(values: pd.Series) -> pd.Series:
    """Timestamps as UTC microseconds, whatever unit or zone they were stored with."""
    return pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")


def stamp(table: pd.DataFrame, recorded_at: datetime, model_version: str) -> pd.DataFrame:
    """This run's drift table with the columns the history adds: ``recorded_at``, ``model_version``."""
    rows = table.copy()
    rows[RECORDED_AT] = pd.Timestamp(recorded_at if recorded_at.tzinfo else recorded_at.replace(tzinfo=UTC))
    rows[MODEL_VERSION] = model_version
    for col in TIME_COLUMNS:
        rows[col] = _utc_us(rows[col])
    return rows


def _keys(frame: pd.DataFrame) -> pd.MultiIndex:
    return pd.MultiIndex.from_arrays(
        [_utc_us(frame["window_start"]), frame["window"].astype(str)], names=list(KEY)
    )


def merge_history(history: pd.DataFrame | None, run_rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop the stored rows of this run's windows, append this run's rows, sort by window start.

    The late-label columns (:data:`LATE_LABEL_COLUMNS`) of a history that has them are kept: a
    window computed again carries its counts over (and its ``accuracy`` stays that of its late
    labels), a new window gets 0 of each. Returns the merged table and how many stored rows were
    replaced.
    """
    if history is None or history.empty:
        merged, replaced = run_rows, 0
    else:
        late = [c for c in LATE_LABEL_COLUMNS if c in history.columns and c not in run_rows.columns]
        again = _keys(history).isin(_keys(run_rows))
        kept = history.loc[~again, [*run_rows.columns, *late]].copy()
        for col in TIME_COLUMNS:
            kept[col] = _utc_us(kept[col])
        if late:
            run_rows = _carry_late_labels(history.loc[again], run_rows, late)
        merged, replaced = pd.concat([kept, run_rows], ignore_index=True), int(again.sum())
    merged = merged.sort_values(["window_start", "window"], kind="stable").reset_index(drop=True)
    return merged, replaced


def _carry_late_labels(replaced: pd.DataFrame, run_rows: pd.DataFrame, late: list[str]) -> pd.DataFrame:
    """``run_rows`` with the late-label counts of the stored rows they replace (0 for new windows)."""
    rows = run_rows.copy()
    counts = replaced.set_index(_keys(replaced))[late]
    found = counts.reindex(_keys(rows))
    for col in late:
        rows[col] = found[col].fillna(0).astype("int64").to_numpy()
    if LABELLED_ROWS in late and CORRECT_ROWS in late:
        labelled = rows[LABELLED_ROWS] > 0
        rows.loc[labelled, ACCURACY] = rows.loc[labelled, CORRECT_ROWS] / rows.loc[labelled, LABELLED_ROWS]
    return rows


def write_history(uri: str, table: pd.DataFrame, config: storage.StorageConfig | None = None) -> None:
    """Write the whole history at ``uri``: a local temporary file renamed into place, or one object PUT."""
    if storage.is_remote(uri):
        storage.write_bytes(uri, _parquet(table), PARQUET_TYPE, config=config)
    else:
        write_with_atomic(uri, lambda tmp: table.to_parquet(tmp, index=False))


def _parquet(table: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    return buf.getvalue()


# Conditional writes refused in a row before a run gives up (each retry reads the newer table).
WRITE_ATTEMPTS = 10
_T = TypeVar("_T")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock (``flock``) on the folder holding ``path``, held while the block runs.

    The folder, not a lock file: nothing is left beside the history, and a lock file removed while
    another run waits on it would let two runs in at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_change_write(
    uri: str,
    change: Callable[[pd.DataFrame | None], tuple[pd.DataFrame | None, _T]],
    config: storage.StorageConfig | None = None,
) -> tuple[pd.DataFrame | None, _T]:
    """Read the history, ``change`` it and write the result back without losing another run's write.

    ``change(history)`` (None: no history yet) returns the table to write (None: write nothing) and
    a result; it may run more than once and must only compute. Returns the history it last read
    and that result. In a bucket the write is conditional on the version read; when another run
    wrote in between it is refused, and the history is read and changed again (up to
    :data:`WRITE_ATTEMPTS` times, with a short random pause). On disk an exclusive lock on the folder
    holding the history covers the read, the change and the write.

    Raises:
        HistoryError: the history cannot be read, or every attempt was refused.
    """
    if not storage.is_remote(uri):
        with _locked(Path(uri)):
            history = read_history(uri, config)
            table, result = change(history)
            if table is not None:
                write_history(uri, table, config)
            return history, result
    for attempt in range(WRITE_ATTEMPTS):
        history, version = _read_versioned(uri, config)
        table, result = change(history)
        if table is None or storage.replace_bytes(uri, _parquet(table), version, PARQUET_TYPE, config=config):
            return history, result
        time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))  # another run wrote it: read again
    raise HistoryError(
        f"history_uri={uri!r}: other runs wrote the drift history first {WRITE_ATTEMPTS} times in a row, "
        "so this run's windows were not recorded; run it again (at most a few runs at a time)"
    )


def update_history(
    uri: str,
    table: pd.DataFrame,
    recorded_at: datetime | None = None,
    model_version: str = "",
    config: storage.StorageConfig | None = None,
) -> HistoryUpdate:
    """Record this run's windows (``table``) in the history at ``uri`` and return the whole history.

    Reads the stored table (missing = empty), checks its columns, replaces the rows of the windows
    ``table`` holds, appends ``table``'s rows stamped with ``recorded_at`` (default: now, UTC) and
    ``model_version``, sorts by window start and writes it back.

    Raises:
        HistoryError: the stored history is unreadable or has other columns (it is left unchanged).
    """
    run_rows = stamp(table, recorded_at or datetime.now(UTC), model_version)

    def merge(history: pd.DataFrame | None) -> tuple[pd.DataFrame, tuple[pd.DataFrame, int]]:
        if history is not None:
            check_columns(history, run_rows, uri)
        merged, replaced = merge_history(history, run_rows)
        return merged, (merged, replaced)

    history, (merged, replaced) = read_change_write(uri, merge, config)
    return HistoryUpdate(
        merged, this_run_mask(merged, run_rows), uri, 0 if history is None else len(history), replaced
    )


def without_history(
    table: pd.DataFrame, recorded_at: datetime | None = None, model_version: str = ""
) -> HistoryUpdate:
    """The "history" of a run without ``history_uri``: its own windows only, nothing stored."""
    rows = stamp(table, recorded_at or datetime.now(UTC), model_version)
    return HistoryUpdate(rows, pd.Series(True, index=rows.index), "", 0, 0)


def this_run_mask(history: pd.DataFrame, run_rows: pd.DataFrame) -> pd.Series:
    """True on the rows of ``history`` whose window (start and length) is one of ``run_rows``'."""
    return pd.Series(_keys(history).isin(_keys(run_rows)), index=history.index)


def model_version_of(prepared: str | Path) -> str:
    """The model version named in a prepare-stage folder's manifest; "" when it has none."""
    path = Path(prepared) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return str(manifest.get(MODEL_VERSION) or "") if isinstance(manifest, dict) else ""


def _epoch_us(values: pd.Series) -> np.ndarray:
    """Timestamps as int64 microseconds since the epoch, UTC."""
    return np.asarray(_utc_us(values).dt.tz_localize(None).to_numpy(dtype="datetime64[us]").astype(np.int64))


@dataclass(frozen=True)
class WindowAccuracy:
    """One stored window whose late-label counts changed: before and after."""

    window_start: pd.Timestamp
    window: str
    labelled_before: int
    labelled_rows: int
    correct_rows: int
    accuracy_before: float  # NaN: none before
    accuracy: float


@dataclass(frozen=True)
class AccuracyUpdate:
    """What :func:`apply_labels` did: the new table, the windows that changed, labels in no window."""

    table: pd.DataFrame
    changed: list[WindowAccuracy]
    outside: int  # labels whose prediction lies in no stored window (of any length)


def apply_labels(history: pd.DataFrame, labels: pd.DataFrame) -> AccuracyUpdate:
    """Set every stored window's late-label counts and accuracy from ``labels``, the late labels known.

    ``labels`` holds one row per labelled prediction: :data:`LABEL_TS` (when it was made, UTC) and
    :data:`LABEL_CORRECT` (its prediction is the label). Each window (``window_start`` included,
    ``window_end`` excluded; windows of every length) gets ``labelled_rows`` and ``correct_rows`` of
    the labels in it, and ``accuracy = correct_rows / labelled_rows`` where ``labelled_rows > 0``;
    a window without late labels keeps its accuracy (the drift stage's). The counts are recomputed
    from all of ``labels``, not added: giving the same labels again changes nothing.
    """
    table = history.copy()
    before = (
        table[LABELLED_ROWS].fillna(0).astype("int64").to_numpy()
        if LABELLED_ROWS in table
        else np.zeros(len(table), dtype=np.int64)
    )
    accuracy_before = table[ACCURACY].astype(float).to_numpy()
    label_ts = _epoch_us(labels[LABEL_TS])
    order = np.argsort(label_ts, kind="stable")
    ts = label_ts[order]
    right = np.concatenate([[0], np.cumsum(labels[LABEL_CORRECT].to_numpy(dtype=bool)[order])])
    starts, ends = _epoch_us(table["window_start"]), _epoch_us(table["window_end"])
    lo, hi = np.searchsorted(ts, starts, side="left"), np.searchsorted(ts, ends, side="left")
    labelled, correct = (hi - lo).astype(np.int64), (right[hi] - right[lo]).astype(np.int64)
    table[LABELLED_ROWS], table[CORRECT_ROWS] = labelled, correct
    has = labelled > 0
    accuracy = accuracy_before.copy()
    accuracy[has] = correct[has] / labelled[has]
    table[ACCURACY] = accuracy
    changed = [
        WindowAccuracy(
            pd.Timestamp(table["window_start"].iloc[i]),
            str(table["window"].iloc[i]),
            int(before[i]),
            int(labelled[i]),
            int(correct[i]),
            float(accuracy_before[i]),
            float(accuracy[i]),
        )
        for i in np.flatnonzero((labelled != before) | (has & (accuracy != accuracy_before)))
    ]
    inside = np.zeros(len(ts), dtype=bool)
    for a, b in zip(lo, hi, strict=True):
        inside[a:b] = True
    return AccuracyUpdate(table, changed, int((~inside).sum()))


def update_accuracy(
    uri: str, labels: pd.DataFrame, config: storage.StorageConfig | None = None
) -> AccuracyUpdate | None:
    """Apply ``labels`` (:func:`apply_labels`) to the history at ``uri`` and write it back atomically.

    Returns None when no history is stored there yet (nothing is written). The history is written
    only when a window changed.

    Raises:
        HistoryError: the stored history cannot be read, or lacks the window columns.
    """

    def label(history: pd.DataFrame | None) -> tuple[pd.DataFrame | None, AccuracyUpdate | None]:
        if history is None:
            return None, None
        needed = [*KEY, "window_end", ACCURACY]
        missing = [c for c in needed if c not in history.columns]
        if missing:
            raise HistoryError(
                f"history_uri={uri!r}: no column(s) {', '.join(missing)}; not a drift history (it was "
                "left unchanged): give the history_uri the monitoring pipeline writes"
            )
        update = apply_labels(history, labels)
        return (update.table if update.changed else None), update

    return read_change_write(uri, label, config)[1]
