"""Faults a daemon lives through, injected into a real `optout-mail run` and a real Dovecot.

Ten kicks in a row cost seconds, not minutes (the back-off starts afresh after a session that
worked); a stalled server (its imap process stopped) is noticed within a minute and the mail
that came meanwhile is recorded; a stopped server is retried with growing delays and a
restarted one is back at once. The log says when the next attempt is, with timestamps.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from tests.daemonrun import PUSH_WAIT, Running, why_not
from tests.imapserver import Dovecot
from tests.notification_daemon import NotificationServer

pytestmark = [pytest.mark.imap, pytest.mark.desktop, pytest.mark.slow]

_why_not = why_not()
if _why_not:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the daemon tests: {_why_not} (see .ci/run)")
    pytest.skip(_why_not, allow_module_level=True)

READY = "up to date, waiting for new mail"  # a watcher's session caught up and idles
RECORDED = "home/INBOX: received for bob@example.net (Instagram objection #1)"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
STALL_NOTICED = 60.0  # the promise: a stalled server is noticed within a minute
RECONNECT = re.compile(
    r"^(?P<logged>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?P<level>[A-Z]+) optout_mail\.watcher: "
    r"home/(?:INBOX|Junk): .+; reconnecting in (?P<delay>\d+) s \(at (?P<at>\d\d:\d\d:\d\d)\)$"
)


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with Dovecot() as srv:
        yield srv


@pytest.fixture
def daemon(server: Dovecot, tmp_path: Path) -> Iterator[Running]:
    with NotificationServer() as popups:
        running = Running(server, popups, tmp_path)
        yield running
        if running.proc is not None and running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
    server.thaw()
    server.start()  # a test that stopped the server leaves it running for the next


def reconnects(daemon: Running) -> list[re.Match[str]]:
    """Every reconnect line; each must say how long and until when, on a timestamped line."""
    lines = daemon.lines("reconnecting in")
    matches = [RECONNECT.match(line) for line in lines]
    assert all(matches), lines
    for match in matches:
        assert match is not None
        logged = datetime.strptime(match["logged"], "%Y-%m-%d %H:%M:%S")
        at = logged + timedelta(seconds=int(match["delay"]))
        said = datetime.strptime(match["at"], "%H:%M:%S").time()
        assert abs(datetime.combine(at.date(), said) - at) <= timedelta(seconds=2), match[0]
    return [m for m in matches if m is not None]


def test_ten_kicks_in_a_row_then_a_mail_is_recorded_within_10_s(
    daemon: Running, server: Dovecot
) -> None:
    daemon.start()
    daemon.wait_for_log(READY, count=2)
    for kick in range(1, 11):
        server.kick(daemon.user)
        if kick < 10:
            daemon.wait_for_log(READY, count=2 * (kick + 1))
    started = time.monotonic()
    daemon.append("meta/en/received.eml")
    daemon.wait_for_log(RECORDED, timeout=10)
    latency = time.monotonic() - started
    print(f"10th kick -> mail recorded: {latency:.1f} s")
    delays = [int(m["delay"]) for m in reconnects(daemon)]
    assert len(delays) == 20  # ten kicks, two watchers (INBOX and Junk)
    assert max(delays) <= 2, "each kick ended a session that worked: no growing back-off"
    assert daemon.stop() == 0


def test_a_stalled_server_is_noticed_within_a_minute_and_nothing_is_lost(
    daemon: Running, server: Dovecot
) -> None:
    daemon.start()
    daemon.wait_for_log(READY, count=2)
    server.freeze(daemon.user)  # SIGSTOP: the TCP connection stays open, nobody answers
    started = time.monotonic()
    daemon.append("meta/en/received.eml")  # a new helper session: another, live process
    daemon.wait_for_log("the connection is stalled", count=2, timeout=STALL_NOTICED)
    noticed = time.monotonic() - started
    print(f"stall -> noticed (both watchers): {noticed:.1f} s")
    assert noticed < STALL_NOTICED
    server.thaw(daemon.user)
    daemon.wait_for_log(RECORDED, timeout=PUSH_WAIT)
    (request,) = daemon.requests()
    assert request["state"] == "received"
    assert all(m["level"] == "INFO" for m in reconnects(daemon))
    assert daemon.stop() == 0


def test_a_stopped_server_is_retried_with_growing_delays_and_back_at_once(
    daemon: Running, server: Dovecot
) -> None:
    daemon.start()
    daemon.wait_for_log(READY, count=2)
    server.stop()
    daemon.wait_for_log("refused the connection", count=4, timeout=30)  # 2 attempts x 2 folders
    server.start()
    started = time.monotonic()
    daemon.append("meta/en/received.eml")
    daemon.wait_for_log(RECORDED, timeout=PUSH_WAIT)
    print(f"server back -> mail recorded: {time.monotonic() - started:.1f} s")
    daemon.wait_for_log(READY, count=4)
    inbox = [m for m in reconnects(daemon) if "home/INBOX" in m[0]]
    assert inbox[0]["level"] == "INFO" and int(inbox[0]["delay"]) <= 2  # the drop: at once
    refused = [int(m["delay"]) for m in inbox[1:]]
    assert all(m["level"] == "WARNING" for m in inbox[1:])
    assert refused == sorted(refused) and refused[-1] >= 4, "an outage backs off"
    server.kick(daemon.user)  # the session after the outage worked: back to seconds
    daemon.wait_for_log(READY, count=6)
    assert int(reconnects(daemon)[-1]["delay"]) <= 2
    assert daemon.stop() == 0


def test_under_journald_the_daemon_logs_no_timestamps(daemon: Running) -> None:
    with daemon.log.open("ab") as log:
        stat = os.fstat(log.fileno())
    daemon.env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"  # the same file: stderr
    daemon.start()
    daemon.wait_for_log(READY, count=2)
    assert daemon.stop() == 0
    lines = daemon.lines()
    assert lines and not any(TIMESTAMP.match(line) for line in lines), lines
    records = [line for line in lines if re.search(r"[A-Z]+ optout_mail\.", line)]
    assert all(re.match(r"<[3-7]>[A-Z]+ optout_mail\.", line) for line in records), records
    assert "<6>INFO optout_mail.daemon: optout-mail is running: watching 2 folder(s)" in lines
