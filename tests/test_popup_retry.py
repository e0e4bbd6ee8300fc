"""A popup counts as shown only once a desktop took it; until then each pass tries again,
for a day (a code only while it is valid), and once delivered it never comes back."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest

from optout_mail.desktop import Popup
from optout_mail.ledger import Ledger
from optout_mail.model import Change
from optout_mail.notify import PopupNotifier

from .conftest import Result, make_mail
from .test_ledger import observation

CLI = Callable[..., Result]
SENT = datetime(2025, 5, 20, 9, 30, tzinfo=UTC)  # make_mail's Date


class FlakyDesktop:
    """A sender that fails while `up` is False and records what it delivered."""

    def __init__(self) -> None:
        self.up = False
        self.tries = 0
        self.delivered: list[str] = []

    def __call__(self, popup: Popup) -> bool:
        self.tries += 1
        if self.up:
            self.delivered.append(popup.title)
        return self.up


def notifier(ledger: Ledger, desktop: FlakyDesktop, now: datetime) -> PopupNotifier:
    return PopupNotifier(ledger, show_codes=True, clock=lambda: now, send=desktop)


def record(ledger: Ledger, data: bytes, outcome: str, **kw: object) -> list[Change]:
    from optout_mail.model import Outcome

    return ledger.record([observation(data, Outcome(outcome), **kw)], now=SENT).changes  # type: ignore[arg-type]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "data" / "ledger.sqlite3") as opened:
        yield opened


def test_undelivered_is_retried_until_delivered_then_never_again(ledger: Ledger) -> None:
    desktop = FlakyDesktop()
    changes = record(ledger, make_mail(), "honoured")
    notifier(ledger, desktop, SENT).notify(changes)
    key = f"event:{changes[0].event.id}"
    assert desktop.tries == 1 and not ledger.popup_shown(key)
    assert ledger.popups.undelivered() == [(key, SENT)]

    later = SENT + timedelta(hours=2)
    assert notifier(ledger, desktop, later).retry_undelivered() == 0  # still no desktop
    assert ledger.popups.undelivered() == [(key, SENT)]  # the first try is kept
    desktop.up = True
    assert notifier(ledger, desktop, later).retry_undelivered() == 1
    assert desktop.delivered == ["Facebook honoured your objection (alice@example.org)"]
    assert ledger.popup_shown(key) and ledger.popups.undelivered() == []
    for _ in range(2):  # the next passes, and the same change notified again
        notifier(ledger, desktop, later).retry_undelivered()
        notifier(ledger, desktop, later).notify(changes)
    assert len(desktop.delivered) == 1


def test_retries_stop_after_a_day_and_at_the_first_failure(ledger: Ledger) -> None:
    desktop = FlakyDesktop()
    first = record(ledger, make_mail(), "honoured")
    second = record(ledger, make_mail(to="bob@example.org"), "received")
    notifier(ledger, desktop, SENT).notify(first + second)
    desktop.tries = 0
    notifier(ledger, desktop, SENT + timedelta(hours=1)).retry_undelivered()
    assert desktop.tries == 1  # the desktop is still away: the second waits for the next pass
    desktop.up = True
    assert notifier(ledger, desktop, SENT + timedelta(days=1, minutes=1)).retry_undelivered() == 0
    assert desktop.delivered == []


def test_an_expired_code_is_never_retried(ledger: Ledger) -> None:
    desktop = FlakyDesktop()
    changes = record(ledger, make_mail(), "code", code="482913")
    notifier(ledger, desktop, SENT).notify(changes)
    desktop.up = True
    assert notifier(ledger, desktop, SENT + timedelta(minutes=61)).retry_undelivered() == 0
    assert notifier(ledger, desktop, SENT + timedelta(minutes=30)).retry_undelivered() == 1
    assert desktop.delivered == ["Your Meta code: 482913"]


def test_an_overdue_reminder_is_retried_while_overdue(ledger: Ledger) -> None:
    from optout_mail.model import Kind

    filed = datetime(2025, 1, 1, tzinfo=UTC)
    request = ledger.add_request(
        platform="facebook", account="a@example.org", kind=Kind.OBJECTION, filed_at=filed, now=filed
    )
    now = datetime(2025, 3, 1, tzinfo=UTC)
    desktop = FlakyDesktop()
    assert notifier(ledger, desktop, now).remind_overdue(ledger.requests(now=now)) == 0
    desktop.up = True
    assert notifier(ledger, desktop, now + timedelta(hours=1)).retry_undelivered() == 1
    assert ledger.popup_shown(f"overdue:{request.id}")
    assert notifier(ledger, desktop, now).remind_overdue(ledger.requests(now=now)) == 0


# -- with a real notification server on a private D-Bus --------------------------------------


def _helper() -> ModuleType:
    name = "optout_mail_tests_notification_daemon"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name("notification_daemon.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.desktop
def test_scan_retries_a_popup_once_the_desktop_is_there(
    cli: CLI, tmp_path: Path, eml_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nd = _helper()
    if (missing := nd.missing_tools()) is not None:
        pytest.skip(missing)
    monkeypatch.setenv("OPTOUT_MAIL_DATA_DIR", str(tmp_path / "data"))
    (eml_dir / "a.eml").write_bytes(make_mail())
    with nd.NotificationServer() as server:
        with nd.PrivateBus() as bare:  # a session without a notification server
            monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bare.address)
            first = cli("scan", "--source", str(eml_dir), "--notify", "--json")
            assert json.loads(first.out)["recorded"] == 1
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", server.address)
        for _ in range(2):  # nothing new to record: the pass retries what was not shown
            again = cli("scan", "--source", str(eml_dir), "--notify", "--json")
            assert json.loads(again.out)["recorded"] == 0
        (shown,) = server.received(min_count=1)
        assert shown.summary == "Facebook honoured your objection (alice@example.org)"
