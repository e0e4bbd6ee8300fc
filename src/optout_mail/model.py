"""Frozen value types that flow between the stages, and the vocabularies other tools rely on.

RawMail (bytes + where it came from) -> Message (parsed) -> Classification (what it means) ->
Observation (to record) -> Change (what recording did, as the ledger's EventView/RequestView).
Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal


class Outcome(StrEnum):
    """What a mail from Meta says about a request."""

    CODE = "code"  # a one-time code to confirm the e-mail address
    RECEIVED = "received"  # an acknowledgement: Meta has the request
    HONOURED = "honoured"  # Meta will honour the objection
    REJECTED = "rejected"  # Meta refuses or will take no further action
    NEEDS_INFO = "needs_info"  # Meta asks for more information or evidence
    NOTICE = "notice"  # an announcement about AI training, not an answer
    # Meta wrote about the request, but no rule can read the answer with confidence (or two
    # answers compete): recorded and shown to the user, it moves no state.
    UNCLEAR = "unclear"


# The outcomes that answer a request: what a forged mail must never put in the ledger or a popup.
ANSWER_OUTCOMES = frozenset(
    {Outcome.CODE, Outcome.RECEIVED, Outcome.HONOURED, Outcome.REJECTED, Outcome.NEEDS_INFO}
)


class Kind(StrEnum):
    """Which of Meta's forms a request went through."""

    OBJECTION = "objection"  # the AI-training objection (GDPR Art. 21)
    THIRD_PARTY = "third_party"  # the third-party-information request form


class State(StrEnum):
    """Where a request stands. `overdue` is not a state: it is derived from `due_at`."""

    FILED = "filed"
    VERIFYING = "verifying"
    RECEIVED = "received"
    HONOURED = "honoured"
    REJECTED = "rejected"
    NEEDS_INFO = "needs_info"


KNOWN_PLATFORMS = ("facebook", "instagram", "whatsapp", "threads", "messenger")
PLATFORM_NAMES = {
    "facebook": "Facebook",
    "instagram": "Instagram",
    "whatsapp": "WhatsApp",
    "threads": "Threads",
    "messenger": "Messenger",
}
KIND_NAMES = {"objection": "objection", "third_party": "third-party-information request"}


def platform_name(platform: str) -> str:
    return PLATFORM_NAMES.get(platform, platform.title())


def request_label(platform: str, kind: str) -> str:
    """E.g. "Instagram objection", "Facebook third-party-information request"."""
    return f"{platform_name(platform)} {KIND_NAMES.get(kind, kind)}"


KINDS = tuple(k.value for k in Kind)

# What a refused or late request leaves the user: said by the popups and the report alike.
COMPLAINT_HINT = (
    "You can complain to Meta's lead authority, the Irish Data Protection Commission "
    "(dataprotection.ie), or to the authority of your own country."
)


@dataclass(frozen=True)
class RawMail:
    """One mail as bytes, and where it was found (for evidence and for cursors)."""

    data: bytes
    origin: str  # a file path, or "account/folder/uid"
    folder: str | None = None
    uid: int | None = None
    uidvalidity: int | None = None


@dataclass(frozen=True)
class TraceHeader:
    """One trace header of a mail, top to bottom: a Received hop (`value` = its `by` host,
    lower-case, "" when it names none) or an Authentication-Results header (its raw value)."""

    kind: Literal["received", "auth"]
    value: str


@dataclass(frozen=True)
class Message:
    """A parsed mail: what the rules and the ledger need, nothing more."""

    message_id: str
    from_address: str  # lower-case, "" when the From header is unusable
    from_name: str
    to: tuple[str, ...]
    subject: str
    date: datetime | None  # timezone-aware UTC
    text: str  # plain text, or text made from the HTML part
    html: str = ""  # the raw HTML part when there is a plain part too (read only when needed)
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    trace: tuple[TraceHeader, ...] = ()  # Received hops and Authentication-Results, in order
    from_headers: tuple[str, ...] = ()  # every From header's raw value, undecoded
    defects: tuple[str, ...] = ()
    raw: bytes = field(default=b"", repr=False, compare=False)  # for local DKIM checks

    @property
    def from_domain(self) -> str:
        return self.from_address.rpartition("@")[2]


@dataclass(frozen=True)
class Classification:
    """What a mail means: the contract of `classify --json` (see DESIGN.md)."""

    outcome: Outcome | None
    platform: str | None = None
    kind: Kind | None = None
    authentic: bool | None = None
    code: str | None = None
    reference: str | None = None
    rule: str | None = None
    language: str | None = None
    extends_deadline: bool = False
    lookalike: bool = False  # the sender only looks like Meta
    notes: tuple[str, ...] = field(default=())

    @property
    def matched(self) -> bool:
        return self.outcome is not None

    def as_json(self) -> dict[str, object]:
        return {
            "outcome": self.outcome.value if self.outcome else None,
            "platform": self.platform,
            "kind": self.kind.value if self.kind else None,
            "authentic": self.authentic,
            "code": self.code,
            "reference": self.reference,
            "rule": self.rule,
            "language": self.language,
        }


NO_MATCH = Classification(outcome=None)


@dataclass(frozen=True)
class Cursor:
    """How far a folder has been read: UIDs at or below `last_uid` are done."""

    source: str
    folder: str
    uidvalidity: int
    last_uid: int
    uidnext: int | None = None


@dataclass(frozen=True)
class Batch:
    """Mails of one folder to process together, and the cursor to save with them."""

    folder: str
    mails: Sequence[RawMail]
    cursor: Cursor | None = None
    filtered: int = 0  # new mails the server-side search ruled out (never downloaded)
    total: int | None = None  # how many mails this folder's pass brings, when known up front
    ruled_out: int = 0  # mails examined by their text parts alone: no rule can match them


@dataclass(frozen=True)
class Observation:
    """A classified mail, ready to be recorded, with where it was found."""

    message: Message
    classification: Classification
    source: str
    account_address: str  # the user's address the request is about
    folder: str | None = None
    uid: int | None = None
    uidvalidity: int | None = None
    raw_sha256: str | None = None  # the original bytes, kept in the mail store under this name


@dataclass(frozen=True)
class EventView:
    """A recorded mail as the ledger keeps it: evidence, and what it did to its request."""

    id: int
    request_id: int | None
    message_id: str
    outcome: Outcome
    authentic: bool | None
    rule: str
    language: str | None
    code: str | None
    reference: str | None
    sender: str
    subject: str
    received_at: str | None  # ISO 8601, UTC: when Meta sent it
    recorded_at: str
    source: str
    folder: str | None
    uid: int | None
    state_before: State | None
    state_after: State | None
    note: str | None = None  # why the mail moved nothing, when it did not
    raw_sha256: str | None = None  # the kept original (None: recorded before mails were kept)

    @property
    def moved(self) -> bool:
        return self.state_before != self.state_after

    def as_json(self) -> dict[str, object]:
        return {
            "message_id": self.message_id,
            "outcome": self.outcome.value,
            "authentic": self.authentic,
            "rule": self.rule,
            "received_at": self.received_at,
            "folder": self.folder,
            "source": self.source,
            "uid": self.uid,
            "sender": self.sender,
            "subject": self.subject,
            "code": self.code,
            "reference": self.reference,
            "state_before": self.state_before.value if self.state_before else None,
            "state_after": self.state_after.value if self.state_after else None,
            "note": self.note,
            "raw_sha256": self.raw_sha256,
        }


@dataclass(frozen=True)
class UserEventView:
    """A correction the user made by hand (`requests note`, `requests set-state`): the user's
    own event in a request's timeline, beside the mails."""

    id: int
    request_id: int
    action: str  # "note" or "set-state"
    text: str
    recorded_at: str  # ISO 8601, UTC
    state_before: State | None = None
    state_after: State | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "action": self.action,
            "text": self.text,
            "recorded_at": self.recorded_at,
            "state_before": self.state_before.value if self.state_before else None,
            "state_after": self.state_after.value if self.state_after else None,
        }


@dataclass(frozen=True)
class RequestView:
    """A request as the ledger keeps it, with its events in the order Meta sent them."""

    id: int
    platform: str
    account: str
    kind: Kind
    state: State
    filed_at: str  # ISO 8601, UTC
    due_at: str
    extended: bool
    created_by: str  # "user" or "mail"
    updated_at: str
    overdue: bool
    events: tuple[EventView, ...] = ()
    reference: str | None = None  # Meta's case or reference number, once a mail named it
    user_events: tuple[UserEventView, ...] = ()  # the user's notes and corrections, oldest first

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "platform": self.platform,
            "account": self.account,
            "kind": self.kind.value,
            "state": self.state.value,
            "overdue": self.overdue,
            "filed_at": self.filed_at,
            "due_at": self.due_at,
            "extended": self.extended,
            "created_by": self.created_by,
            "updated_at": self.updated_at,
            "reference": self.reference,
            "events": [e.as_json() for e in self.events],
            "user_events": [e.as_json() for e in self.user_events],
        }


@dataclass(frozen=True)
class Change:
    """Something a recorded mail did that the user should hear about."""

    event: EventView
    request: RequestView | None  # None for a mail that changed nothing (e.g. not authentic)
    state_changed: bool


Urgency = Literal["low", "normal", "critical"]


@dataclass(frozen=True)
class Popup:
    """One desktop pop-up. ``body`` is plain text; markup characters are escaped on the way out
    (by `desktop`, which alone talks to D-Bus: this type costs no import of it)."""

    title: str
    body: str
    urgency: Urgency = "normal"
    category: str = "email.arrived"
