"""What the daemon tells `status`: DATA_DIR/status.json, written at start, after each scan, on
each error and at the end (atomically: a temporary file renamed over the old one). Whether the
daemon really runs is not in the file but in the lock it holds (`daemon_pid`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = "status.json"
LOCK_NAME = "run.lock"

_lock = threading.Lock()
_current: dict[str, Any] = {}
_path: Path | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def started(data_dir: Path, watched: Iterable[str]) -> None:
    """The daemon is up and watches these `account/folder`s. What its watchers reported
    before this call (their first scans run while it starts) is kept."""
    global _path
    with _lock:
        _path = data_dir / FILE_NAME
        _current.update(pid=os.getpid(), started_at=_now(), stopped_at=None, watched=list(watched))
        for key in ("last_scan_at", "last_scan", "last_error"):
            _current.setdefault(key, None)
        _write()


def scanned(where: str) -> None:
    """A scan of `where` (an `account/folder`, or an account) finished."""
    _update(last_scan_at=_now(), last_scan=where)


def failed(where: str, error: str) -> None:
    """Something went wrong at `where`; `error` is a user-facing message, never a secret."""
    _update(last_error={"at": _now(), "where": where, "message": error})


def stopped() -> None:
    """The daemon ends: say so, and forget everything."""
    global _path
    _update(stopped_at=_now())
    with _lock:
        _path = None
        _current.clear()


def _update(**values: Any) -> None:
    with _lock:
        _current.update(values)
        if _path is not None:
            _write()


def _write() -> None:
    """Replace the file atomically; a failure is logged, never raised (it is only a report)."""
    assert _path is not None
    _current["updated_at"] = _now()
    try:
        handle, temp = tempfile.mkstemp(prefix=".status-", dir=_path.parent)
    except OSError as exc:
        log.debug("cannot write %s: %s", _path, exc)
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(_current, out, ensure_ascii=False, indent=2)
        os.replace(temp, _path)
    except OSError as exc:
        log.debug("cannot write %s: %s", _path, exc)
        with contextlib.suppress(OSError):
            os.unlink(temp)


def read(data_dir: Path) -> dict[str, Any] | None:
    """The last status the daemon wrote, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads((data_dir / FILE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def daemon_pid(data_dir: Path) -> int | None:
    """The pid of the `optout-mail run` holding DATA_DIR/run.lock, None when nobody does.

    Reads /proc/locks, so that asking never takes the lock (a daemon starting at that moment
    would find it taken); elsewhere, tries the lock and lets go at once.
    """
    path = data_dir / LOCK_NAME
    try:
        info = path.stat()
    except OSError:
        return None
    try:
        locks = Path("/proc/locks").read_text()
    except OSError:
        return _try_lock(path)
    # Lines read "1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF". The device is left out of
    # the comparison: on overlay file systems stat() and the kernel name different devices.
    inode = f":{info.st_ino}"
    for line in locks.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].endswith(inode):
            return int(fields[4]) if fields[4].isdigit() else _pid_in(path)
    return None


def _try_lock(path: Path) -> int | None:
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _pid_in(path) or -1
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _pid_in(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None
