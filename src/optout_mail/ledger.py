"""The SQLite ledger: requests, the events (mails) that moved them, folder cursors, popups sent.

It stores what `lifecycle.decide` chose; it decides nothing itself. Schema changes are numbered
migrations in `PRAGMA user_version`. `record` writes events, request states and the folder cursor
in one transaction, so a crash neither loses nor repeats anything, and a mail is recorded once.
The file itself (checks, permissions, locks) is `ledger_file`'s; its backups are `backup`'s.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from optout_mail import backup, ledger_file, lifecycle
from optout_mail.errors import LedgerError
from optout_mail.ledger_popups import PopupRecords
from optout_mail.ledger_schema import MIGRATIONS
from optout_mail.ledger_user import UserCorrections
from optout_mail.ledger_views import iso as _iso
from optout_mail.ledger_views import parse_iso as _parse_iso
from optout_mail.model import (
    Change,
    Classification,
    Cursor,
    Kind,
    Message,
    Observation,
    State,
)

log = logging.getLogger(__name__)


@dataclass
class RecordResult:
    recorded: int = 0
    duplicates: int = 0
    changes: list[Change] = field(default_factory=list)


def dedupe_key(message: Message, classification: Classification) -> str:
    """What makes a mail "the same mail" in the ledger: its Message-ID, unless it is forged or
    unverified (a copy that cannot be verified must not shadow the real mail, nor a verdict
    that comes later, e.g. once DNS answers)."""
    if classification.authentic is False:
        return f"unauthentic:{message.from_address}:{message.message_id}"
    if classification.authentic is None:
        return f"unverified:{message.from_address}:{message.message_id}"
    return message.message_id


class Ledger(UserCorrections):
    """The ledger file. One instance per thread (sqlite3 connections are not shared).

    Opening checks the file (`ledger_file.connect`); the first write of a connection takes the
    daily backup when one is due, and a migration is preceded by a backup of its own.
    Reading (requests, events, counts) is inherited from `LedgerViews`, the user's own
    changes (add, forget, note, set-state) from `UserCorrections`.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else path
        self._backup_due = False
        if isinstance(self.path, Path):
            self._db, created = ledger_file.connect(self.path)
            self._backup_due = not created
        else:
            self._db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA foreign_keys = ON")
        self._db.row_factory = sqlite3.Row
        self.popups = PopupRecords(self._db, self.path, self._transaction)
        try:
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise LedgerError(
                f"cannot open the ledger {path}: {exc}",
                hint="check that the data_dir is writable and has free space",
            ) from None
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise LedgerError(
                f"the ledger {self.path} was written by a newer optout-mail (schema {version})",
                hint="upgrade optout-mail",
            )
        if version == len(MIGRATIONS):
            return
        self._backup_due = False  # the backup before the migration stands for today's
        with self._transaction():
            # Read again under the write lock: another process may have migrated meanwhile.
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if 0 < version < len(MIGRATIONS) and isinstance(self.path, Path):
                backup.take_backup(self.path, reason=f"schema{version}", now=datetime.now(UTC))
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a concurrent `scan` waits instead
        # of failing half-way with SQLITE_BUSY on its first write.
        self._daily_backup()
        ledger_file.begin_immediate(self._db, self.path)
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def _daily_backup(self) -> None:
        """Before the first write of a connection to an existing ledger: the daily backup."""
        if not self._backup_due or not isinstance(self.path, Path):
            return
        self._backup_due = False
        empty = "SELECT NOT EXISTS (SELECT 1 FROM events) AND NOT EXISTS (SELECT 1 FROM requests)"
        if self._db.execute(empty).fetchone()[0]:
            return  # nothing worth keeping yet
        try:
            backup.backup_if_due(self.path, now=datetime.now(UTC))
        except LedgerError as exc:  # the write goes on; the user hears of it
            log.warning("%s%s", exc.message, f" ({exc.hint})" if exc.hint else "")

    # -- cursors --------------------------------------------------------------------------

    def cursor(self, source: str, folder: str) -> Cursor | None:
        row = self._db.execute(
            "SELECT * FROM cursors WHERE source = ? AND folder = ?", (source, folder)
        ).fetchone()
        if row is None:
            return None
        return Cursor(source, folder, row["uidvalidity"], row["last_uid"], row["uidnext"])

    def known(self, keys: Sequence[str]) -> set[str]:
        """Which of these dedupe keys (see `dedupe_key`) are recorded already."""
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._db.execute(
                    f"SELECT dedupe_key FROM events WHERE dedupe_key IN ({marks})", chunk
                )
            )
        return found

    # -- recording ------------------------------------------------------------------------

    def record(
        self,
        observations: Sequence[Observation],
        *,
        now: datetime,
        cursor: Cursor | None = None,
    ) -> RecordResult:
        """Record classified mails and advance `cursor`, all in one transaction."""
        result = RecordResult()
        try:
            with self._transaction():
                for observation in observations:
                    change = self._record_one(observation, now)
                    if change is None:
                        result.duplicates += 1
                    else:
                        result.recorded += 1
                        result.changes.append(change)
                if cursor is not None:
                    self._save_cursor(cursor, now)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write the ledger {self.path}: {exc}") from None
        return result

    def _save_cursor(self, cursor: Cursor, now: datetime) -> None:
        self._db.execute(
            """INSERT INTO cursors (source, folder, uidvalidity, last_uid, uidnext, updated_at)
               VALUES (?, ?, ?, ?, ?, ?)
               ON CONFLICT (source, folder) DO UPDATE SET uidvalidity = excluded.uidvalidity,
                   last_uid = excluded.last_uid, uidnext = excluded.uidnext,
                   updated_at = excluded.updated_at""",
            (
                cursor.source,
                cursor.folder,
                cursor.uidvalidity,
                cursor.last_uid,
                cursor.uidnext,
                _iso(now),
            ),
        )

    def _record_one(self, obs: Observation, now: datetime) -> Change | None:
        c = obs.classification
        if c.outcome is None or c.kind is None or c.platform is None or c.rule is None:
            return None
        message = obs.message
        key = dedupe_key(message, c)
        if self._db.execute("SELECT 1 FROM events WHERE dedupe_key = ?", (key,)).fetchone():
            return None
        received = message.date or now
        decision = lifecycle.decide(
            self._stored_requests(c.platform, obs.account_address, c.kind),
            c,
            sent_at=message.date,
            now=now,
        )
        request_id = self._apply(decision, c.platform, obs.account_address, c.kind, now)
        cur = self._db.execute(
            """INSERT INTO events (request_id, message_id, dedupe_key, outcome, authentic, rule,
                   language, code, reference, sender, subject, received_at, recorded_at, source,
                   folder, uid, uidvalidity, state_before, state_after, note, platform, kind,
                   account, extends_deadline, raw_sha256)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
                       ?)""",
            (
                request_id,
                message.message_id,
                key,
                c.outcome.value,
                None if c.authentic is None else int(c.authentic),
                c.rule,
                c.language,
                c.code,
                c.reference,
                message.from_address,
                message.subject[:500],
                _iso(received),
                _iso(now),
                obs.source,
                obs.folder,
                obs.uid,
                obs.uidvalidity,
                decision.state_before.value if decision else None,
                decision.state_after.value if decision else None,
                decision.note if decision else None,
                c.platform,
                c.kind.value,
                obs.account_address,
                int(c.extends_deadline),
                obs.raw_sha256,
            ),
        )
        event = self._event(int(cur.lastrowid or 0))
        request = self.request(request_id, now=now) if request_id is not None else None
        moved = decision is not None and decision.state_before != decision.state_after
        return Change(event=event, request=request, state_changed=moved)

    def _stored_requests(
        self, platform: str, account: str, kind: Kind
    ) -> list[lifecycle.StoredRequest]:
        """The requests of one (platform, account, kind), newest first."""
        rows = self._db.execute(
            """SELECT id, state, filed_at, extended, reference, state_at, created_by FROM requests
               WHERE platform = ? AND account = ? AND kind = ?
               ORDER BY filed_at DESC, id DESC""",
            (platform, account, kind.value),
        )
        return [
            lifecycle.StoredRequest(
                id=int(row["id"]),
                state=State(row["state"]),
                filed_at=_parse_iso(row["filed_at"]),
                extended=bool(row["extended"]),
                reference=row["reference"],
                state_at=_parse_iso(row["state_at"]) if row["state_at"] else None,
                filed_by_user=row["created_by"] == "user",
            )
            for row in rows
        ]

    def _apply(
        self,
        decision: lifecycle.Decision | None,
        platform: str,
        account: str,
        kind: Kind,
        now: datetime,
    ) -> int | None:
        """Write what the lifecycle decided; the id of the request the mail belongs to."""
        if decision is None:
            return None
        state_at = _iso(decision.state_at) if decision.state_at else None
        if decision.request_id is None:
            cur = self._db.execute(
                """INSERT INTO requests (platform, account, kind, state, filed_at, due_at,
                       extended, created_by, updated_at, reference, state_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, 'mail', ?, ?, ?)""",
                (
                    platform,
                    account,
                    kind.value,
                    decision.state_after.value,
                    _iso(decision.filed_at),
                    _iso(decision.due_at),
                    int(decision.extended),
                    _iso(now),
                    decision.reference,
                    state_at,
                ),
            )
            return int(cur.lastrowid or 0)
        self._db.execute(
            """UPDATE requests SET state = ?, due_at = ?, extended = ?, updated_at = ?,
                   reference = ?, state_at = ?
               WHERE id = ?""",
            (
                decision.state_after.value,
                _iso(decision.due_at),
                int(decision.extended),
                _iso(now),
                decision.reference,
                state_at,
                decision.request_id,
            ),
        )
        return decision.request_id

    # -- popups ------------------------------------------------------------------------------

    def popup_shown(self, key: str) -> bool:
        """True once a desktop took the popup `key` (see `popups` for the rest)."""
        return self.popups.delivered(key)

    def mark_popup(self, key: str, *, delivered: bool, now: datetime) -> None:
        self.popups.mark(key, delivered=delivered, now=now)
