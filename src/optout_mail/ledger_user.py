"""What the user changes in the ledger by hand: requests added and forgotten, notes, and a
state set when the mails got it wrong. `Ledger` inherits `UserCorrections`.

A note or a state set is the user's own event (`user_events`, schema 4), kept in the request's
timeline beside Meta's mails, so that the ledger shows who decided what.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path

from optout_mail import backup, lifecycle
from optout_mail.errors import UnknownRequest, UsageError
from optout_mail.ledger_views import LedgerViews, iso, parse_iso
from optout_mail.model import Change, Classification, Kind, Outcome, RequestView, State

SET_BY_USER = "set by the user"


class UserCorrections(LedgerViews):
    """The writing the user does by hand (`requests add|forget|note|set-state`)."""

    # Ledger's: the write transaction, and how a mail's decision is read and written.
    path: Path | str
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _stored_requests: Callable[[str, str, Kind], list[lifecycle.StoredRequest]]
    _apply: Callable[[lifecycle.Decision | None, str, str, Kind, datetime], int | None]

    def add_request(
        self, *, platform: str, account: str, kind: Kind, filed_at: datetime, now: datetime
    ) -> RequestView:
        with self._transaction():
            cur = self._db.execute(
                """INSERT INTO requests (platform, account, kind, state, filed_at, due_at,
                       extended, created_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, 'user', ?)""",
                (
                    platform,
                    account.lower(),
                    kind.value,
                    State.FILED.value,
                    iso(filed_at),
                    iso(lifecycle.due_at(filed_at)),
                    iso(now),
                ),
            )
        return self.request(int(cur.lastrowid or 0), now=now)

    def forget(self, request_id: int) -> None:
        with self._transaction():
            cur = self._db.execute("DELETE FROM requests WHERE id = ?", (request_id,))
        if cur.rowcount == 0:
            raise UnknownRequest(request_id)

    def forget_all(self) -> int:
        """Delete every request with its events, and every mail that belongs to none; the
        folder positions go too, so that the next scan finds the mails again. Returns how
        many requests there were. A backup is taken first (`ledger restore` brings it back)."""
        if isinstance(self.path, Path):
            backup.take_backup(self.path, reason="forget", now=datetime.now(UTC))
        with self._transaction():
            count = int(self._db.execute("SELECT count(*) FROM requests").fetchone()[0])
            for table in ("user_events", "events", "requests", "cursors", "popups"):
                self._db.execute(f"DELETE FROM {table}")
        return count

    def note(self, request_id: int, text: str, *, now: datetime) -> RequestView:
        """Add the user's note to a request's timeline."""
        text = text.strip()
        if not text:
            raise UsageError("the note is empty", hint="give the text to note, in quotes")
        with self._transaction():
            self._require(request_id)
            self._db.execute(
                "INSERT INTO user_events (request_id, action, text, recorded_at) "
                "VALUES (?, 'note', ?, ?)",
                (request_id, text, iso(now)),
            )
        return self.request(request_id, now=now)

    def set_state(self, request_id: int, state: State, *, now: datetime) -> RequestView:
        """Move a request to `state` by the user's word, recorded as the user's event. The
        state counts from now: a mail older than this correction does not undo it."""
        with self._transaction():
            before = State(self._require(request_id)["state"])
            if before is state:
                raise UsageError(f"request #{request_id} is {state.value} already")
            self._db.execute(
                "UPDATE requests SET state = ?, state_at = ?, updated_at = ? WHERE id = ?",
                (state.value, iso(now), iso(now), request_id),
            )
            self._db.execute(
                "INSERT INTO user_events (request_id, action, text, recorded_at, state_before, "
                "state_after) VALUES (?, 'set-state', ?, ?, ?, ?)",
                (request_id, SET_BY_USER, iso(now), before.value, state.value),
            )
        return self.request(request_id, now=now)

    def confirm(self, event_id: int, *, now: datetime) -> Change:
        """The user accepts an unverified mail: it moves its request as an authentic one would,
        and the event says it was the user's decision. Raises UsageError when there is nothing
        to accept (no such event, already applied, or a mail that failed authentication)."""
        with self._transaction():
            row = self._db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
            problem = _why_not_confirmable(row, event_id)
            if problem:
                raise UsageError(problem, hint="`optout-mail requests show ID` lists the events")
            kind = Kind(row["kind"])
            classification = Classification(
                outcome=Outcome(row["outcome"]),
                platform=row["platform"],
                kind=kind,
                authentic=True,  # the user's word stands in for the missing verdict
                reference=row["reference"],
                extends_deadline=bool(row["extends_deadline"]),
            )
            sent = parse_iso(row["received_at"]) if row["received_at"] else None
            decision = lifecycle.decide(
                self._stored_requests(row["platform"], row["account"], kind),
                classification,
                sent_at=sent,
                now=now,
            )
            request_id = self._apply(decision, row["platform"], row["account"], kind, now)
            note = f"accepted by the user on {now.date().isoformat()}"
            self._db.execute(
                """UPDATE events SET request_id = ?, state_before = ?, state_after = ?,
                       note = ?, confirmed_at = ? WHERE id = ?""",
                (
                    request_id,
                    decision.state_before.value if decision else None,
                    decision.state_after.value if decision else None,
                    note
                    if decision is None or decision.note is None
                    else f"{note}; {decision.note}",
                    iso(now),
                    event_id,
                ),
            )
        event = self._event(event_id)
        request = self.request(request_id, now=now) if request_id is not None else None
        moved = decision is not None and decision.moves
        return Change(event=event, request=request, state_changed=moved)

    def _require(self, request_id: int) -> sqlite3.Row:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM requests WHERE id = ?", (request_id,)
        ).fetchone()
        if row is None:
            raise UnknownRequest(request_id)
        return row


def _why_not_confirmable(row: sqlite3.Row | None, event_id: int) -> str | None:
    if row is None:
        return f"there is no event {event_id}"
    if row["authentic"] == 0:
        return f"event {event_id} failed the authenticity check: it is not from Meta"
    if row["request_id"] is not None or row["confirmed_at"]:
        return f"event {event_id} is already part of request #{row['request_id']}"
    if row["kind"] is None or row["outcome"] in (Outcome.NOTICE.value,):
        return f"event {event_id} is not an answer to a request"
    return None
