"""One pass in one direction: source -> parse -> classify -> ledger.record -> notify.

Sources and the notifier come in through the two small protocols below, so the same pass
serves `scan`, `scan --source` and the daemon. One bad mail is logged and counted; the pass
goes on. Popups are asked for only after the ledger has committed.

The original of each new mail is kept here, not in the ledger: the pass already holds the
bytes, the ledger stays a store of decisions (no file I/O inside its transaction), and every
caller -- scan, daemon -- keeps originals beside its ledger without being told to.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from optout_mail.errors import SourceError
from optout_mail.ledger import Ledger, dedupe_key
from optout_mail.mailstore import MailStore
from optout_mail.model import Batch, Change, Cursor, Observation, RawMail, request_label
from optout_mail.parse import parse
from optout_mail.rules import DnsLookup, RuleSet, Trust, classify
from optout_mail.triage import could_match

log = logging.getLogger(__name__)


# The rule set, or a function that loads it: called only when a mail is to be examined, so a
# scan with nothing new never compiles a rule.
Rules = RuleSet | Callable[[], RuleSet]


class Source(Protocol):
    @property
    def name(self) -> str:
        """The ledger's name for this source: an account name, or a local path."""

    @property
    def address(self) -> str | None:
        """The user's address when the source knows it; else each mail's To address."""

    @property
    def problems(self) -> list[str]:
        """What could not be read (files, folders); the pass went on without it."""

    @property
    def trust(self) -> Trust:
        """Whose Authentication-Results count for this source's mail (its provider's)."""

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]: ...


class Notifier(Protocol):
    def notify(self, changes: Sequence[Change], *, first_scan: bool = False) -> None:
        """Pop up what changed; `first_scan`: the folder's history, to be summed up instead."""

    def first_scan_done(self) -> None:
        """Pop up the summary of the history recorded by first scans, if there was any."""


# Told after each batch: (account/folder, mails examined in it so far, how many there are
# when the source knows), so that a terminal can show a progress bar on long scans.
Progress = Callable[[str, int, int | None], None]


@dataclass
class FolderSummary:
    source: str
    folder: str
    examined: int = 0
    matched: int = 0
    recorded: int = 0
    duplicates: int = 0
    filtered: int = 0
    errors: int = 0
    first_scan: bool = False  # no cursor yet: its history is recorded without a popup per mail

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SourceFailure:
    """A source that could not be read, or not completely, and the error that says why."""

    source: str
    error: SourceError

    def as_json(self) -> dict[str, object]:
        return {"source": self.source, "error": self.error.message, "hint": self.error.hint}


@dataclass
class ScanSummary:
    dry_run: bool = False
    folders: list[FolderSummary] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sources: int = 0  # how many sources `run_sources` tried
    failures: list[SourceFailure] = field(default_factory=list)

    def error(self) -> SourceError | None:
        """One error standing for every source that failed; None when all were read."""
        if not self.failures:
            return None
        if len(self.failures) == 1 and self.sources == 1:
            return self.failures[0].error
        return SourceError(
            f"{len(self.failures)} of {self.sources} accounts could not be scanned",
            problems=[
                f.error.message + (f" ({f.error.hint})" if f.error.hint else "")
                for f in self.failures
            ],
        )

    def total(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.folders)

    def folder(self, source: str, folder: str) -> FolderSummary:
        for summary in self.folders:
            if (summary.source, summary.folder) == (source, folder):
                return summary
        summary = FolderSummary(source, folder)
        self.folders.append(summary)
        return summary

    def as_json(self) -> dict[str, object]:
        return {
            "examined": self.total("examined"),
            "matched": self.total("matched"),
            "recorded": self.total("recorded"),
            "duplicates": self.total("duplicates"),
            "errors": self.total("errors"),
            "dry_run": self.dry_run,
            "folders": [f.as_json() for f in self.folders],
            "changes": [
                {
                    "request": c.request.id if c.request else None,
                    "platform": c.request.platform if c.request else None,
                    "account": c.request.account if c.request else None,
                    "state": c.request.state.value if c.request else None,
                    "state_changed": c.state_changed,
                    "outcome": c.event.outcome.value,
                    "authentic": c.event.authentic,
                    "message_id": c.event.message_id,
                    "code": c.event.code,
                }
                for c in self.changes
            ],
            "problems": self.problems,
            "failures": [f.as_json() for f in self.failures],
        }


def run_sources(
    sources: Sequence[Source],
    *,
    rules: Rules,
    ledger: Ledger,
    clock: Callable[[], datetime],
    notifier: Notifier | None = None,
    dry_run: bool = False,
    dkim_dns: DnsLookup | None = None,
    progress: Progress | None = None,
) -> ScanSummary:
    """`run_source` for each source in turn. A source that fails is noted in the summary's
    `failures` (its `problems` in `problems`) and the others are still read. The history that
    first scans found is summed up in one popup at the end."""
    summary = ScanSummary(dry_run=dry_run)
    try:
        for source in sources:
            summary.sources += 1
            try:
                _scan_source(
                    source, rules, ledger, clock, notifier, dry_run, summary, dkim_dns, progress
                )
            except SourceError as exc:
                summary.failures.append(SourceFailure(source.name, exc))
            summary.problems.extend(source.problems)
    finally:
        if notifier is not None:
            notifier.first_scan_done()
    return summary


def run_source(
    source: Source,
    *,
    rules: Rules,
    ledger: Ledger,
    clock: Callable[[], datetime],
    notifier: Notifier | None = None,
    dry_run: bool = False,
    summary: ScanSummary | None = None,
    dkim_dns: DnsLookup | None = None,
) -> ScanSummary:
    """Process every batch the source yields; returns (or extends) the summary. The source's
    `trust` says whose Authentication-Results count; `dkim_dns` lets DKIM be checked locally
    where no trusted header speaks. A folder scanned for the first time (no cursor yet) is
    history: its mails pop up as one summary at the end, except a code still valid."""
    summary = summary or ScanSummary(dry_run=dry_run)
    try:
        _scan_source(source, rules, ledger, clock, notifier, dry_run, summary, dkim_dns, None)
    finally:
        if notifier is not None:
            notifier.first_scan_done()
    return summary


def _scan_source(
    source: Source,
    rules: Rules,
    ledger: Ledger,
    clock: Callable[[], datetime],
    notifier: Notifier | None,
    dry_run: bool,
    summary: ScanSummary,
    dkim_dns: DnsLookup | None,
    progress: Progress | None,
) -> None:
    """The body of `run_source`, without the summary of first scans (the caller's)."""
    unseen: set[str] = set()  # folders without a cursor when the pass asked for theirs

    def cursor_for(folder: str) -> Cursor | None:
        cursor = ledger.cursor(source.name, folder)
        if cursor is None:
            unseen.add(folder)
        return cursor

    for batch in source.batches(cursor_for):
        folder_summary = summary.folder(source.name, batch.folder)
        folder_summary.filtered += batch.filtered
        folder_summary.examined += batch.ruled_out
        # Only a source that keeps cursors (IMAP) has a first scan; a local one has none.
        if batch.cursor is not None and batch.folder in unseen:
            folder_summary.first_scan = True
        observations = [
            obs
            for mail in batch.mails
            if (obs := _observe(mail, source, batch.folder, folder_summary, rules, dkim_dns))
            is not None
        ]
        # The lifecycle is order-sensitive: apply a batch's mails in the order Meta sent them
        # (files and UIDs need not be in that order).
        observations.sort(key=_sent_at)
        if progress is not None:
            progress(f"{source.name}/{batch.folder}", folder_summary.examined, batch.total)
        if dry_run:
            keys = [dedupe_key(o.message, o.classification) for o in observations]
            fresh = set(keys) - ledger.known(keys)
            folder_summary.recorded += len(fresh)
            folder_summary.duplicates += len(observations) - len(fresh)
            continue
        observations = keep_originals(observations, ledger, summary.problems)
        result = ledger.record(observations, now=clock(), cursor=batch.cursor)
        folder_summary.recorded += result.recorded
        folder_summary.duplicates += result.duplicates
        summary.changes.extend(result.changes)
        where = source.name if batch.folder in ("", ".") else f"{source.name}/{batch.folder}"
        for change in result.changes:
            log.info("%s: %s", where, describe_event(change))
        if notifier is not None and result.changes:
            notifier.notify(result.changes, first_scan=folder_summary.first_scan)


def describe_event(change: Change) -> str:
    """One log line for a recorded mail, e.g. "honoured for alice@example.org (Facebook
    objection #3), rule …, received -> honoured". No code, subject or body: logs are kept."""
    event, request = change.event, change.request
    if request is None:
        line = f"{event.outcome} from {event.sender}, rule {event.rule}"
        if event.authentic is False:
            line += ", not authentic: possible phishing, the ledger is unchanged"
        return line
    line = (
        f"{event.outcome} for {request.account} "
        f"({request_label(request.platform, request.kind)} #{request.id}), rule {event.rule}"
    )
    if change.state_changed:
        line += f", {event.state_before or 'new'} -> {event.state_after}"
    if event.authentic is None:
        line += ", authenticity unknown"
    return line


def keep_originals(
    observations: Sequence[Observation], ledger: Ledger, problems: list[str]
) -> list[Observation]:
    """Write the original bytes of the mails the ledger does not know yet to the mail store
    beside it, and name them in their observations (before the ledger commits, so a recorded
    event never names a missing file). A mail that cannot be written is recorded without its
    original -- a full disk must not hold back a one-time code -- and noted in `problems`."""
    store = MailStore.beside(ledger.path)
    if store is None:
        return list(observations)
    known = ledger.known([dedupe_key(o.message, o.classification) for o in observations])
    kept = []
    for obs in observations:
        if obs.message.raw and dedupe_key(obs.message, obs.classification) not in known:
            try:
                obs = replace(obs, raw_sha256=store.put(obs.message.raw))
            except OSError as exc:
                log.warning("could not keep the original of %s: %s", obs.message.message_id, exc)
                problems.append(f"the original of {obs.message.message_id} was not kept: {exc}")
        kept.append(obs)
    return kept


def _sent_at(observation: Observation) -> datetime:
    return observation.message.date or datetime.max.replace(tzinfo=UTC)


def _observe(
    mail: RawMail,
    source: Source,
    folder: str,
    summary: FolderSummary,
    rules: Rules,
    dkim_dns: DnsLookup | None,
) -> Observation | None:
    summary.examined += 1
    if not isinstance(rules, RuleSet):
        rules = rules()
    try:
        if not could_match(mail, rules):
            return None  # no rule can match it: never parsed (see triage)
        message = parse(mail)
        classification = classify(message, rules, source.trust, dkim_dns=dkim_dns)
    except Exception:
        # parse() does not raise by design; this is the last line of defence so that one
        # mail can never stop a scan.
        summary.errors += 1
        log.exception("skipped %s: it could not be processed", mail.origin)
        return None
    if classification.outcome is None:
        return None
    summary.matched += 1
    log.debug(
        "%s: %s (%s, rule %s)",
        mail.origin,
        classification.outcome.value,
        classification.platform,
        classification.rule,
    )
    address = source.address or (message.to[0] if message.to else "unknown")
    return Observation(
        message=message,
        classification=classification,
        source=source.name,
        account_address=address,
        folder=mail.folder or folder,
        uid=mail.uid,
        uidvalidity=mail.uidvalidity,
    )
