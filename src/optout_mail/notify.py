"""What to pop up, in words a person understands, and making sure each popup is shown once.

`popup_for` turns a recorded change into a `Popup` (pure); `PopupNotifier` sends it after the
ledger commit and remembers in the ledger what a desktop took, so a restart never repeats one;
one no desktop took is tried again on the next pass, for a day (a code only while it is valid).
Sending is best-effort: the ledger is the truth, a missing desktop is logged, never raised.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from optout_mail.errors import UnknownRequest
from optout_mail.ledger import Ledger
from optout_mail.ledger_popups import mail_key
from optout_mail.lifecycle import WAITING_FOR_META, code_expired
from optout_mail.model import (
    ANSWER_OUTCOMES,
    COMPLAINT_HINT,
    Change,
    EventView,
    Outcome,
    Popup,
    RequestView,
    platform_name,
    request_label,
)

log = logging.getLogger(__name__)

RETRY_FOR = timedelta(days=1)  # an undelivered popup is tried again for a day after its first try


_CODE_IN_TITLE = re.compile(r"\d{3,8}(?:[ -]\d{3,4})?")


def popup_for(change: Change, *, show_codes: bool, now: datetime | None = None) -> Popup | None:
    """The popup for a change, or None when it is not worth interrupting anybody for.

    `now` lets an expired one-time code pass silently: it is evidence, not news.
    """
    event = change.event
    if event.authentic is False:
        return Popup(
            title=f"Possible phishing: a mail pretending to be Meta ({event.sender})",
            body=f"“{event.subject}” did not pass the authenticity check. Do not click its "
            "links or enter a password. Your ledger is unchanged.",
            urgency="critical",
        )
    if event.authentic is None and event.outcome in ANSWER_OUTCOMES | {Outcome.UNCLEAR}:
        return Popup(
            title=f"Unverified mail claiming to be from Meta ({event.sender})",
            body=f"“{event.subject}” could not be verified, so your ledger is unchanged. If "
            f"you trust it, accept it with: optout-mail requests confirm {event.id}",
        )
    request = change.request
    if event.outcome is Outcome.UNCLEAR:
        about = request_label(request.platform, request.kind) if request else "request"
        return Popup(
            title=f"Meta wrote about your {about} — read it",
            body=f"optout-mail could not tell what “{event.subject}” from {event.sender} "
            "means. Please read it yourself.",
        )
    if request is None:
        return None
    what = request_label(request.platform, request.kind)
    who = request.account
    suffix = f"Request #{request.id} ({what} for {who})."
    if event.outcome is Outcome.CODE:
        sent = datetime.fromisoformat(event.received_at) if event.received_at else None
        if now is not None and code_expired(sent, now):
            return None  # typed in an hour ago or never: it is in the ledger as evidence
        if not show_codes or not event.code:
            return Popup(
                title=f"Meta sent a one-time code for your {what}",
                body=f"Open the mail from {event.sender} to read it. {suffix}",
            )
        return Popup(
            title=f"Your Meta code: {event.code}",
            body=f"Enter it in Meta's form to confirm your {what} ({who}).",
            urgency="critical",  # the code expires within the hour: it must not wait
        )
    if not change.state_changed:
        return None
    if event.outcome is Outcome.HONOURED:
        return Popup(
            title=f"{platform_name(request.platform)} honoured your objection ({who})",
            body=f"Meta says it will not use your information for AI training. {suffix}",
        )
    if event.outcome is Outcome.REJECTED:
        return Popup(
            title=f"Meta refused your {what} ({who})",
            body=f"{COMPLAINT_HINT} {suffix}",
            urgency="critical",
        )
    if event.outcome is Outcome.NEEDS_INFO:
        return Popup(
            title=f"Meta wants more evidence for your {what}",
            body=f"Answer Meta's mail from {event.sender} with what it asks for. {suffix}",
            urgency="critical",
        )
    if event.outcome is Outcome.RECEIVED:
        return Popup(
            title=f"Meta received your {what} ({who})",
            body=f"It must answer by {request.due_at[:10]}. {suffix}",
        )
    return None


def overdue_popup(request: RequestView) -> Popup:
    what = request_label(request.platform, request.kind)
    return Popup(
        title=f"Meta is late: {what} ({request.account})",
        body=f"The answer was due on {request.due_at[:10]}. {COMPLAINT_HINT} "
        f"Request #{request.id}.",
        urgency="critical",
    )


def first_scan_popup(requests: Sequence[RequestView], events: Sequence[EventView]) -> Popup | None:
    """The one popup after a first scan: the requests it found, by state, e.g. "optout-mail
    found 3 requests in your mailbox" / "1 honoured, 1 rejected, 1 waiting — optout-mail
    status"; plus the mails that only pretend to be Meta's or could not be verified."""
    states = Counter(
        "waiting" if r.state in WAITING_FOR_META else r.state.value.replace("_", " ")
        for r in requests
    )
    order = ("honoured", "rejected", "needs info", "waiting")
    parts = [f"{states[name]} {name}" for name in order if states[name]]
    overdue = sum(r.overdue for r in requests)
    if overdue:
        parts.append(f"{overdue} overdue")
    phishing = sum(e.authentic is False for e in events)
    unverified = sum(e.authentic is None and e.outcome in ANSWER_OUTCOMES for e in events)
    if not requests and not phishing and not unverified:
        return None
    noun = "request" if len(requests) == 1 else "requests"
    title = f"optout-mail found {len(requests) or 'no'} {noun} in your mailbox"
    body = ", ".join(parts)
    if phishing:
        body += f"{'; ' if body else ''}{phishing} mail(s) only pretending to be Meta's"
    if unverified:
        body += f"{'; ' if body else ''}{unverified} mail(s) that could not be verified"
    return Popup(title=title, body=f"{body} — optout-mail status")


class PopupNotifier:
    """Shows a popup per recorded change, once, and notes in the ledger that it did."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        show_codes: bool,
        clock: Callable[[], datetime],
        send: Callable[[Popup], bool] | None = None,
    ) -> None:
        self._ledger = ledger
        self._show_codes = show_codes
        self._clock = clock
        if send is None:
            from optout_mail.desktop import DesktopNotifier

            send = DesktopNotifier().send
        self._send = send
        self._history: list[Change] = []  # recorded by first scans, not yet summed up

    def notify(self, changes: Sequence[Change], *, first_scan: bool = False) -> None:
        """A popup per change worth one. On a folder's first scan the changes are its history:
        they are noted as shown without a popup, to be summed up by `first_scan_done`; only a
        one-time code that is still valid pops up on its own (an expired one never does)."""
        now = self._clock()
        for change in changes:
            popup = popup_for(change, show_codes=self._show_codes, now=now)
            key = f"event:{change.event.id}"
            event = change.event
            mail = mail_key(event.message_id, event.sender, event.outcome.value)
            if popup is not None and self._ledger.popups.mail_shown(mail):
                self._mark_shown(key)  # shown before the ledger was restored from a backup
                continue
            if first_scan:
                self._history.append(change)
                if popup is not None and change.event.outcome is not Outcome.CODE:
                    self._mark_shown(key, mail)
                    continue
            if popup is not None:
                self._show(key, popup, mail)

    def first_scan_done(self) -> None:
        """One popup summing up the history the first scans since the last call recorded (the
        requests found, by state); overdue ones among them count as reported."""
        changes, self._history = self._history, []
        if not changes:
            return
        now = self._clock()
        ids = dict.fromkeys(c.request.id for c in changes if c.request is not None)
        found = []
        for request_id in ids:
            try:
                found.append(self._ledger.request(request_id, now=now))
            except UnknownRequest:
                continue
        for request in found:
            if request.overdue:
                self._mark_shown(f"overdue:{request.id}")
        popup = first_scan_popup(found, [c.event for c in changes])
        if popup is not None:
            self._show(f"first-scan:{changes[0].event.id}", popup)

    def _mark_shown(self, key: str, mail: str | None = None) -> None:
        """Note popup `key` as shown without showing it, so that it never comes later."""
        with self._ledger.popups.claim():
            if not self._ledger.popups.delivered(key):
                self._ledger.popups.mark(key, delivered=True, now=self._clock())
            if mail is not None:
                self._ledger.popups.remember_mail(mail)

    def remind_overdue(self, requests: Sequence[RequestView]) -> int:
        """Pop up each overdue request once; returns how many a desktop took."""
        shown = 0
        for request in requests:
            if request.overdue and self._show(f"overdue:{request.id}", overdue_popup(request)):
                shown += 1
        return shown

    def retry_undelivered(self) -> int:
        """Try again, oldest first, the popups no desktop took: for RETRY_FOR after the first
        try, a code only while valid. Stops at the first failure; returns how many got through."""
        now = self._clock()
        shown = 0
        for key, _ in self._ledger.popups.undelivered(since=now - RETRY_FOR):
            popup = self._rebuild(key, now)
            if popup is None:
                continue
            if not self._show(key, popup, self._mail_of(key)):
                break  # no desktop now: the rest waits for the next pass
            shown += 1
        return shown

    def _mail_of(self, key: str) -> str | None:
        kind, _, number = key.partition(":")
        event = self._ledger.event(int(number)) if kind == "event" and number.isdigit() else None
        return None if event is None else mail_key(event.message_id, event.sender, event.outcome)

    def _rebuild(self, key: str, now: datetime) -> Popup | None:
        """The popup `key` stands for, as the ledger has it now; None if it no longer applies."""
        kind, _, number = key.partition(":")
        if not number.isdigit():
            return None
        if kind == "overdue":
            try:
                request = self._ledger.request(int(number), now=now)
            except UnknownRequest:
                return None
            return overdue_popup(request) if request.overdue else None
        event = self._ledger.event(int(number)) if kind == "event" else None
        if event is None:
            return None
        if event.outcome is Outcome.CODE and (
            event.received_at is None
            or code_expired(datetime.fromisoformat(event.received_at), now)
        ):
            return None  # an expired code is never popped up
        owner = event.request_id
        change = Change(
            event=event,
            request=None if owner is None else self._ledger.request(owner, now=now),
            state_changed=event.state_before != event.state_after,
        )
        return popup_for(change, show_codes=self._show_codes, now=self._clock())

    def _show(self, key: str, popup: Popup, mail: str | None = None) -> bool:
        """Send `popup` unless a desktop took it already; True when one takes it now. A popup
        no desktop took is noted undelivered, to be tried again (`retry_undelivered`)."""
        with self._ledger.popups.claim():
            attempt = self._ledger.popups.attempt(key)
            if attempt is not None:
                first_try, delivered = attempt
                if delivered or self._clock() - first_try > RETRY_FOR:
                    return False
            delivered = self._send(popup)
            self._ledger.popups.mark(key, delivered=delivered, now=self._clock())
            if delivered and mail is not None:
                self._ledger.popups.remember_mail(mail)
        # The journal keeps what it is told: a one-time code never goes there.
        title = _CODE_IN_TITLE.sub("******", popup.title)
        log.info("popup %s: %s (%s)", key, title, "shown" if delivered else "not delivered")
        return delivered
