"""What each recorded change pops up (pure: no D-Bus, no ledger)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from optout_mail.model import Change, EventView, Kind, Outcome, RequestView, State
from optout_mail.notify import overdue_popup, popup_for

REQUEST = RequestView(
    id=4,
    platform="instagram",
    account="alice@example.org",
    kind=Kind.OBJECTION,
    state=State.RECEIVED,
    filed_at="2025-05-01T12:00:00+00:00",
    due_at="2025-06-01T12:00:00+00:00",
    extended=False,
    created_by="mail",
    updated_at="2025-05-02T12:00:00+00:00",
    overdue=False,
)
EVENT = EventView(
    id=11,
    request_id=4,
    message_id="<m@x>",
    outcome=Outcome.RECEIVED,
    authentic=True,
    rule="r",
    language="en",
    code=None,
    reference=None,
    sender="no-reply@mail.instagram.com",
    subject="Your request",
    received_at="2025-05-02T12:00:00+00:00",
    recorded_at="2025-05-02T12:01:00+00:00",
    source="home",
    folder="INBOX",
    uid=3,
    state_before=State.FILED,
    state_after=State.RECEIVED,
)


def change(
    outcome: Outcome, after: State | None = None, *, moved: bool = True, **event: object
) -> Change:
    state = after or REQUEST.state
    return Change(
        event=replace(EVENT, outcome=outcome, state_after=state, **event),  # type: ignore[arg-type]
        request=replace(REQUEST, state=state),
        state_changed=moved,
    )


@pytest.mark.parametrize(
    ("the_change", "show_codes", "title", "urgency"),
    [
        (
            change(Outcome.CODE, State.VERIFYING, code="482913"),
            True,
            "Your Meta code: 482913",
            "critical",
        ),
        (
            change(Outcome.CODE, State.VERIFYING, code="482913"),
            False,
            "Meta sent a one-time code for your Instagram objection",
            "normal",
        ),
        (
            change(Outcome.CODE, State.VERIFYING, moved=False, code="1"),
            True,
            "Your Meta code: 1",
            "critical",
        ),
        (
            change(Outcome.RECEIVED, State.RECEIVED),
            True,
            "Meta received your Instagram objection (alice@example.org)",
            "normal",
        ),
        (
            change(Outcome.HONOURED, State.HONOURED),
            True,
            "Instagram honoured your objection (alice@example.org)",
            "normal",
        ),
        (
            change(Outcome.REJECTED, State.REJECTED),
            True,
            "Meta refused your Instagram objection (alice@example.org)",
            "critical",
        ),
        (
            change(Outcome.NEEDS_INFO, State.NEEDS_INFO),
            True,
            "Meta wants more evidence for your Instagram objection",
            "critical",
        ),
        (
            change(Outcome.HONOURED, authentic=False),
            True,
            "Possible phishing: a mail pretending to be Meta (no-reply@mail.instagram.com)",
            "critical",
        ),
    ],
    ids=[
        "code",
        "code hidden",
        "repeated code",
        "received",
        "honoured",
        "rejected",
        "needs info",
        "phishing",
    ],
)
def test_popup_for_each_change(
    the_change: Change, show_codes: bool, title: str, urgency: str
) -> None:
    popup = popup_for(the_change, show_codes=show_codes)
    assert popup is not None
    assert popup.title == title
    assert popup.urgency == urgency
    assert "#4" in popup.body or "phishing" in popup.title.lower() or "code" in popup.title


@pytest.mark.parametrize(
    "the_change",
    [
        change(Outcome.HONOURED, State.HONOURED, moved=False),  # a repeated answer
        change(Outcome.RECEIVED, moved=False),
        Change(
            event=replace(EVENT, outcome=Outcome.NOTICE, request_id=None),
            request=None,
            state_changed=False,
        ),
    ],
    ids=["repeated answer", "repeated receipt", "notice"],
)
def test_no_popup_for_what_changes_nothing(the_change: Change) -> None:
    assert popup_for(the_change, show_codes=True) is None


def test_the_refusal_popup_says_where_to_complain() -> None:
    popup = popup_for(change(Outcome.REJECTED, State.REJECTED), show_codes=True)
    assert popup is not None and "Data Protection Commission" in popup.body


def test_overdue_popup_names_the_deadline() -> None:
    popup = overdue_popup(replace(REQUEST, overdue=True))
    assert "2025-06-01" in popup.body and popup.urgency == "critical"


def test_unclear_unverified_and_expired_codes() -> None:
    from datetime import UTC, datetime

    unclear = popup_for(change(Outcome.UNCLEAR, moved=False), show_codes=True)
    assert (
        unclear is not None
        and unclear.title == "Meta wrote about your Instagram objection — read it"
    )
    unverified = popup_for(change(Outcome.HONOURED, authentic=None), show_codes=True)
    assert unverified is not None and "requests confirm 11" in unverified.body
    code = change(Outcome.CODE, State.VERIFYING, code="482913")  # sent 2025-05-02 12:00 UTC
    soon = datetime(2025, 5, 2, 12, 20, tzinfo=UTC)
    assert popup_for(code, show_codes=True, now=soon) is not None
    assert popup_for(code, show_codes=True, now=datetime(2025, 5, 2, 14, 0, tzinfo=UTC)) is None
