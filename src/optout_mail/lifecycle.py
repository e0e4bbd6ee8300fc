"""The request lifecycle: which request a mail belongs to, what it changes, the legal clock.

filed -> verifying (code) -> received -> honoured | rejected | needs_info. `decide` is the one
place that makes those choices; the ledger reads the rows, asks, and writes the answer. Pure
functions of their arguments: the caller passes `now`; nothing here reads the clock or storage.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from optout_mail.model import Classification, Outcome, State

# (state, outcome) -> next state. A pair that is missing leaves the state as it is: the event
# is still recorded as evidence, it just does not move the request.
TRANSITIONS: dict[tuple[State, Outcome], State] = {
    (State.FILED, Outcome.CODE): State.VERIFYING,
    (State.FILED, Outcome.RECEIVED): State.RECEIVED,
    (State.VERIFYING, Outcome.RECEIVED): State.RECEIVED,
    (State.NEEDS_INFO, Outcome.RECEIVED): State.RECEIVED,  # Meta acknowledges the evidence
    **{
        (state, outcome): State(outcome.value)
        for state in (State.FILED, State.VERIFYING, State.RECEIVED, State.NEEDS_INFO)
        for outcome in (Outcome.HONOURED, Outcome.REJECTED, Outcome.NEEDS_INFO)
        if state.value != outcome.value
    },
    # Meta may reverse a refusal (after a complaint to a data protection authority).
    (State.REJECTED, Outcome.HONOURED): State.HONOURED,
}

FINAL_STATES = frozenset({State.HONOURED, State.REJECTED})
# States in which Meta owes an answer, so the deadline runs. `needs_info` waits for the user.
WAITING_FOR_META = frozenset({State.FILED, State.VERIFYING, State.RECEIVED})

DEADLINE_MONTHS = 1  # GDPR Art. 12(3): "within one month of receipt of the request"
EXTENSION_MONTHS = 2  # "... may be extended by two further months where necessary"


def next_state(current: State, outcome: Outcome) -> State:
    """The state after a mail with `outcome`; the same state when the mail does not move it."""
    return TRANSITIONS.get((current, outcome), current)


def changes_ledger(outcome: Outcome | None, authentic: bool | None) -> bool:
    """Whether a classified mail may touch a request at all.

    Announcements are not answers. Authenticity fails closed: only a mail shown to be
    authentic moves a request; one that failed, or could not be verified, or came from a
    lookalike domain, is kept as evidence and moves nothing.
    """
    return (
        outcome is not None
        and outcome not in (Outcome.NOTICE, Outcome.UNCLEAR)
        and authentic is True
    )


def opens_new_request(current: State, outcome: Outcome) -> bool:
    """A new code or acknowledgement after a final answer means the user objected again."""
    return current in FINAL_STATES and outcome in (Outcome.CODE, Outcome.RECEIVED)


def due_at(filed_at: datetime, *, extended: bool = False) -> datetime:
    """When Meta must have answered a request filed at `filed_at`."""
    return add_months(filed_at, DEADLINE_MONTHS + (EXTENSION_MONTHS if extended else 0))


def is_overdue(state: State, due: datetime, now: datetime) -> bool:
    return state in WAITING_FOR_META and now > due


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus calendar months, clamped to the month's last day (31 Jan + 1 = 28/29 Feb)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True)
class StoredRequest:
    """What the lifecycle needs to know of a request already in the ledger."""

    id: int
    state: State
    filed_at: datetime
    extended: bool
    reference: str | None = None  # Meta's case or reference number, once a mail named it
    state_at: datetime | None = None  # when Meta sent the mail that set the current state
    # The user recorded the filing (`requests add`): its date is known. A request opened by a
    # mail only guesses it, so an older mail may still belong to it.
    filed_by_user: bool = False


@dataclass(frozen=True)
class Decision:
    """What one mail does: which request it joins (None: a new one) and how that changes."""

    request_id: int | None
    state_before: State
    state_after: State
    filed_at: datetime
    due_at: datetime
    extended: bool
    reference: str | None = None
    state_at: datetime | None = None
    note: str | None = None  # why the mail did not move the request, in words

    @property
    def opens_request(self) -> bool:
        return self.request_id is None

    @property
    def moves(self) -> bool:
        return self.state_before != self.state_after


# How long a one-time code can be typed into Meta's form (2024: "within an hour").
CODE_VALIDITY = timedelta(hours=1)
# A request recorded by hand is often recorded a little after the form was sent, and a date
# without a time means midnight: mails this much older than the filing still belong to it.
FILING_SLACK = timedelta(days=1)


def code_expired(sent_at: datetime | None, now: datetime) -> bool:
    """A code older than its validity is evidence, not something to type in any more."""
    return sent_at is not None and now - sent_at > CODE_VALIDITY


def decide(
    requests: Sequence[StoredRequest],
    classification: Classification,
    *,
    sent_at: datetime | None,
    now: datetime,
) -> Decision | None:
    """What a classified mail does to the requests of its (platform, account, kind).

    `requests` are that key's requests, newest first. None when the mail touches no request:
    an announcement, a mail that is not established as authentic, no outcome, or an `unclear`
    mail for which no request exists. The rules, in order:
    - Meta's reference number keeps requests apart: a mail never joins a request that has
      another one;
    - a mail sent before the user filed a request belongs to an earlier request, or opens a
      past one;
    - state moves only forward in the mail's own time: a mail older than the one that set the
      current state is recorded but changes nothing (so a stale "honoured" cannot undo a newer
      refusal, and an old code cannot reopen a closed request);
    - a new code or acknowledgement after a final answer is a new objection (a second wave).
    """
    outcome = classification.outcome
    sent = min(sent_at or now, now)
    if outcome is Outcome.UNCLEAR:
        return _unclear(requests, classification, sent, now)
    if outcome is None or not changes_ledger(outcome, classification.authentic):
        return None
    reference = classification.reference
    current = _candidate(requests, reference, sent)
    if current is None or _new_wave(current, outcome, sent):
        return _open(classification, outcome, sent, reference)
    return _attach(current, classification, outcome, sent)


def _candidate(
    requests: Sequence[StoredRequest], reference: str | None, sent: datetime
) -> StoredRequest | None:
    """The request a mail sent at `sent` belongs to: the newest one filed before it whose
    reference does not contradict the mail's, or the one with the same reference."""
    if reference:
        for request in requests:
            if request.reference == reference:
                return request
    for request in requests:
        if reference and request.reference and request.reference != reference:
            continue
        if not request.filed_by_user or request.filed_at - FILING_SLACK <= sent:
            return request
    return None


def _new_wave(current: StoredRequest, outcome: Outcome, sent: datetime) -> bool:
    newer = current.state_at is None or sent > current.state_at
    return opens_new_request(current.state, outcome) and newer


def _open(
    classification: Classification, outcome: Outcome, sent: datetime, reference: str | None
) -> Decision:
    # Nobody recorded the filing (or the mail is older than every filing): the mail stands in.
    extends = classification.extends_deadline
    after = next_state(State.FILED, outcome)
    return Decision(
        request_id=None,
        state_before=State.FILED,
        state_after=after,
        filed_at=sent,
        due_at=due_at(sent, extended=extends),
        extended=extends,
        reference=reference,
        state_at=sent if after is not State.FILED else None,
    )


def _attach(
    current: StoredRequest, classification: Classification, outcome: Outcome, sent: datetime
) -> Decision:
    extended = current.extended or classification.extends_deadline
    after, note = next_state(current.state, outcome), None
    if current.state_at is not None and sent < current.state_at and after != current.state:
        after = current.state
        note = (
            f"older than the mail that made it {current.state.value} "
            f"({current.state_at.date().isoformat()}): recorded, state unchanged"
        )
    elif after == current.state and outcome.value != current.state.value:
        note = f"a {outcome.value} mail does not change a {current.state.value} request"
    moved = after != current.state
    return Decision(
        request_id=current.id,
        state_before=current.state,
        state_after=after,
        filed_at=current.filed_at,
        due_at=due_at(current.filed_at, extended=extended),
        extended=extended,
        reference=current.reference or classification.reference,
        state_at=sent if moved else current.state_at,
        note=note,
    )


def _unclear(
    requests: Sequence[StoredRequest],
    classification: Classification,
    sent: datetime,
    now: datetime,
) -> Decision | None:
    """An unclear mail joins its request, if there is one, and moves nothing."""
    if classification.authentic is not True:
        return None
    current = _candidate(requests, classification.reference, sent)
    if current is None:
        return None
    return Decision(
        request_id=current.id,
        state_before=current.state,
        state_after=current.state,
        filed_at=current.filed_at,
        due_at=due_at(current.filed_at, extended=current.extended),
        extended=current.extended,
        reference=current.reference or classification.reference,
        state_at=current.state_at,
        note="Meta wrote about the request, but the mail could not be read with confidence",
    )
