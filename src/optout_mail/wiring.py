"""Builds what a pass needs from the settings: the mail sources, the ledger, the popup notifier.

The one place where configuration and rules turn into objects, for `scan` and `run` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from optout_mail.config import Account, Settings
from optout_mail.errors import ConfigError, UsageError
from optout_mail.ledger import Ledger
from optout_mail.model import Popup, RawMail
from optout_mail.notify import PopupNotifier
from optout_mail.pipeline import Rules, Source
from optout_mail.rules import RuleSet, Trust
from optout_mail.sources.imap import IMAPSource
from optout_mail.sources.local import LocalSource
from optout_mail.triage import could_match

SendPopup = Callable[[Popup], bool]


def imap_source(name: str, account: Account, rules: Rules, *, parallel: bool = False) -> IMAPSource:
    """Account `name`, searching the server for the senders the rule packs know, and
    downloading whole only the mails a rule could match. Given a function that loads the
    rules, they are loaded only when a SEARCH is sent."""

    def loaded() -> RuleSet:
        return rules if isinstance(rules, RuleSet) else rules()

    def terms() -> tuple[str, ...]:
        rule_set = loaded()
        return (*rule_set.sender_domains(), *rule_set.lookalike_words())

    def triage(mail: RawMail) -> bool:
        return could_match(mail, loaded())

    return IMAPSource(
        name, account, sender_domains=(), search_terms=terms, triage=triage, parallel=parallel
    )


def account_sources(
    settings: Settings, rules: Rules, *, parallel: bool = False
) -> list[IMAPSource]:
    """Every configured account, by name; `parallel`: a large first scan may use a second
    core (only for a process without other threads, see IMAPSource.parallel)."""
    return [
        imap_source(name, account, rules, parallel=parallel)
        for name, account in sorted(settings.accounts.items())
    ]


def scan_sources(
    settings: Settings,
    rules: Rules,
    source_path: Path | None,
    names: Sequence[str] = (),
    *,
    trust_ids: Sequence[str] = (),
) -> list[Source]:
    """What `scan` reads: the local mail at `source_path` (trusting `trust_ids`), or the
    accounts (only `names`, if given). Raises ConfigError without accounts, UsageError for an
    unknown name."""
    if source_path is not None:
        return [LocalSource(source_path, trust=Trust(tuple(trust_ids)))]
    if not settings.accounts:
        raise ConfigError(
            "no accounts are configured",
            hint="add an [accounts.NAME] table to the config (see the README), or scan local "
            "mail with --source PATH",
        )
    unknown = [n for n in names if n not in settings.accounts]
    if unknown:
        raise UsageError(
            f"no account named {unknown[0]!r}",
            hint=f"configured accounts: {', '.join(sorted(settings.accounts))}",
        )
    sources = account_sources(settings, rules, parallel=True)  # `scan` runs no other thread
    return [s for s in sources if not names or s.name in names]


def popup_notifier(
    settings: Settings,
    ledger: Ledger,
    *,
    clock: Callable[[], datetime],
    send: SendPopup | None = None,
) -> PopupNotifier | None:
    """The notifier writing to `ledger`; None when notifications are off in the settings."""
    if not settings.notifications.enabled:
        return None
    return PopupNotifier(
        ledger, show_codes=settings.notifications.show_codes, clock=clock, send=send
    )


@contextmanager
def open_ledger(
    settings: Settings,
    *,
    clock: Callable[[], datetime],
    notify: bool = True,
    send: SendPopup | None = None,
) -> Iterator[tuple[Ledger, PopupNotifier | None]]:
    """The ledger (one connection, for the calling thread) and, when `notify` and the
    settings allow, the notifier writing to it, which first tries again what it could not show."""
    with Ledger(settings.ledger_path) as ledger:
        notifier = popup_notifier(settings, ledger, clock=clock, send=send) if notify else None
        if notifier is not None:
            notifier.retry_undelivered()
        yield ledger, notifier
