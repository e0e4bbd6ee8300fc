"""The request lifecycle: which request a mail belongs to, what it changes, the legal clock.

filed -> verifying (code) -> received -> honoured | rejected | needs_info. `decide` is the one
place that makes those choices; the ledger reads the rows, asks, and writes the answer. Pure
functions of their arguments: the caller passes `now`; nothing here reads the clock or storage.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

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
    return outcome is not None and outcome is not Outcome.NOTICE and authentic is True


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


@dataclass(frozen=True)
class Decision:
    """What one mail does: which request it joins (None: a new one) and how that changes."""

    request_id: int | None
    state_before: State
    state_after: State
    filed_at: datetime
    due_at: datetime
    extended: bool

    @property
    def opens_request(self) -> bool:
        return self.request_id is None


def decide(
    requests: Sequence[StoredRequest],
    classification: Classification,
    *,
    sent_at: datetime | None,
    now: datetime,
) -> Decision | None:
    """What a classified mail does to the requests of its (platform, account, kind).

    `requests` are that key's requests, newest first. None when the mail touches no request
    (an announcement, a mail that failed authentication, no outcome).
    """
    outcome = classification.outcome
    if outcome is None or not changes_ledger(outcome, classification.authentic):
        return None
    extends = classification.extends_deadline
    current = requests[0] if requests else None
    if current is not None and not opens_new_request(current.state, outcome):
        extended = current.extended or extends
        return Decision(
            request_id=current.id,
            state_before=current.state,
            state_after=next_state(current.state, outcome),
            filed_at=current.filed_at,
            due_at=due_at(current.filed_at, extended=extended),
            extended=extended,
        )
    # Nobody recorded the filing: the first mail stands in for it.
    filed = min(sent_at or now, now)
    return Decision(
        request_id=None,
        state_before=State.FILED,
        state_after=next_state(State.FILED, outcome),
        filed_at=filed,
        due_at=due_at(filed, extended=extends),
        extended=extends,
    )
