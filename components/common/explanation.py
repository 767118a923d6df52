"""Reading a drift table's explanation and choosing a training run's augmentations from it.

Kept apart from :mod:`components.common.augment` (names, strengths, the auto rules), which the
image transforms import: this module reads object storage, which the embed image does not install.
"""

from __future__ import annotations

import json
from typing import Any

from components.common.augment import AUTO, EXPLANATION_KEY, augmentations_for, check_augment, parse_augment


def read_explanation(drift_uri: str) -> list[dict[str, Any]]:
    """The flagged windows' explanation stored in the drift table at ``drift_uri`` (local or bucket).

    ``drift_uri`` is the drift stage's ``drift_table`` output (one Parquet file), or a folder holding
    ``drift_table`` / ``drift_table.parquet``. A table without the explanation (no window flagged,
    or written by an older drift stage) gives ``[]``.
    """
    import io
    from pathlib import Path

    import pyarrow.parquet as pq

    from components.common import storage

    candidates = [drift_uri]
    if not storage.is_remote(drift_uri) and Path(drift_uri).is_dir():
        candidates = [str(Path(drift_uri) / n) for n in ("drift_table", "drift_table.parquet")]
    for uri in candidates:
        try:
            data = storage.read_bytes(uri) if storage.is_remote(uri) else Path(uri).read_bytes()
        except FileNotFoundError:
            continue
        try:
            meta = pq.read_schema(io.BytesIO(data)).metadata or {}
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file it cannot read
            raise ValueError(
                f"drift_uri {uri}: not a Parquet drift table ({type(exc).__name__}: {exc}); pass the drift "
                "stage's drift_table output"
            ) from exc
        raw = meta.get(EXPLANATION_KEY.encode())
        if not raw:
            return []
        payload = json.loads(raw)
        windows = payload.get("windows") if isinstance(payload, dict) else None
        if not isinstance(windows, list):
            raise ValueError(f"drift_uri {uri}: explanation metadata holds no 'windows' list")
        return [w for w in windows if isinstance(w, dict)]
    raise FileNotFoundError(
        f"drift_uri {drift_uri}: no drift table there; pass the drift stage's drift_table output "
        "(a Parquet file, local or gs://, s3://, minio://)"
    )


def resolve_augment(augment: str, drift_uri: str = "") -> tuple[tuple[str, ...], list[str]]:
    """The augmentations a training run applies, and the reasons (``auto``: from the drift explanation)."""
    check_augment(augment, drift_uri)
    if augment.strip().lower() != AUTO:
        names = parse_augment(augment)
        return names, [f"{a}: asked for (augment={augment!r})" for a in names]
    names, why = augmentations_for(read_explanation(drift_uri))
    if not names:
        why = [f"augment=auto: the drift table at {drift_uri} explains no flagged window; no augmentation"]
    return names, why
