"""What the user decides in the ledger: a request filed by hand, an unverified mail accepted as
the user's own decision (never a forged one), a request forgotten. A mixin of `Ledger`, which
brings the connection, its transactions and the lifecycle's writing.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from optout_mail import lifecycle
from optout_mail.errors import UnknownRequest, UsageError
from optout_mail.ledger_views import LedgerViews
from optout_mail.ledger_views import iso as _iso
from optout_mail.ledger_views import parse_iso as _parse_iso
from optout_mail.model import Change, Classification, Kind, Outcome, RequestView, State


class LedgerDecisions(LedgerViews):
    """The user's own changes; `Ledger` brings the connection, its transactions and the
    writing of what the lifecycle decided."""

    if TYPE_CHECKING:

        def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _stored_requests(
            self, platform: str, account: str, kind: Kind
        ) -> list[lifecycle.StoredRequest]: ...

        def _apply(
            self,
            decision: lifecycle.Decision | None,
            platform: str,
            account: str,
            kind: Kind,
            now: datetime,
        ) -> int | None: ...

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
                    _iso(filed_at),
                    _iso(lifecycle.due_at(filed_at)),
                    _iso(now),
                ),
            )
        return self.request(int(cur.lastrowid or 0), now=now)

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
            sent = _parse_iso(row["received_at"]) if row["received_at"] else None
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
                    _iso(now),
                    event_id,
                ),
            )
        event = self._event(event_id)
        request = self.request(request_id, now=now) if request_id is not None else None
        moved = decision is not None and decision.moves
        return Change(event=event, request=request, state_changed=moved)

    def forget(self, request_id: int) -> None:
        with self._transaction():
            cur = self._db.execute("DELETE FROM requests WHERE id = ?", (request_id,))
        if cur.rowcount == 0:
            raise UnknownRequest(request_id)

    # -- popups ------------------------------------------------------------------------------


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
