"""Rotating backups of the ledger with SQLite's online backup API, and restoring one.

A backup is a consistent copy taken while others may write, checked, then renamed into
DATA_DIR/backups; the newest KEEP stay. `restore` checks a backup, puts it in place in one
rename and keeps the file it replaces as `ledger.sqlite3.broken-TIMESTAMP`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from optout_mail.errors import LedgerDamaged, LedgerError
from optout_mail.ledger_file import (
    BUSY_TIMEOUT,
    Backup,
    backup_dir,
    backup_name,
    integrity,
    list_backups,
    private_temp,
    secure_dir,
    sidecars,
)

log = logging.getLogger(__name__)

KEEP = 7  # backups kept in DATA_DIR/backups, newest first
DAILY = timedelta(days=1)  # a writer takes a backup when the newest is older than this


@dataclass(frozen=True)
class Restored:
    """What `restore` did: the backup now in place, and where the replaced file went."""

    backup: Path
    kept: Path | None  # None when there was no ledger file to keep


def take_backup(ledger_path: Path, *, reason: str, now: datetime) -> Backup:
    """Copy the ledger into DATA_DIR/backups (consistent even while others write), check the
    copy, then drop the oldest beyond KEEP. `reason`: daily, manual, schemaN."""
    folder = backup_dir(ledger_path)
    secure_dir(folder)
    temp = private_temp(folder, ".partial-")
    try:
        # A connection of its own: it reads the last commit even while this process holds
        # the write lock (before a migration), and never waits for that lock.
        with (
            contextlib.closing(sqlite3.connect(str(ledger_path), timeout=BUSY_TIMEOUT)) as src,
            contextlib.closing(sqlite3.connect(str(temp))) as dst,
        ):
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
            problems = integrity(dst, full=False)
        if problems:
            raise LedgerDamaged(
                f"the backup of {ledger_path} fails its check: {problems[0]}",
                hint="run `optout-mail ledger check`; the older backups were kept",
            )
        final = _free_name(folder, now, reason)
        os.link(temp, final)  # never replaces another backup
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(f"cannot back up the ledger {ledger_path}: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)
    log.info("ledger backed up to %s", final)
    rotate(ledger_path)
    return next(b for b in list_backups(ledger_path) if b.path == final)


def backup_if_due(ledger_path: Path, *, now: datetime) -> Backup | None:
    """The daily backup: taken when the newest backup is older than a day (or there is none)."""
    backups = list_backups(ledger_path)
    if backups and now - backups[0].taken_at < DAILY:
        return None
    return take_backup(ledger_path, reason="daily", now=now)


def rotate(ledger_path: Path, keep: int = KEEP) -> list[Path]:
    """Delete all but the newest `keep` backups; returns what was deleted."""
    removed = []
    for old in list_backups(ledger_path)[keep:]:
        old.path.unlink(missing_ok=True)
        removed.append(old.path)
        log.info("old ledger backup removed: %s", old.path.name)
    return removed


def check_backup(path: Path, *, max_schema: int) -> list[str]:
    """The problems of a backup file (full integrity check, schema not from a newer program)."""
    if not path.is_file():
        return [f"{path} does not exist"]
    try:
        with contextlib.closing(_read_only(path)) as db:
            problems = integrity(db, full=True)
            if problems:
                return problems
            schema = int(db.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        return [str(exc)]
    if schema > max_schema:
        return [f"it was written by a newer optout-mail (schema {schema})"]
    return []


def restore(ledger_path: Path, backup: Path, *, now: datetime, max_schema: int) -> Restored:
    """Put `backup` in the ledger's place. The backup is checked first; the file it replaces
    (with its -wal) is kept as `ledger.sqlite3.broken-TIMESTAMP`; the swap is one rename."""
    problems = check_backup(backup, max_schema=max_schema)
    if problems:
        raise LedgerDamaged(
            f"the backup {backup} cannot be restored: {problems[0]}",
            hint="pick another one: `optout-mail ledger check` lists them",
        )
    secure_dir(ledger_path.parent)
    temp = private_temp(ledger_path.parent, f".{ledger_path.name}.restoring-")
    kept: Path | None = None
    try:
        with (
            contextlib.closing(_read_only(backup)) as src,
            contextlib.closing(sqlite3.connect(str(temp), isolation_level=None)) as dst,
        ):
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = WAL")
        if ledger_path.exists():
            stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = ledger_path.with_name(f"{ledger_path.name}.broken-{stamp}")
            os.link(ledger_path, kept)  # the ledger path never stops existing
            wal, shm = sidecars(ledger_path)
            if wal.exists():
                os.replace(wal, sidecars(kept)[0])  # never replayed onto the restored file
            shm.unlink(missing_ok=True)
        os.replace(temp, ledger_path)
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(f"cannot restore {backup}: {exc}") from None
    finally:
        for name in (temp, *sidecars(temp)):
            name.unlink(missing_ok=True)
    log.info("ledger restored from %s; the file it replaced is %s", backup, kept)
    return Restored(backup=backup, kept=kept)


def _free_name(folder: Path, now: datetime, reason: str) -> Path:
    serial = 0
    while (folder / backup_name(now, reason, serial)).exists():
        serial += 1
    return folder / backup_name(now, reason, serial)


def _read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
