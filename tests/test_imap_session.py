"""`IMAPSession.wait_for_news` (IDLE) against the private Dovecot of tests/imapserver.py.

News makes it return True, the refresh False, a stop request within about a second; a kicked
or silently dead connection raises `ConnectionLost`, never a busy loop or an imapclient error.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from tests.conftest import SAMPLES
from tests.imapserver import Dovecot, dovecot_available

from optout_mail.config import Account
from optout_mail.errors import ConnectionLost
from optout_mail.rules import RuleSet
from optout_mail.sources.imap import IMAPSession, IMAPSource

pytestmark = pytest.mark.imap

if not dovecot_available():
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the IMAP tests: install dovecot-imapd (see .ci/run)")
    pytest.skip("needs Debian dovecot-imapd and openssl", allow_module_level=True)

_users = (f"idle{i}" for i in itertools.count())
NEWS_WAIT = 15.0  # seconds; Dovecot pushes EXISTS within a second or two


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with Dovecot() as srv:
        yield srv


@pytest.fixture
def user(server: Dovecot) -> str:
    name = next(_users)
    server.add_user(name, f"pw-{name}")
    return name


@pytest.fixture
def session(server: Dovecot, user: str, rule_set: RuleSet) -> Iterator[IMAPSession]:
    account = Account(
        host=server.host,
        port=server.port,
        security="plain",
        username=user,
        password=f"pw-{user}",
        timeout=2,
    )
    source = IMAPSource("home", account, sender_domains=rule_set.sender_domains())
    with source.session() as opened:
        yield opened
    server.thaw(user)


def later(seconds: float, action: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_news_returns_true_and_the_session_reads_it(
    server: Dovecot, user: str, session: IMAPSession
) -> None:
    assert session.can_idle
    (first,) = session.folder_batches("INBOX", None)
    data = (SAMPLES / "meta/en/honoured-uk.eml").read_bytes()
    slices: list[float] = []
    later(0.5, lambda: server.append(user, "INBOX", data))
    started = time.monotonic()
    news = session.wait_for_news(
        "INBOX", threading.Event(), NEWS_WAIT, on_slice=lambda: slices.append(time.monotonic())
    )
    assert news is True
    assert time.monotonic() - started < NEWS_WAIT
    assert slices, "on_slice is called while waiting"
    (batch,) = session.folder_batches("INBOX", first.cursor)
    assert [m.folder for m in batch.mails] == ["INBOX"]


def test_the_refresh_returns_false(session: IMAPSession) -> None:
    started = time.monotonic()
    assert session.wait_for_news("INBOX", threading.Event(), refresh_s=1.5) is False
    assert 1.5 <= time.monotonic() - started < 5


def test_a_stop_request_returns_within_about_a_second(session: IMAPSession) -> None:
    stop = threading.Event()
    later(0.5, stop.set)
    started = time.monotonic()
    assert session.wait_for_news("INBOX", stop, refresh_s=60) is False
    assert time.monotonic() - started < 3


def test_a_kicked_connection_raises_connection_lost(
    server: Dovecot, user: str, session: IMAPSession
) -> None:
    later(0.5, lambda: server.kick(user))
    started = time.monotonic()
    with pytest.raises(ConnectionLost):
        session.wait_for_news("INBOX", threading.Event(), refresh_s=60)
    assert time.monotonic() - started < 10


def test_a_silent_dead_peer_raises_connection_lost_at_the_refresh(
    server: Dovecot, user: str, session: IMAPSession
) -> None:
    later(0.3, lambda: server.freeze(user))  # the socket stays open, nobody answers
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="while ending IDLE"):
        session.wait_for_news("INBOX", threading.Event(), refresh_s=1.0)
    assert time.monotonic() - started < 10  # the refresh plus the 2 s read timeout


def test_a_stall_is_noticed_at_the_next_check_long_before_the_refresh(
    server: Dovecot, user: str, session: IMAPSession
) -> None:
    later(0.3, lambda: server.freeze(user))
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match=r"did not answer within 2 s .* stalled"):
        session.wait_for_news("INBOX", threading.Event(), refresh_s=600, check_s=1.0)
    noticed = time.monotonic() - started
    print(f"stall -> ConnectionLost: {noticed:.1f} s (check 1 s, timeout 2 s)")
    assert noticed < 6


def test_idle_is_left_and_entered_again_at_each_check_and_news_still_comes(
    server: Dovecot, user: str, session: IMAPSession
) -> None:
    server.clear_commands(user)
    data = (SAMPLES / "meta/en/honoured-uk.eml").read_bytes()
    later(3.5, lambda: server.append(user, "INBOX", data))
    started = time.monotonic()
    assert session.wait_for_news("INBOX", threading.Event(), refresh_s=60, check_s=1.0)
    assert 3.5 <= time.monotonic() - started < NEWS_WAIT
    commands = server.commands(user)
    assert commands.count("IDLE") >= 3, commands
    assert commands.count("DONE") == commands.count("IDLE"), "IDLE is always ended"


def test_quiet_checks_do_not_end_the_wait_before_the_refresh(session: IMAPSession) -> None:
    started = time.monotonic()
    assert session.wait_for_news("INBOX", threading.Event(), refresh_s=3, check_s=1) is False
    assert 3 <= time.monotonic() - started < 6


def test_a_missing_folder_is_a_source_error_not_a_lost_connection(session: IMAPSession) -> None:
    from optout_mail.sources.imap import FolderMissing

    with pytest.raises(FolderMissing, match="Does/Not/Exist"):
        session.wait_for_news("Does/Not/Exist", threading.Event(), refresh_s=1)


def test_a_mail_that_arrives_between_the_scan_and_idle_is_not_missed(
    session: IMAPSession, server: Dovecot, user: str
) -> None:
    list(session.folder_batches("INBOX", None))  # the catch-up scan
    server.append(user, "INBOX", (SAMPLES / "meta/en/received.eml").read_bytes())
    started = time.monotonic()
    assert session.wait_for_news("INBOX", threading.Event(), refresh_s=30) is True
    assert time.monotonic() - started < 2.0, "it must not wait for IDLE to announce it"
