"""The popups the ledger remembers: which were delivered, which wait for another try.

A popup counts as shown only once a desktop took it. `shown_at` holds the first try while it
is undelivered and the delivery time after; `claim` keeps two senders from racing.
"""

from __future__ import annotations

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
