"""Time windows of the drift stage: their names and lengths, and the window of a timestamp (UTC)."""

from __future__ import annotations

import numpy as np

# Window name -> length in microseconds.
WINDOWS = {"hourly": 3_600_000_000, "daily": 86_400_000_000, "weekly": 7 * 86_400_000_000}
# 1970-01-01 was a Thursday: shift so weekly windows start on Mondays (UTC).
_WEEK_OFFSET_US = 3 * 86_400_000_000


def window_keys(ts_us: np.ndarray, window: str) -> np.ndarray:
    """Integer window index of each timestamp (microseconds since the epoch, UTC)."""
    if window not in WINDOWS:
        raise ValueError(f"drift_window={window!r}: expected one of {', '.join(WINDOWS)}")
    if window == "weekly":
        return np.asarray((ts_us + _WEEK_OFFSET_US) // WINDOWS[window])
    return np.asarray(ts_us // WINDOWS[window])


def window_start_us(key: int, window: str) -> int:
    """Start of window ``key`` (from :func:`window_keys`) in microseconds since the epoch, UTC."""
    start = int(key) * WINDOWS[window]
    return start - _WEEK_OFFSET_US if window == "weekly" else start
