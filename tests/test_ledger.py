"""The SQLite ledger on real files: recording, idempotence, cursors, crashes, migrations."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from optout_mail.errors import LedgerError, UsageError
from optout_mail.ledger import MIGRATIONS, Ledger
from optout_mail.model import Classification, Cursor, Kind, Observation, Outcome, RawMail
from optout_mail.parse import parse

NOW = datetime(2025, 5, 21, 8, 0, tzinfo=UTC)


def observation(
    data: bytes,
    outcome: Outcome,
    *,
    authentic: bool | None = True,
    code: str | None = None,
    platform: str = "facebook",
    kind: Kind = Kind.OBJECTION,
    extends: bool = False,
    reference: str | None = None,
) -> Observation:
    message = parse(RawMail(data=data, origin="t"))
    classification = Classification(
        outcome=outcome,
        platform=platform,
        kind=kind,
        authentic=authentic,
        code=code,
        reference=reference,
        rule=f"t.{outcome.value}",
        language="en",
        extends_deadline=extends,
    )
    return Observation(
        message=message,
        classification=classification,
        source="home",
        account_address=message.to[0],
        folder="INBOX",
        uid=1,
        uidvalidity=7,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "data" / "ledger.sqlite3") as opened:
        yield opened


def test_a_reply_for_an_unknown_request_creates_it(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    result = ledger.record([observation(mail(), Outcome.HONOURED)], now=NOW)
    assert result.recorded == 1
    (change,) = result.changes
    assert change.state_changed
    assert (change.event.state_before, change.event.state_after) == ("filed", "honoured")
    (request,) = ledger.requests(now=NOW)
    assert (request.platform, request.account, request.kind, request.state) == (
        "facebook",
        "alice@example.org",
        "objection",
        "honoured",
    )
    assert request.filed_at.startswith("2025-05-20")  # the mail's date stands in
    assert request.due_at.startswith("2025-06-20")
    assert [e.outcome for e in request.events] == ["honoured"]


def test_lifecycle_through_code_received_honoured(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    ledger.add_request(
        platform="instagram",
        account="alice@example.org",
        kind=Kind.OBJECTION,
        filed_at=datetime(2025, 5, 1, tzinfo=UTC),
        now=NOW,
    )
    sender = "Instagram <no-reply@mail.instagram.com>"
    for outcome in (Outcome.CODE, Outcome.RECEIVED, Outcome.HONOURED):
        ledger.record(
            [
                observation(
                    mail(sender=sender),
                    outcome,
                    platform="instagram",
                    code="123456" if outcome is Outcome.CODE else None,
                )
            ],
            now=NOW,
        )
    (request,) = ledger.requests(now=NOW)
    assert request.state == "honoured"
    assert request.created_by == "user"
    assert request.filed_at.startswith("2025-05-01")
    assert [(e.state_before, e.state_after) for e in request.events] == [
        ("filed", "verifying"),
        ("verifying", "received"),
        ("received", "honoured"),
    ]
    assert request.events[0].code == "123456"


def test_the_same_mail_is_recorded_once(ledger: Ledger, mail: Callable[..., bytes]) -> None:
    data = mail(message_id="<same@www.facebook.com>")
    first = ledger.record([observation(data, Outcome.RECEIVED)], now=NOW)
    again = ledger.record(
        [observation(data, Outcome.RECEIVED), observation(data, Outcome.RECEIVED)], now=NOW
    )
    assert (first.recorded, again.recorded, again.duplicates) == (1, 0, 2)
    assert ledger.counts() == {"requests": 1, "events": 1}


def test_unauthentic_mail_is_kept_but_changes_nothing(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    real_id = "<real@www.facebook.com>"
    forged = ledger.record(
        [observation(mail(message_id=real_id), Outcome.REJECTED, authentic=False)], now=NOW
    )
    assert forged.changes[0].request is None
    assert ledger.requests(now=NOW) == []
    assert [e.authentic for e in ledger.unattached_events()] == [False]
    # The forged copy must not block the genuine mail with the same Message-ID.
    real = ledger.record([observation(mail(message_id=real_id), Outcome.HONOURED)], now=NOW)
    assert real.recorded == 1
    assert ledger.requests(now=NOW)[0].state == "honoured"


def test_notice_is_recorded_without_a_request(ledger: Ledger, mail: Callable[..., bytes]) -> None:
    ledger.record([observation(mail(), Outcome.NOTICE)], now=NOW)
    assert ledger.requests(now=NOW) == []
    assert [e.outcome for e in ledger.unattached_events()] == ["notice"]


def test_extension_moves_the_deadline_by_two_months(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    ledger.record([observation(mail(), Outcome.RECEIVED, extends=True)], now=NOW)
    (request,) = ledger.requests(now=NOW)
    assert request.extended and request.due_at.startswith("2025-08-20")


def test_overdue_is_derived_from_the_clock(ledger: Ledger, mail: Callable[..., bytes]) -> None:
    ledger.record([observation(mail(), Outcome.RECEIVED)], now=NOW)
    assert not ledger.requests(now=NOW)[0].overdue
    assert ledger.requests(now=datetime(2025, 6, 21, tzinfo=UTC))[0].overdue


def test_a_new_objection_after_a_final_answer_is_a_new_request(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    ledger.record([observation(mail(date=MAY(10)), Outcome.HONOURED)], now=NOW)
    ledger.record([observation(mail(date=MAY(20)), Outcome.CODE, code="999999")], now=NOW)
    states = [r.state for r in ledger.requests(now=NOW)]
    assert states == ["honoured", "verifying"]


def MAY(day: int) -> datetime:
    return datetime(2025, 5, day, 9, 30, tzinfo=UTC)


def test_a_mail_older_than_the_filing_never_changes_the_request(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    filed = ledger.add_request(
        platform="facebook",
        account="alice@example.org",
        kind=Kind.OBJECTION,
        filed_at=MAY(20),
        now=NOW,
    )
    # A refusal from the 2024 wave, found in the mailbox today.
    old = observation(mail(date=datetime(2024, 6, 3, tzinfo=UTC)), Outcome.REJECTED)
    ledger.record([old], now=NOW)
    requests = {r.id: r for r in ledger.requests(now=NOW)}
    assert requests[filed.id].state == "filed", "today's request is untouched"
    (past,) = [r for r in requests.values() if r.id != filed.id]
    assert past.state == "rejected" and past.filed_at.startswith("2024-06-03")


def test_reference_numbers_keep_requests_apart(ledger: Ledger, mail: Callable[..., bytes]) -> None:
    kind = Kind.THIRD_PARTY
    first = observation(mail(date=MAY(2)), Outcome.RECEIVED, kind=kind, reference="11112222")
    second = observation(mail(date=MAY(3)), Outcome.RECEIVED, kind=kind, reference="33334444")
    answer = observation(mail(date=MAY(9)), Outcome.REJECTED, kind=kind, reference="11112222")
    ledger.record([first, second], now=NOW)
    ledger.record([answer], now=NOW)
    by_reference = {r.reference: r for r in ledger.requests(now=NOW)}
    assert set(by_reference) == {"11112222", "33334444"}
    assert by_reference["11112222"].state == "rejected"
    assert by_reference["33334444"].state == "received"


def test_state_moves_only_forward_in_the_mails_own_time(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    ledger.record([observation(mail(date=MAY(20)), Outcome.REJECTED)], now=NOW)
    # An older "honoured" (a replayed or late-found mail) does not undo the newer refusal ...
    ledger.record([observation(mail(date=MAY(12)), Outcome.HONOURED)], now=NOW)
    (request,) = ledger.requests(now=NOW)
    assert request.state == "rejected"
    stale = next(e for e in request.events if e.outcome == "honoured")
    assert not stale.moved and stale.note and "older than" in stale.note
    # ... and an old code does not reopen it either.
    ledger.record([observation(mail(date=MAY(1)), Outcome.CODE, code="123456")], now=NOW)
    assert [r.state for r in ledger.requests(now=NOW)] == ["rejected"]
    # A newer honoured mail (Meta reversed its refusal) does move it.
    ledger.record([observation(mail(date=MAY(21)), Outcome.HONOURED)], now=NOW)
    assert [r.state for r in ledger.requests(now=NOW)] == ["honoured"]


def test_a_second_wave_opens_a_new_request_and_the_list_agrees_with_the_last_mail(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    ledger.record(
        [observation(mail(date=datetime(2024, 6, 5, tzinfo=UTC)), Outcome.HONOURED)], now=NOW
    )
    ledger.record(
        [
            observation(mail(date=MAY(20)), Outcome.CODE, code="222333"),
            observation(mail(date=MAY(21)), Outcome.HONOURED),
        ],
        now=NOW,
    )
    old, new = ledger.requests(now=NOW)
    assert (old.state, new.state) == ("honoured", "honoured")
    assert [e.outcome for e in new.events] == ["code", "honoured"]
    for request in (old, new):
        last = request.events[-1]
        assert last.state_after == request.state or last.note


def test_an_unclear_mail_joins_its_request_and_moves_nothing(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    ledger.record([observation(mail(date=MAY(2)), Outcome.RECEIVED)], now=NOW)
    ledger.record([observation(mail(date=MAY(9)), Outcome.UNCLEAR)], now=NOW)
    (request,) = ledger.requests(now=NOW)
    assert request.state == "received"
    assert request.events[-1].outcome == "unclear" and not request.events[-1].moved


def test_cursor_is_saved_with_the_events_or_not_at_all(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    cursor = Cursor("home", "INBOX", uidvalidity=7, last_uid=42, uidnext=43)
    ledger.record([observation(mail(), Outcome.RECEIVED)], now=NOW, cursor=cursor)
    assert ledger.cursor("home", "INBOX") == cursor

    broken = Observation(
        message=parse(RawMail(data=mail(), origin="t")),
        classification=Classification(
            outcome=Outcome.RECEIVED,
            platform="facebook",
            kind=Kind.OBJECTION,
            authentic=True,  # only an authentic mail touches a request (and its account)
            rule="x",
            language="en",
        ),
        source="home",
        account_address=None,  # type: ignore[arg-type]  # NOT NULL violated
    )
    with pytest.raises(LedgerError):
        ledger.record(
            [observation(mail(), Outcome.HONOURED), broken],
            now=NOW,
            cursor=Cursor("home", "INBOX", 7, 99, 100),
        )
    # Nothing of the failed transaction is left: neither the first event nor the cursor.
    assert ledger.cursor("home", "INBOX") == cursor
    assert ledger.counts()["events"] == 1


def test_forget_and_show(ledger: Ledger, mail: Callable[..., bytes]) -> None:
    ledger.record([observation(mail(), Outcome.RECEIVED)], now=NOW)
    (request,) = ledger.requests(now=NOW)
    ledger.forget(request.id)
    assert ledger.counts() == {"requests": 0, "events": 0}
    with pytest.raises(UsageError):
        ledger.request(request.id, now=NOW)


def test_schema_version_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    Ledger(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    Ledger(path).close()  # migrating twice is a no-op


def test_a_ledger_from_the_future_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(LedgerError, match="newer optout-mail"):
        Ledger(path)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LedgerError, match="cannot open the ledger"):
        Ledger(path)


@pytest.mark.slow
def test_sigkill_mid_scan_leaves_the_ledger_consistent(
    tmp_path: Path, mail: Callable[..., bytes]
) -> None:
    """Kill a real `scan` while it writes; the next scan completes the job exactly once."""
    mails = tmp_path / "mails"
    mails.mkdir()
    total = 1500
    for i in range(total):
        (mails / f"{i:05}.eml").write_bytes(
            mail(to=f"user{i}@example.org", message_id=f"<m{i}@www.facebook.com>")
        )
    env = {**os.environ, "OPTOUT_MAIL_DATA_DIR": str(tmp_path / "data")}
    db_path = tmp_path / "data" / "ledger.sqlite3"
    argv = [sys.executable, "-m", "optout_mail", "scan", "--source", str(mails), "--json"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if db_path.exists():
            try:
                with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1) as db:
                    seen = db.execute("SELECT count(*) FROM events").fetchone()[0]
            except sqlite3.OperationalError:
                seen = 0
        if seen:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < seen < total, "the scan was not caught in the middle"

    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        events, requests = db.execute(
            "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM requests)"
        ).fetchone()
        assert events == requests  # each request was written with the event that created it
        assert events % 200 == 0  # only whole batches: a transaction is all or nothing
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    assert '"recorded": ' + str(total - events) in done.stdout
    with sqlite3.connect(db_path) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == total
        assert db.execute("SELECT count(DISTINCT message_id) FROM events").fetchone()[0] == total


def test_ids_are_never_reused_after_forget(ledger: Ledger, mail: Callable[..., bytes]) -> None:
    """Popups are remembered by event id: a reused id would silence a new answer."""
    first = ledger.record([observation(mail(), Outcome.RECEIVED)], now=NOW).changes[0]
    assert first.request is not None
    ledger.mark_popup(f"event:{first.event.id}", delivered=True, now=NOW)
    ledger.forget(first.request.id)
    second = ledger.record([observation(mail(), Outcome.HONOURED)], now=NOW).changes[0]
    assert second.event.id != first.event.id
    assert second.request is not None and second.request.id != first.request.id
    assert not ledger.popup_shown(f"event:{second.event.id}")


def test_the_user_can_accept_an_unverified_mail_but_not_a_forged_one(
    ledger: Ledger, mail: Callable[..., bytes]
) -> None:
    unverified = observation(mail(date=MAY(9)), Outcome.HONOURED, authentic=None)
    forged = observation(mail(date=MAY(9)), Outcome.HONOURED, authentic=False)
    ledger.record([unverified, forged], now=NOW)
    assert ledger.requests(now=NOW) == [], "fail closed: nothing moved"
    pending, phishing = ledger.unattached_events()
    change = ledger.confirm(pending.id, now=NOW)
    assert change.request is not None and change.request.state == "honoured"
    (event,) = change.request.events
    assert event.note and "accepted by the user" in event.note
    with pytest.raises(UsageError, match="already part of request"):
        ledger.confirm(pending.id, now=NOW)
    with pytest.raises(UsageError, match="failed the authenticity check"):
        ledger.confirm(phishing.id, now=NOW)
