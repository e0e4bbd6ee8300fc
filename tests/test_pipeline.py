"""One pass over a local Maildir with an in-memory ledger and a recording popup sender: fast,
no server, no desktop. What it proves: one popup per change, none for duplicates, none in a
dry run, and the summary counts every mail."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from optout_mail.desktop import Popup
from optout_mail.ledger import Ledger
from optout_mail.model import State
from optout_mail.notify import PopupNotifier
from optout_mail.pipeline import run_source
from optout_mail.rules import RuleSet
from optout_mail.sources.local import LocalSource

from .conftest import SAMPLES

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MAILS = [
    "meta/en/code.eml",  # alice's Facebook objection: a code, then honoured
    "meta/en/honoured-uk.eml",
    "meta/en/received.eml",  # bob's Instagram objection: acknowledged
    "meta/en/tp-rejected.eml",  # erik's third-party request, refused
    "traps/login-code-facebook.eml",  # Meta's, but not about a request
]


@pytest.fixture
def maildir(tmp_path: Path) -> Path:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for name in MAILS:
        box.add((SAMPLES / name).read_bytes())
    junk = box.add_folder("Junk")
    junk.add((SAMPLES / "traps/phishing-lookalike.eml").read_bytes())
    return tmp_path / "Maildir"


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger(":memory:") as opened:
        yield opened


class Recorder:
    def __init__(self) -> None:
        self.popups: list[Popup] = []

    def __call__(self, popup: Popup) -> bool:
        self.popups.append(popup)
        return True


def scan(maildir: Path, ledger: Ledger, rule_set: RuleSet, recorder: Recorder, **kw: bool):  # type: ignore[no-untyped-def]
    notifier = PopupNotifier(ledger, show_codes=True, clock=lambda: NOW, send=recorder)
    return run_source(
        LocalSource(maildir),
        rules=rule_set,
        ledger=ledger,
        clock=lambda: NOW,
        notifier=notifier,
        **kw,
    )


def test_one_pass_records_and_pops_up_each_change_once(
    maildir: Path, ledger: Ledger, rule_set: RuleSet
) -> None:
    recorder = Recorder()
    summary = scan(maildir, ledger, rule_set, recorder)

    assert summary.total("examined") == len(MAILS) + 1
    assert summary.total("errors") == 0
    assert {f.folder for f in summary.folders} == {"INBOX", "Junk"}
    states = {(r.account, r.platform, r.kind.value): r.state for r in ledger.requests(now=NOW)}
    assert states == {
        ("alice@example.org", "facebook", "objection"): State.HONOURED,
        ("bob@example.net", "instagram", "objection"): State.RECEIVED,
        ("erik@example.net", "facebook", "third_party"): State.REJECTED,
    }
    titles = [p.title for p in recorder.popups]
    assert len(titles) == len(set(titles)), "a popup was shown twice"
    assert not any("483920" in t for t in titles)  # a code from 2024 is evidence, not news
    assert any(t.startswith("Possible phishing") for t in titles)
    assert any("refused" in t for t in titles)

    # The same mails again: nothing new is recorded, nothing pops up.
    again = Recorder()
    second = scan(maildir, ledger, rule_set, again)
    assert second.total("recorded") == 0
    assert second.total("duplicates") == summary.total("recorded")
    assert again.popups == []


def test_a_dry_run_writes_nothing_and_pops_up_nothing(
    maildir: Path, ledger: Ledger, rule_set: RuleSet
) -> None:
    recorder = Recorder()
    summary = scan(maildir, ledger, rule_set, recorder, dry_run=True)
    assert summary.total("recorded") > 0  # what it would record
    assert ledger.counts() == {"requests": 0, "events": 0}
    assert recorder.popups == []


def test_a_broken_mail_is_counted_and_the_pass_goes_on(
    maildir: Path, ledger: Ledger, rule_set: RuleSet
) -> None:
    box = mailbox.Maildir(maildir, create=False)
    box.add(b"\x00\xff not a mail at all \r\n\r\n" * 3)
    summary = scan(maildir, ledger, rule_set, Recorder())
    assert summary.total("examined") == len(MAILS) + 2
    assert len(ledger.requests(now=NOW)) == 3


def test_a_ledger_restored_from_a_backup_never_shows_a_popup_twice(
    maildir: Path, tmp_path: Path, rule_set: RuleSet
) -> None:
    path = tmp_path / "data" / "ledger.sqlite3"
    recorder = Recorder()
    with Ledger(path) as ledger:
        scan(maildir, ledger, rule_set, recorder)
    shown = len(recorder.popups)
    assert shown > 0
    # The restored backup predates these mails: they are recorded again, and must stay quiet.
    for leftover in path.parent.glob("ledger.sqlite3*"):
        leftover.unlink()
    again = Recorder()
    with Ledger(path) as ledger:
        summary = scan(maildir, ledger, rule_set, again)
    assert summary.total("recorded") > 0
    assert again.popups == []
