"""The facts of a refused or late request, and a draft complaint built from them.

Pure: a request view and `now` in, plain text out. The report shows the draft; the user fills
in the [bracketed] parts and checks every fact before sending it to an authority.
"""

from __future__ import annotations

from datetime import datetime

from optout_mail.model import EventView, Kind, Outcome, RequestView, State, platform_name

DPC_FORM = "https://forms.dataprotection.ie/contact"
EDPB_MEMBERS = "https://www.edpb.europa.eu/about-edpb/about-edpb/members_en"
ICO_FORM = "https://ico.org.uk/make-a-complaint/"
META_ADDRESS = "Meta Platforms Ireland Limited, Merrion Road, Dublin 4, D04 X2K5, Ireland"
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
WHAT_META_DID = {
    Outcome.CODE: "sent a code to confirm my e-mail address",
    Outcome.RECEIVED: "acknowledged the request",
    Outcome.NEEDS_INFO: "asked me for more information",
    Outcome.HONOURED: "said it would honour the request",
    Outcome.REJECTED: "refused the request",
}


def _moment(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def day(value: str | datetime | None) -> str:
    """YYYY-MM-DD, or "" for no date."""
    return "" if value is None else _moment(value).date().isoformat()


def long_day(value: str | datetime) -> str:
    """E.g. "20 May 2025": no locale, no ambiguity between day and month."""
    moment = _moment(value)
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def days_between(start: str | datetime, end: str | datetime) -> int:
    """Whole days from `start` to `end` (negative when `end` comes first)."""
    return (_moment(end) - _moment(start)).days


def days_late(request: RequestView, now: datetime) -> int:
    """How many days past its deadline an overdue request is: at least one."""
    return max(1, days_between(request.due_at, now))


def answer_event(request: RequestView) -> EventView | None:
    """The mail that gave a request its final answer (honoured or refused), if it has one."""
    if request.state not in (State.HONOURED, State.REJECTED):
        return None
    for event in reversed(request.events):
        if event.state_after is request.state and event.state_before is not request.state:
            return event
    return None


def needs_complaint(request: RequestView) -> bool:
    """Refused, or unanswered past the deadline: the cases an authority is there for."""
    return request.state is State.REJECTED or request.overdue


def _what_was_asked(r: RequestView) -> str:
    platform = platform_name(r.platform)
    reference = f" Meta's reference for this request is {r.reference}." if r.reference else ""
    if r.kind is Kind.OBJECTION:
        return (
            f"On {long_day(r.filed_at)} I objected under Article 21 GDPR, with Meta's form, to "
            f"the use of my personal data from my {platform} account ({r.account}) to develop "
            f'and improve generative AI models ("AI at Meta").{reference}'
        )
    return (
        f"On {long_day(r.filed_at)} I used Meta's form for personal information from third "
        "parties that Meta uses to develop and improve generative AI models, and objected "
        f"under Article 21 GDPR to that processing of personal data about me on {platform}. "
        f"The e-mail address I gave in the form is {r.account}.{reference}"
    )


def _word(r: RequestView) -> str:
    return "objection" if r.kind is Kind.OBJECTION else "request"


def _history(r: RequestView) -> list[str]:
    """One line per verified mail from Meta that belongs to the request."""
    return [
        f"   - {long_day(e.received_at)}: Meta {WHAT_META_DID[e.outcome]} "
        f"(e-mail from {e.sender}, subject “{e.subject}”)."
        for e in r.events
        if e.authentic is not False and e.received_at and e.outcome in WHAT_META_DID
    ]


def _grievance(r: RequestView, now: datetime) -> str:
    answer = answer_event(r)
    if r.state is State.REJECTED and answer is not None:
        return (
            f"Meta refused my {_word(r)} (its e-mail of "
            f"{long_day(answer.received_at or r.updated_at)}, subject “{answer.subject}”) "
            "without demonstrating compelling legitimate grounds for the processing which "
            "override my interests, rights and freedoms, as Article 21(1) GDPR requires. It must "
            "therefore no longer process my personal data for this purpose."
        )
    period = (
        "within three months, the extension Meta announced"
        if r.extended
        else "within one month of receipt"
    )
    acknowledged = (
        " Meta acknowledged the request, but has not decided on it."
        if any(e.outcome is Outcome.RECEIVED for e in r.events)
        else ""
    )
    return (
        f"Meta has not answered.{acknowledged} Article 12(3) GDPR requires the controller to "
        "provide information on the action taken on a request under Article 21 without undue "
        f"delay and at the latest {period}. The deadline was {long_day(r.due_at)}; on "
        f"{long_day(now)} Meta is {days_late(r, now)} day(s) late. Nor has Meta told me, as "
        "Article 12(4) GDPR requires, why it has not acted."
    )


def complaint_draft(request: RequestView, now: datetime) -> str:
    """A complaint to a data protection authority about a refused or late request."""
    r = request
    what = "objection refused" if r.state is State.REJECTED else "request not answered"
    history = _history(r) or ["   - No mail from Meta about this request."]
    lines = [
        f"To: Data Protection Commission, Ireland ({DPC_FORM})",
        "    [or the data protection authority of the country where you live or work]",
        f"Subject: Complaint against Meta Platforms Ireland Limited – {what} "
        "(Articles 21 and 12(3) GDPR)",
        "",
        "I, [your full name], of [your postal address], lodge a complaint under Article 77 "
        f"GDPR against {META_ADDRESS}, the controller for {platform_name(r.platform)}.",
        "",
        f"1. {_what_was_asked(r)}",
        "",
        "2. What Meta sent me about this request:",
        *history,
        "",
        f"3. {_grievance(r, now)}",
        "",
        "I ask the Commission to examine my complaint, to order Meta to comply with my "
        f"{_word(r)} (Article 58(2)(c) GDPR), and to inform me of the progress and the outcome "
        "(Article 77(2) GDPR).",
        "",
        "Attached: Meta's e-mails about this request as I received them, with a manifest of "
        "their SHA-256 checksums.",
        "",
        "[date], [your full name]",
    ]
    return "\n".join(lines)
