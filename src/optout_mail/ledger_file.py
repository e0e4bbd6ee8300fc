"""The ledger's file on disk: created in one step, opened only when sound, kept private.

`connect` refuses a file that is empty, not SQLite, truncated or fails `PRAGMA quick_check`
(LedgerDamaged, naming the way out) instead of starting afresh over it. The data directory is
0700 and the files 0600 whatever the umask. Backups are listed here and taken in `backup`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from optout_mail.errors import LedgerDamaged, LedgerError

log = logging.getLogger(__name__)

SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT = 30.0  # seconds one statement waits for another connection's lock
WRITE_WAIT = 600.0  # seconds a writer waits in all for the write lock before it gives up
BACKUP_DIR = "backups"
_STAMP = "%Y%m%dT%H%M%SZ"
_BACKUP_NAME = re.compile(r"^ledger-(\d{8}T\d{6}Z)-([a-z0-9]+)(?:\.(\d+))?\.sqlite3$")
_CORRUPT = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB
_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


@dataclass(frozen=True)
class Backup:
    """One backup file in DATA_DIR/backups; `reason` is daily, manual or schemaN."""

    path: Path
    taken_at: datetime
    reason: str
    size: int

    def as_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "taken_at": self.taken_at.isoformat(timespec="seconds"),
            "reason": self.reason,
            "size": self.size,
        }


@dataclass
class Report:
    """What `ledger check` says about a ledger file; `problems` empty means sound."""

    path: Path
    exists: bool
    size: int = 0
    mode: str = ""
    schema: int | None = None
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    check_ms: float = 0.0

    def as_json(self) -> dict[str, object]:
        return {**self.__dict__, "path": str(self.path), "ok": not self.problems}


# -- permissions -----------------------------------------------------------------------------


def sidecars(path: Path) -> tuple[Path, Path]:
    """SQLite's companions of a WAL database: the -wal and -shm files."""
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def secure_dir(path: Path) -> None:
    """Create `path` (with parents) if missing and make it 0700, saying so if it was looser."""
    existed = path.is_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LedgerError(f"cannot create the directory {path}: {exc.strerror or exc}") from None
    _restrict(path, 0o700, quiet=not existed)


def secure_file(path: Path) -> None:
    """Make an existing file 0600, saying so if it was looser; a missing one is left alone."""
    _restrict(path, 0o600)


def _restrict(path: Path, mode: int, *, quiet: bool = False) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
        if current != mode:
            path.chmod(mode)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("cannot make %s private (mode %04o): %s", path, mode, exc.strerror or exc)
        return
    if current & 0o077 and not quiet:
        log.warning("%s could be read by other users (mode %04o); now %04o", path, current, mode)


def private_temp(folder: Path, prefix: str) -> Path:
    """A new empty file in `folder`, mode 0600 whatever the umask."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".sqlite3")
    os.fchmod(fd, 0o600)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def private_append(path: Path) -> Iterator[IO[str]]:
    """`path` opened for appending text, created 0600 whatever the umask, flushed to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "a", encoding="ascii") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


@contextlib.contextmanager
def flocked(path: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on `path` (created 0600) for the block; yields False instead
    of waiting when `wait` is off and another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        secure_file(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


# -- opening ---------------------------------------------------------------------------------


def connect(path: Path) -> tuple[sqlite3.Connection, bool]:
    """Open the ledger at `path`, creating it if it does not exist; True if it was created.
    Raises LedgerDamaged for a file that must not be used, LedgerError for other trouble."""
    secure_dir(path.parent)
    created = not path.exists() and _create(path)
    check_header(path)
    try:
        db = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open the ledger {path}: {exc}") from None
    try:
        _use_wal(db)
        problems = integrity(db, full=False)
        if problems:
            raise damaged(path, f"it fails the integrity check ({problems[0]})")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as exc:
        db.close()
        if is_corrupt(exc):
            raise damaged(path, str(exc)) from None
        raise LedgerError(
            f"cannot open the ledger {path}: {exc}",
            hint="check that the data_dir is writable and has free space",
        ) from None
    except BaseException:
        db.close()
        raise
    for name in (path, *sidecars(path)):
        secure_file(name)
    return db, created


def _create(path: Path) -> bool:
    """Make an empty WAL database at `path` in one step, so a ledger file that exists is never
    half made; False when another process made it first."""
    temp = private_temp(path.parent, f".{path.name}.new-")
    try:
        db = sqlite3.connect(str(temp), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")  # writes page 1: a database from now on
        finally:
            db.close()
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            if path.exists():  # a file system without hard links
                return False
            os.rename(temp, path)
        return True
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(f"cannot create the ledger {path}: {exc}") from None
    finally:
        for name in (temp, *sidecars(temp)):
            name.unlink(missing_ok=True)


def _use_wal(db: sqlite3.Connection) -> None:
    # Switching the journal mode ignores the busy timeout: a writer in another process makes
    # it fail at once with "database is locked". Ours are created in WAL; older files retry.
    if db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def check_header(path: Path) -> None:
    """Refuse a file that is empty, not SQLite, or shorter than its header says."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(100)
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise damaged(path, "the file is empty (0 bytes)")
    if not header.startswith(SQLITE_MAGIC):
        raise damaged(path, "the file is not an SQLite database")
    if len(header) < 100:
        raise damaged(path, f"the file is truncated ({size} bytes)")
    page_size = int.from_bytes(header[16:18]) or 1
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32])
    header_valid = header[24:28] == header[92:96]
    wal = sidecars(path)[0]
    wal_holds_pages = wal.exists() and wal.stat().st_size > 0  # a checkpoint may be halfway
    if header_valid and not wal_holds_pages and size < pages * page_size:
        raise damaged(path, f"the file is truncated ({size} of {pages * page_size} bytes)")


def integrity(db: sqlite3.Connection, *, full: bool) -> list[str]:
    """The problems `PRAGMA integrity_check` (full) or `quick_check` finds; [] when sound."""
    pragma = "integrity_check" if full else "quick_check"
    try:
        rows = [str(row[0]) for row in db.execute(f"PRAGMA {pragma}")]
    except sqlite3.DatabaseError as exc:
        if is_corrupt(exc):
            return [str(exc)]
        raise
    return [] if rows == ["ok"] else rows


def is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPT


def is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _BUSY


def begin_immediate(db: sqlite3.Connection, path: Path | str) -> None:
    """BEGIN IMMEDIATE, waiting up to WRITE_WAIT for writers in other processes (each try
    waits BUSY_TIMEOUT inside SQLite): a second writer waits instead of failing."""
    deadline = time.monotonic() + WRITE_WAIT
    warned = False
    while True:
        try:
            db.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            if time.monotonic() >= deadline:
                raise LedgerError(
                    f"the ledger {path} stayed locked by another process for "
                    f"{WRITE_WAIT:.0f} seconds",
                    hint=f"is another optout-mail stuck? `fuser -v {path}` shows who has it open",
                ) from None
            if not warned:
                log.warning("the ledger is busy: another process is writing it; waiting")
                warned = True


def damaged(path: Path, what: str) -> LedgerDamaged:
    """The error for a ledger that must not be used, with the way out."""
    backups = list_backups(path)
    if backups:
        hint = (
            f"restore the newest backup ({backups[0].path.name}) with `optout-mail ledger "
            f"restore` (it keeps the damaged file beside it), or move {path} away to start afresh"
        )
    else:
        hint = (
            f"there is no backup in {backup_dir(path)}; move {path} away to start afresh, and "
            f"keep it: `sqlite3 {path} .recover` may rescue part of it"
        )
    return LedgerDamaged(f"cannot open the ledger {path}: {what}", hint=hint)


# -- backups on disk ---------------------------------------------------------------------------


def backup_dir(ledger_path: Path) -> Path:
    return ledger_path.parent / BACKUP_DIR


def backup_name(taken_at: datetime, reason: str, serial: int = 0) -> str:
    suffix = f".{serial}" if serial else ""
    return f"ledger-{taken_at.astimezone(UTC).strftime(_STAMP)}-{reason}{suffix}.sqlite3"


def list_backups(ledger_path: Path) -> list[Backup]:
    """The backups of the ledger at `ledger_path`, newest first."""
    found: list[tuple[datetime, int, Backup]] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(backup_dir(ledger_path)):
            match = _BACKUP_NAME.match(entry.name)
            if match is None or not entry.is_file():
                continue
            taken = datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC)
            backup = Backup(Path(entry.path), taken, match[2], entry.stat().st_size)
            found.append((taken, int(match[3] or 0), backup))
    return [backup for *_, backup in sorted(found, key=lambda t: t[:2], reverse=True)]


# -- `ledger check` --------------------------------------------------------------------------------


def inspect(path: Path) -> Report:
    """Everything `ledger check` reports: the full integrity check, schema, rows per table.
    Reads only; a missing file is reported, not created."""
    if not path.exists():
        return Report(path, exists=False)
    info = path.stat()
    report = Report(path, exists=True, size=info.st_size, mode=f"{stat.S_IMODE(info.st_mode):04o}")
    try:
        check_header(path)
    except LedgerDamaged as exc:
        report.problems.append(exc.message.partition(": ")[2])
        return report
    started = time.perf_counter()
    try:
        with contextlib.closing(sqlite3.connect(str(path), timeout=BUSY_TIMEOUT)) as db:
            report.problems += integrity(db, full=True)
            report.problems += [
                f"{row[0]} row {row[1]} points to a missing {row[2]} row"
                for row in db.execute("PRAGMA foreign_key_check")
            ]
            report.schema = int(db.execute("PRAGMA user_version").fetchone()[0])
            tables = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            ).fetchall()
            for (table,) in tables:
                quoted = table.replace('"', '""')
                report.counts[table] = db.execute(f'SELECT count(*) FROM "{quoted}"').fetchone()[0]
    except sqlite3.DatabaseError as exc:
        if str(exc) not in report.problems:
            report.problems.append(str(exc))
    report.check_ms = round((time.perf_counter() - started) * 1000, 1)
    return report
