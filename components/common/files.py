"""Atomic file and folder writes, UTC time parsing, and the names of files inside artifacts.

A reader (a later stage, a retried task, a person) sees a file or folder whole or not at all: each
writer here writes a hidden temporary sibling and renames it into place.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

# File names inside folder-shaped artifacts that more than one stage reads.
MANIFEST_FILE = "manifest.json"  # a prepare output folder's description
TRAINING_SUMMARY_FILE = "training_summary.json"  # inside a model folder


def tmp_sibling(path: str | Path, tag: str = "tmp") -> Path:
    """A hidden sibling of ``path``, unique to this process: ``.name.tag-<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}")


_TMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<tag>tmp|old)-(?P<pid>\d+)$")


def _process_exists(pid: int) -> bool:
    if pid == os.getpid():
        return False  # called before this run writes any: a sibling with our PID is a killed run's
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds that PID
        return True
    return True


def remove_stale_temporaries(
    folder: str | Path, *, names: Iterable[str] | None = None, recursive: bool = False
) -> list[Path]:
    """Remove the ``.name.tmp-<pid>`` / ``.name.old-<pid>`` siblings left in ``folder`` by killed runs.

    A sibling is removed when no process with its PID exists any more, or when the PID is this
    process's own: call this at the start of a run, before the run writes a temporary file (a
    retried container often gets the PID its killed predecessor had). ``names``: only the siblings
    of these file names; None = every sibling of :func:`tmp_sibling`'s form. ``recursive``: also in
    the sub-folders. Returns the paths removed; a folder that does not exist is skipped.
    """
    folder = Path(folder)
    wanted = None if names is None else set(names)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        match = _TMP_NAME.match(entry.name)
        if match and (wanted is None or match["name"] in wanted) and not _process_exists(int(match["pid"])):
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except FileNotFoundError:  # removed meanwhile
                continue
            removed.append(path)
        elif recursive and entry.is_dir(follow_symlinks=False):
            removed += remove_stale_temporaries(entry.path, names=names, recursive=True)
    return removed


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_with_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` (e.g. ``frame.to_parquet``) into a temporary sibling, then rename it into place."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def replace_dir(tmp: str | Path, output_dir: str | Path) -> None:
    """Move the finished folder ``tmp`` to ``output_dir``, replacing what was there."""
    tmp, output_dir = Path(tmp), Path(output_dir)
    old = None
    if output_dir.exists():
        old = tmp_sibling(output_dir, "old")
        output_dir.rename(old)
    tmp.rename(output_dir)
    if old is not None:
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def parse_utc(value: str | datetime, parameter: str, example: str = "2026-11-28T12:00:00Z") -> datetime:
    """An ISO 8601 time (or a datetime) as an aware UTC datetime; a time without offset is UTC.

    A ValueError names ``parameter`` and shows ``example``.
    """
    if isinstance(value, datetime):
        ts = value
    else:
        try:
            ts = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except (ValueError, AttributeError):
            raise ValueError(
                f"{parameter}={value!r}: expected an ISO 8601 time such as {example!r}"
            ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)
