"""The popups the ledger remembers: which were delivered, which wait for another try.

A popup counts as shown only once a desktop took it. `shown_at` holds the first try while it
is undelivered and the delivery time after; `claim` keeps two senders from racing. The mails
whose popup was shown are also noted beside the ledger (`popups-shown`), so that a ledger
restored from a backup, which records a newer mail again, does not show its popup twice.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path

from optout_mail import ledger_file
from optout_mail.ledger_views import iso, parse_iso

_MEMORY_LOCK = threading.Lock()


class PopupRecords:
    """The `popups` table of one ledger connection (`Ledger.popups`)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path | str,
        transaction: Callable[[], AbstractContextManager[sqlite3.Connection]],
    ) -> None:
        self._db = db
        self._path = path
        self._transaction = transaction
        self._shown_mails: set[str] | None = None  # read from the side file on first use

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Held while a popup is looked up, sent and marked, so that no other thread or
        process (a `scan` beside `run`) sends the same one at the same time."""
        if isinstance(self._path, Path):
            with ledger_file.flocked(self._path.with_name("popups.lock")):
                yield
        else:
            with _MEMORY_LOCK:
                yield

    def attempt(self, key: str) -> tuple[datetime, bool] | None:
        """(first try, or delivery time; delivered) of popup `key`; None if never tried."""
        row = self._db.execute(
            "SELECT shown_at, delivered FROM popups WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else (parse_iso(row[0]), bool(row[1]))

    def delivered(self, key: str) -> bool:
        attempt = self.attempt(key)
        return attempt is not None and attempt[1]

    def undelivered(self, since: datetime | None = None) -> list[tuple[str, datetime]]:
        """(key, first try) of the popups no desktop took yet (first tried `since`, if given),
        oldest first."""
        rows = self._db.execute(
            "SELECT key, shown_at FROM popups WHERE delivered = 0 AND shown_at >= ? "
            "ORDER BY shown_at, key",
            (iso(since) if since is not None else "",),
        )
        return [(row[0], parse_iso(row[1])) for row in rows]

    def mark(self, key: str, *, delivered: bool, now: datetime) -> None:
        """Note a try; an undelivered one keeps the time of its first try."""
        with self._transaction():
            self._db.execute(
                """INSERT INTO popups (key, shown_at, delivered) VALUES (?, ?, ?)
                   ON CONFLICT (key) DO UPDATE SET delivered = excluded.delivered,
                       shown_at = CASE WHEN excluded.delivered
                                  THEN excluded.shown_at ELSE popups.shown_at END""",
                (key, iso(now), int(delivered)),
            )

    # -- mails whose popup was shown, kept outside the ledger file ---------------------------

    def _side_file(self) -> Path | None:
        return self._path.with_name("popups-shown") if isinstance(self._path, Path) else None

    def _mails(self) -> set[str]:
        if self._shown_mails is None:
            side = self._side_file()
            try:
                lines = side.read_text("ascii").split() if side is not None else []
            except FileNotFoundError:
                lines = []
            self._shown_mails = set(lines)
        return self._shown_mails

    def mail_shown(self, mail: str) -> bool:
        """Whether the popup of this mail (see `mail_key`) was shown, even before a restore."""
        return _digest(mail) in self._mails()

    def remember_mail(self, mail: str) -> None:
        digest = _digest(mail)
        if digest in self._mails():
            return
        self._mails().add(digest)
        side = self._side_file()
        if side is not None:
            with ledger_file.private_append(side) as handle:
                handle.write(digest + "\n")


def mail_key(message_id: str, sender: str, outcome: str) -> str:
    """What makes "the popup of this mail" the same after the ledger was restored."""
    return f"{message_id}|{sender}|{outcome}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
