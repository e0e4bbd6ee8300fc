"""A calm first run: the first scan of a folder records its history with ONE summary popup
instead of a popup per old mail; a code that is still valid pops up all the same, an expired
one never does; what was summed up never pops up later. With a recording sender (fast), and
once against a real notification server on a private D-Bus."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from optout_mail.desktop import DesktopNotifier, Popup
from optout_mail.ledger import Ledger
from optout_mail.model import Batch, Cursor, RawMail
from optout_mail.notify import PopupNotifier
from optout_mail.pipeline import run_source, run_sources
from optout_mail.rules import RuleSet, Trust

from .conftest import SAMPLES
from .test_desktop import nd

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
HISTORY = [
    "meta/en/code.eml",  # alice, June 2024: a code long expired, then honoured
    "meta/en/honoured-uk.eml",
    "meta/en/received.eml",  # bob: acknowledged, never answered (overdue)
    "meta/en/tp-rejected.eml",  # erik: refused
]


def fresh_code(sent: datetime) -> bytes:
    """The Instagram code sample, sent at `sent`."""
    data = (SAMPLES / "meta/en/code-instagram.eml").read_bytes()
    return re.sub(rb"(?m)^Date: .*$", f"Date: {format_datetime(sent)}".encode(), data, count=1)


@dataclass
class Account:
    """An IMAP-like source: folders of mails by UID, read after the cursor, cursors saved."""

    folders: dict[str, list[bytes]]
    name: str = "home"
    address: str | None = None
    problems: list[str] = field(default_factory=list)
    trust: Trust = field(default_factory=Trust)

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
        for folder, mails in self.folders.items():
            cursor = cursor_for(folder)
            done = cursor.last_uid if cursor else 0
            new = [
                RawMail(data, f"{self.name}/{folder}/{uid}", folder, uid, 1)
                for uid, data in enumerate(mails, start=1)
                if uid > done
            ]
            last = Cursor(self.name, folder, 1, len(mails), len(mails) + 1)
            yield Batch(folder=folder, mails=new, cursor=last, total=len(new))


class Recorder:
    def __init__(self) -> None:
        self.popups: list[Popup] = []

    def __call__(self, popup: Popup) -> bool:
        self.popups.append(popup)
        return True


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger(":memory:") as opened:
        yield opened


def history() -> list[bytes]:
    return [(SAMPLES / name).read_bytes() for name in HISTORY]


def scan(
    account: Account,
    ledger: Ledger,
    rule_set: RuleSet,
    send: Callable[[Popup], bool],
    now: datetime = NOW,
) -> None:
    notifier = PopupNotifier(ledger, show_codes=True, clock=lambda: now, send=send)
    run_sources([account], rules=rule_set, ledger=ledger, clock=lambda: now, notifier=notifier)


def test_first_scan_pops_up_one_summary_and_never_the_history(
    ledger: Ledger, rule_set: RuleSet
) -> None:
    recorder = Recorder()
    account = Account({"INBOX": history(), "Junk": []})
    scan(account, ledger, rule_set, recorder)

    (summary,) = recorder.popups
    assert summary.title == "optout-mail found 3 requests in your mailbox"
    assert summary.body == "1 honoured, 1 rejected, 1 waiting, 1 overdue — optout-mail status"
    # Every mail of the history counts as shown, and so does the overdue request.
    events = [e for r in ledger.requests(now=NOW) for e in r.events]
    assert len(events) == 4
    undelivered = ledger.popups.undelivered()
    assert undelivered == []
    overdue = [r for r in ledger.requests(now=NOW) if r.overdue]
    notifier = PopupNotifier(ledger, show_codes=True, clock=lambda: NOW, send=recorder)
    assert notifier.remind_overdue(overdue) == 0
    assert notifier.retry_undelivered() == 0
    assert len(recorder.popups) == 1

    # The next mail is news: a popup of its own, no summary.
    account.folders["INBOX"].append((SAMPLES / "meta/en/rejected.eml").read_bytes())
    scan(account, ledger, rule_set, recorder)
    assert len(recorder.popups) == 2
    assert "refused" in recorder.popups[1].title or "reject" in recorder.popups[1].title.lower()


def test_a_fresh_code_pops_up_on_a_first_scan_an_expired_one_never(
    ledger: Ledger, rule_set: RuleSet
) -> None:
    recorder = Recorder()
    mails = [*history(), fresh_code(NOW - timedelta(minutes=10))]
    scan(Account({"INBOX": mails}), ledger, rule_set, recorder)

    titles = [p.title for p in recorder.popups]
    assert len(titles) == 2, titles
    assert "code" in recorder.popups[0].body.lower() or "code" in titles[0].lower()
    assert titles[1] == "optout-mail found 3 requests in your mailbox"
    codes = [p for p in recorder.popups if "code" in p.title.lower()]
    assert len(codes) == 1  # the June 2024 code never pops up


def test_a_folder_seen_for_the_first_time_later_is_a_first_scan_too(
    ledger: Ledger, rule_set: RuleSet
) -> None:
    recorder = Recorder()
    scan(Account({"INBOX": []}), ledger, rule_set, recorder)
    assert recorder.popups == []
    scan(Account({"INBOX": [], "Archive": history()}), ledger, rule_set, recorder)
    assert [p.title for p in recorder.popups] == ["optout-mail found 3 requests in your mailbox"]


def test_run_source_sums_up_its_own_first_scan(ledger: Ledger, rule_set: RuleSet) -> None:
    """The daemon's watchers call `run_source` for one folder: the summary comes with it."""
    recorder = Recorder()
    notifier = PopupNotifier(ledger, show_codes=True, clock=lambda: NOW, send=recorder)
    summary = run_source(
        Account({"INBOX": history()}),
        rules=rule_set,
        ledger=ledger,
        clock=lambda: NOW,
        notifier=notifier,
    )
    assert [f.first_scan for f in summary.folders] == [True]
    assert len(recorder.popups) == 1


_MISSING = nd.missing_tools()


@pytest.mark.desktop
@pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))
def test_first_scan_summary_reaches_a_real_notification_server(
    tmp_path: Path, rule_set: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    with nd.NotificationServer() as server:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", server.address)
        mails = [*history(), fresh_code(NOW - timedelta(minutes=5))]
        with Ledger(tmp_path / "ledger.sqlite3") as ledger:
            scan(Account({"INBOX": mails}), ledger, rule_set, DesktopNotifier().send)
        received = server.received(min_count=2, timeout=10)
        assert len(received) == 2
        assert "code" in (received[0].summary + received[0].body).lower()
        assert received[1].summary == "optout-mail found 3 requests in your mailbox"
        assert received[1].app_name == "optout-mail"
