"""Terminal rendering: the words a person reads (no terminal needed: rich records to a string)."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from optout_mail.model import Change, Classification, Kind, Outcome, State
from optout_mail.output import (
    describe_change,
    describe_classification,
    print_request,
    print_requests,
)

from .test_notify import EVENT, REQUEST


def render(draw, *args) -> str:  # type: ignore[no-untyped-def]
    console = Console(width=100, record=True, color_system=None)
    draw(console, *args)
    return console.export_text()


def test_describe_classification() -> None:
    result = Classification(
        outcome=Outcome.CODE,
        platform="facebook",
        kind=Kind.OBJECTION,
        authentic=True,
        code="483920",
        rule="meta.en.objection.code",
        language="en",
    )
    assert describe_classification("a.eml", result) == (
        "a.eml: code, code 483920, facebook, objection, authentic, rule meta.en.objection.code [en]"
    )
    nothing = Classification(outcome=None, notes=("sender x.org is not covered",))
    assert (
        describe_classification("b.eml", nothing) == "b.eml: no match (sender x.org is not covered)"
    )
    fake = replace(result, authentic=False, lookalike=True)
    assert "possible phishing" in describe_classification("c.eml", fake)


def test_describe_change() -> None:
    moved = Change(event=EVENT, request=REQUEST, state_changed=True)
    assert describe_change(moved) == (
        "#4 Instagram objection (alice@example.org): filed -> received"
    )
    phishing = Change(event=replace(EVENT, authentic=False), request=None, state_changed=False)
    assert "possible phishing" in describe_change(phishing)


def test_request_table_and_timeline() -> None:
    request = replace(REQUEST, state=State.RECEIVED, overdue=True, events=(EVENT,))
    table = render(print_requests, [request])
    assert "Instagram" in table and "overdue" in table and "2025-05-01" in table
    timeline = render(print_request, request)
    assert "filed -> received" in timeline and "Message-ID <m@x>" in timeline
