"""The lifecycle table and the legal clock (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout_mail.lifecycle import (
    FINAL_STATES,
    add_months,
    changes_ledger,
    due_at,
    is_overdue,
    next_state,
    opens_new_request,
)
from optout_mail.model import Outcome, State

O, S = Outcome, State  # short names keep the transition table readable  # noqa: E741


@pytest.mark.parametrize(
    ("state", "outcome", "expected"),
    [
        (S.FILED, O.CODE, S.VERIFYING),
        (S.VERIFYING, O.CODE, S.VERIFYING),
        (S.VERIFYING, O.RECEIVED, S.RECEIVED),
        (S.VERIFYING, O.HONOURED, S.HONOURED),
        (S.RECEIVED, O.REJECTED, S.REJECTED),
        (S.RECEIVED, O.NEEDS_INFO, S.NEEDS_INFO),
        (S.NEEDS_INFO, O.RECEIVED, S.RECEIVED),
        (S.NEEDS_INFO, O.HONOURED, S.HONOURED),
        (S.REJECTED, O.HONOURED, S.HONOURED),  # Meta reversed its refusal
        (S.HONOURED, O.REJECTED, S.HONOURED),  # a final answer stays
        (S.HONOURED, O.CODE, S.HONOURED),
        (S.RECEIVED, O.NOTICE, S.RECEIVED),
        (S.RECEIVED, O.CODE, S.RECEIVED),
    ],
)
def test_transitions(state: State, outcome: Outcome, expected: State) -> None:
    assert next_state(state, outcome) is expected


def test_notices_and_unauthentic_mails_never_change_the_ledger() -> None:
    assert not changes_ledger(O.NOTICE, True)
    assert not changes_ledger(O.HONOURED, False)
    assert not changes_ledger(None, True)
    assert not changes_ledger(O.HONOURED, None)  # unverified: kept as evidence, fails closed
    assert not changes_ledger(O.CODE, None)
    assert changes_ledger(O.HONOURED, True)


def test_new_objection_after_a_final_answer_opens_a_new_request() -> None:
    assert opens_new_request(S.HONOURED, O.CODE)
    assert opens_new_request(S.REJECTED, O.RECEIVED)
    assert not opens_new_request(S.RECEIVED, O.CODE)
    assert not opens_new_request(S.HONOURED, O.HONOURED)


def test_deadline_is_one_month_or_three_with_extension() -> None:
    filed = datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert due_at(filed) == datetime(2025, 2, 28, 12, tzinfo=UTC)
    assert due_at(filed, extended=True) == datetime(2025, 4, 30, 12, tzinfo=UTC)
    assert add_months(datetime(2024, 12, 15, tzinfo=UTC), 1) == datetime(2025, 1, 15, tzinfo=UTC)


def test_overdue_only_while_waiting_for_meta() -> None:
    due = datetime(2025, 6, 1, tzinfo=UTC)
    late = due + timedelta(seconds=1)
    assert is_overdue(S.RECEIVED, due, late)
    assert not is_overdue(S.RECEIVED, due, due)
    assert not is_overdue(S.HONOURED, due, late)
    assert not is_overdue(S.NEEDS_INFO, due, late)  # the user owes an answer, not Meta


@given(st.lists(st.sampled_from(list(Outcome)), max_size=30))
def test_any_sequence_of_mails_keeps_a_valid_state(outcomes: list[Outcome]) -> None:
    state = S.FILED
    for outcome in outcomes:
        previous = state
        state = next_state(state, outcome)
        assert isinstance(state, State)
        if previous in FINAL_STATES and state != previous:
            assert (previous, state) == (S.REJECTED, S.HONOURED)
        if outcome is O.NOTICE:
            assert state == previous


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(min_value=0, max_value=36),
)
def test_add_months_is_monotonic_and_within_the_month(moment: datetime, months: int) -> None:
    later = add_months(moment, months)
    assert later >= moment
    assert (later.year * 12 + later.month) - (moment.year * 12 + moment.month) == months
    assert later.day <= moment.day


# -- decide: which request a mail joins and what it changes (no database) -------------------

from dataclasses import replace  # noqa: E402

from optout_mail.lifecycle import Decision, StoredRequest, decide  # noqa: E402
from optout_mail.model import Classification, Kind  # noqa: E402

FILED = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
SENT = datetime(2025, 5, 20, 9, 30, tzinfo=UTC)
NOW = datetime(2025, 5, 21, 8, 0, tzinfo=UTC)


def _mail(
    outcome: O | None, *, authentic: bool | None = True, extends: bool = False
) -> Classification:
    return Classification(
        outcome=outcome,
        platform="facebook",
        kind=Kind.OBJECTION,
        authentic=authentic,
        rule="t",
        extends_deadline=extends,
    )


def _stored(state: S, *, id: int = 7, extended: bool = False) -> StoredRequest:
    return StoredRequest(id=id, state=state, filed_at=FILED, extended=extended)


@pytest.mark.parametrize(
    ("requests", "mail", "expected"),
    [
        # No request yet: the first mail opens one, dated by the mail.
        ([], _mail(O.CODE), Decision(None, S.FILED, S.VERIFYING, SENT, due_at(SENT), False)),
        ([], _mail(O.HONOURED), Decision(None, S.FILED, S.HONOURED, SENT, due_at(SENT), False)),
        # An open request takes the mail.
        (
            [_stored(S.RECEIVED)],
            _mail(O.REJECTED),
            Decision(7, S.RECEIVED, S.REJECTED, FILED, due_at(FILED), False),
        ),
        (
            [_stored(S.VERIFYING)],
            _mail(O.CODE),
            Decision(7, S.VERIFYING, S.VERIFYING, FILED, due_at(FILED), False),
        ),
        # Meta announces it needs two more months.
        (
            [_stored(S.RECEIVED)],
            _mail(O.RECEIVED, extends=True),
            Decision(7, S.RECEIVED, S.RECEIVED, FILED, due_at(FILED, extended=True), True),
        ),
        (
            [_stored(S.RECEIVED, extended=True)],
            _mail(O.HONOURED),
            Decision(7, S.RECEIVED, S.HONOURED, FILED, due_at(FILED, extended=True), True),
        ),
        # After a final answer, a new code or acknowledgement is a new objection.
        (
            [_stored(S.HONOURED)],
            _mail(O.CODE),
            Decision(None, S.FILED, S.VERIFYING, SENT, due_at(SENT), False),
        ),
        (
            [_stored(S.REJECTED, id=9), _stored(S.HONOURED, id=3)],
            _mail(O.RECEIVED),
            Decision(None, S.FILED, S.RECEIVED, SENT, due_at(SENT), False),
        ),
        # ... but a late answer joins the request it answers.
        (
            [_stored(S.REJECTED)],
            _mail(O.HONOURED),
            Decision(7, S.REJECTED, S.HONOURED, FILED, due_at(FILED), False),
        ),
    ],
    ids=lambda v: v.outcome.value if isinstance(v, Classification) else None,
)
def test_decide(requests: list[StoredRequest], mail: Classification, expected: Decision) -> None:
    assert _core(decide(requests, mail, sent_at=SENT, now=NOW)) == _core(expected)


def _core(decision: Decision | None) -> tuple[object, ...] | None:
    """What the table above pins: which request, which states, which clock."""
    if decision is None:
        return None
    d = decision
    return (d.request_id, d.state_before, d.state_after, d.filed_at, d.due_at, d.extended)


EARLY, LATE = datetime(2025, 5, 12, tzinfo=UTC), datetime(2025, 5, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    ("requests", "mail", "sent", "joins", "after"),
    [
        # The user filed on 1 May; a refusal from April 2024 belongs to a past request.
        (
            [StoredRequest(7, S.FILED, FILED, False, filed_by_user=True)],
            _mail(O.REJECTED),
            datetime(2024, 4, 3, tzinfo=UTC),
            None,
            S.REJECTED,
        ),
        # ... a mail the same day (a recorded date means midnight) still joins it.
        (
            [StoredRequest(7, S.FILED, FILED, False, filed_by_user=True)],
            _mail(O.CODE),
            FILED - timedelta(hours=3),
            7,
            S.VERIFYING,
        ),
        # A request opened by a mail only guessed its filing date: an older mail still joins.
        (
            [StoredRequest(7, S.RECEIVED, FILED, False)],
            _mail(O.HONOURED),
            FILED - timedelta(days=20),
            7,
            S.HONOURED,
        ),
        # An older honoured mail cannot undo a newer refusal; a newer one can.
        (
            [StoredRequest(7, S.REJECTED, FILED, False, state_at=SENT)],
            _mail(O.HONOURED),
            EARLY,
            7,
            S.REJECTED,
        ),
        (
            [StoredRequest(7, S.REJECTED, FILED, False, state_at=SENT)],
            _mail(O.HONOURED),
            LATE,
            7,
            S.HONOURED,
        ),
        # An old code after the final answer is evidence; a new one opens the next wave.
        (
            [StoredRequest(7, S.HONOURED, FILED, False, state_at=SENT)],
            _mail(O.CODE),
            EARLY,
            7,
            S.HONOURED,
        ),
        (
            [StoredRequest(7, S.HONOURED, FILED, False, state_at=SENT)],
            _mail(O.CODE),
            LATE,
            None,
            S.VERIFYING,
        ),
        # Reference numbers: a mail joins the request with its number, never another one's.
        (
            [
                StoredRequest(9, S.RECEIVED, LATE, False, reference="B"),
                StoredRequest(7, S.RECEIVED, FILED, False, reference="A"),
            ],
            replace(_mail(O.REJECTED), reference="A"),
            LATE,
            7,
            S.REJECTED,
        ),
        (
            [StoredRequest(9, S.RECEIVED, FILED, False, reference="B")],
            replace(_mail(O.REJECTED), reference="A"),
            LATE,
            None,
            S.REJECTED,
        ),
    ],
    ids=[
        "before the filing",
        "same day as the filing",
        "guessed filing date",
        "older honoured",
        "newer honoured",
        "old code",
        "new code",
        "same reference",
        "other reference",
    ],
)
def test_decide_picks_the_right_request(
    requests: list[StoredRequest],
    mail: Classification,
    sent: datetime,
    joins: int | None,
    after: S,
) -> None:
    decision = decide(requests, mail, sent_at=sent, now=NOW + timedelta(days=30))
    assert decision is not None
    assert (decision.request_id, decision.state_after) == (joins, after)
    if joins is not None and decision.state_after == decision.state_before:
        assert decision.note, "a mail that moves nothing says why"


def test_an_unclear_mail_joins_without_moving_and_needs_authenticity() -> None:
    current = [_stored(S.RECEIVED)]
    decision = decide(current, _mail(O.UNCLEAR), sent_at=SENT, now=NOW)
    assert decision is not None and decision.request_id == 7 and not decision.moves
    assert decide(current, _mail(O.UNCLEAR, authentic=None), sent_at=SENT, now=NOW) is None
    assert decide([], _mail(O.UNCLEAR), sent_at=SENT, now=NOW) is None


@pytest.mark.parametrize(
    "mail",
    [
        _mail(None),
        _mail(O.NOTICE),
        _mail(O.HONOURED, authentic=False),
        _mail(O.HONOURED, authentic=None),
    ],
    ids=["no outcome", "notice", "not authentic", "unverified"],
)
def test_decide_leaves_requests_alone(mail: Classification) -> None:
    assert decide([_stored(S.RECEIVED)], mail, sent_at=SENT, now=NOW) is None
    assert decide([], mail, sent_at=SENT, now=NOW) is None


def test_decide_never_files_in_the_future_and_copes_without_a_date() -> None:
    later = NOW + timedelta(days=3)  # a mail whose Date header lies ahead of our clock
    assert decide([], _mail(O.CODE), sent_at=later, now=NOW).filed_at == NOW  # type: ignore[union-attr]
    assert decide([], _mail(O.CODE), sent_at=None, now=NOW).filed_at == NOW  # type: ignore[union-attr]
