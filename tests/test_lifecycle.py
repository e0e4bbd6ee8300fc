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
    assert decide(requests, mail, sent_at=SENT, now=NOW) == expected


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
