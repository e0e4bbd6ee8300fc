"""Reading the ledger: its rows as the model's views (`EventView`, `RequestView`), and the one
format its timestamps are stored in (ISO 8601, UTC, seconds). `Ledger` inherits `LedgerViews`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from optout_mail import lifecycle
from optout_mail.errors import UnknownRequest
from optout_mail.model import EventView, Kind, Outcome, RequestView, State, UserEventView


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


class LedgerViews:
    """The reading half of `Ledger`: requests with their events, single events, counts."""

    _db: sqlite3.Connection

    # -- reading ---------------------------------------------------------------------------

    def requests(self, *, now: datetime) -> list[RequestView]:
        rows = self._db.execute("SELECT * FROM requests ORDER BY id").fetchall()
        events: dict[int, list[EventView]] = {}
        for row in self._db.execute(
            "SELECT * FROM events WHERE request_id IS NOT NULL ORDER BY received_at, id"
        ):
            events.setdefault(row["request_id"], []).append(event_view(row))
        mine: dict[int, list[UserEventView]] = {}
        for row in self._db.execute("SELECT * FROM user_events ORDER BY recorded_at, id"):
            mine.setdefault(row["request_id"], []).append(user_event_view(row))
        return [
            request_view(row, events.get(row["id"], []), now, mine.get(row["id"], []))
            for row in rows
        ]

    def request(self, request_id: int, *, now: datetime) -> RequestView:
        row = self._db.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
        if row is None:
            raise UnknownRequest(request_id)
        events = [
            event_view(r)
            for r in self._db.execute(
                "SELECT * FROM events WHERE request_id = ? ORDER BY received_at, id",
                (request_id,),
            )
        ]
        mine = [
            user_event_view(r)
            for r in self._db.execute(
                "SELECT * FROM user_events WHERE request_id = ? ORDER BY recorded_at, id",
                (request_id,),
            )
        ]
        return request_view(row, events, now, mine)

    def unattached_events(self) -> list[EventView]:
        """Events that changed no request: mails that failed authentication, announcements."""
        return [
            event_view(r)
            for r in self._db.execute(
                "SELECT * FROM events WHERE request_id IS NULL ORDER BY received_at, id"
            )
        ]

    def _event(self, event_id: int) -> EventView:
        row = self._db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        return event_view(row)

    def event(self, event_id: int) -> EventView | None:
        row = self._db.execute("SELECT * FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else event_view(row)

    def counts(self) -> dict[str, int]:
        return {
            "requests": self._db.execute("SELECT count(*) FROM requests").fetchone()[0],
            "events": self._db.execute("SELECT count(*) FROM events").fetchone()[0],
        }


def event_view(row: sqlite3.Row) -> EventView:
    authentic = row["authentic"]
    before, after = row["state_before"], row["state_after"]
    return EventView(
        id=row["id"],
        request_id=row["request_id"],
        message_id=row["message_id"],
        outcome=Outcome(row["outcome"]),
        authentic=None if authentic is None else bool(authentic),
        rule=row["rule"],
        language=row["language"],
        code=row["code"],
        reference=row["reference"],
        sender=row["sender"],
        subject=row["subject"],
        received_at=row["received_at"],
        recorded_at=row["recorded_at"],
        source=row["source"],
        folder=row["folder"],
        uid=row["uid"],
        state_before=State(before) if before else None,
        state_after=State(after) if after else None,
        note=row["note"],
        raw_sha256=row["raw_sha256"],
    )


def user_event_view(row: sqlite3.Row) -> UserEventView:
    before, after = row["state_before"], row["state_after"]
    return UserEventView(
        id=row["id"],
        request_id=row["request_id"],
        action=row["action"],
        text=row["text"],
        recorded_at=row["recorded_at"],
        state_before=State(before) if before else None,
        state_after=State(after) if after else None,
    )


def request_view(
    row: sqlite3.Row,
    events: list[EventView],
    now: datetime,
    user_events: list[UserEventView] | None = None,
) -> RequestView:
    state = State(row["state"])
    return RequestView(
        id=row["id"],
        platform=row["platform"],
        account=row["account"],
        kind=Kind(row["kind"]),
        state=state,
        filed_at=row["filed_at"],
        due_at=row["due_at"],
        extended=bool(row["extended"]),
        created_by=row["created_by"],
        updated_at=row["updated_at"],
        overdue=lifecycle.is_overdue(state, parse_iso(row["due_at"]), now),
        events=tuple(events),
        reference=row["reference"],
        user_events=tuple(user_events or ()),
    )
