"""`optout-mail run` as a user runs it: a real process, a private Dovecot, a real popup server.

Popups must arrive by push (IDLE) within seconds although the polling interval is 300 s,
survive a kicked connection and a restarted server without losing or repeating anything, and
SIGTERM must end the daemon with status 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import SAMPLES
from tests.daemonrun import PUSH_WAIT, Running, names, why_not
from tests.imapserver import Dovecot
from tests.notification_daemon import NotificationServer

pytestmark = [pytest.mark.imap, pytest.mark.desktop, pytest.mark.slow]

_why_not = why_not()
if _why_not:
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must run the daemon tests: {_why_not} (see .ci/run)")
    pytest.skip(_why_not, allow_module_level=True)


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with Dovecot() as srv:
        yield srv


@pytest.fixture
def popups() -> Iterator[NotificationServer]:
    with NotificationServer() as notification_server:
        yield notification_server


@pytest.fixture
def daemon(server: Dovecot, popups: NotificationServer, tmp_path: Path) -> Iterator[Running]:
    running = Running(server, popups, tmp_path)
    yield running
    if running.proc is not None and running.proc.poll() is None:
        running.proc.kill()
        running.proc.wait()


def test_a_reply_pops_up_within_seconds_and_is_in_the_ledger(
    daemon: Running, popups: NotificationServer
) -> None:
    daemon.start()
    started = time.monotonic()
    daemon.append("meta/en/honoured-uk.eml")
    (popup,) = popups.received(min_count=1, timeout=PUSH_WAIT)
    latency = time.monotonic() - started
    print(f"append -> popup: {latency:.2f} s")
    assert popup.summary.startswith("Facebook honoured your objection")
    assert popup.app_name == "optout-mail"
    assert popup.urgency == 1
    (request,) = daemon.requests()
    assert request["state"] == "honoured"
    assert daemon.stop() == 0


def test_a_code_shows_in_the_popup_and_refusals_are_critical(
    daemon: Running, popups: NotificationServer
) -> None:
    daemon.start()
    daemon.append_fresh("meta/en/code.eml")
    (code,) = popups.received(min_count=1, timeout=PUSH_WAIT)
    assert "483920" in code.summary
    daemon.append("meta/en/tp-rejected.eml", folder="Junk")  # Meta's mail landed in spam
    received = popups.received(min_count=2, timeout=PUSH_WAIT)
    assert received[1].summary.startswith("Meta refused your")
    assert received[1].urgency == 2
    assert "Data Protection Commission" in received[1].body
    assert daemon.stop() == 0


def test_kicked_connection_and_restarted_server_lose_nothing(
    daemon: Running, popups: NotificationServer, server: Dovecot
) -> None:
    daemon.start()
    server.kick(daemon.user)
    daemon.append("meta/en/received.eml")
    popups.received(min_count=1, timeout=PUSH_WAIT)

    server.stop()
    daemon.wait_for_log("reconnecting in")
    server.start()
    daemon.append("meta/en/honoured-us.eml")  # Instagram: the same account, another request
    received = popups.received(min_count=2, timeout=PUSH_WAIT + 30)
    assert received[1].summary.startswith("Instagram honoured your objection")
    time.sleep(2)
    assert len(popups.received()) == 2, "no popup is shown twice"
    # Nothing was lost while the connection was down: both mails moved their request.
    states = {(r["account"], r["platform"]): r["state"] for r in daemon.requests()}
    assert states == {
        ("bob@example.net", "instagram"): "received",
        ("carla@example.com", "instagram"): "honoured",
    }
    assert daemon.stop() == 0


def test_popups_are_not_repeated_after_a_restart(
    daemon: Running, popups: NotificationServer
) -> None:
    daemon.start()
    daemon.append("meta/en/honoured-uk.eml")
    popups.received(min_count=1, timeout=PUSH_WAIT)
    assert daemon.stop() == 0
    daemon.start()
    daemon.append("meta/en/tp-needs-info.eml")
    received = popups.received(min_count=2, timeout=PUSH_WAIT)
    assert received[1].summary.startswith("Meta wants more evidence")
    time.sleep(1)
    assert len(popups.received()) == 2
    assert daemon.stop() == 0


def test_sigterm_during_idle_exits_0_within_5_seconds(daemon: Running) -> None:
    daemon.start()
    time.sleep(1)  # well inside IDLE
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    status = daemon.proc.wait(timeout=10)
    assert status == 0
    assert time.monotonic() - started < 5


def test_a_second_run_is_refused_while_scan_and_requests_work(
    daemon: Running, popups: NotificationServer
) -> None:
    daemon.start()
    second = subprocess.run(
        [sys.executable, "-m", "optout_mail", "--config", str(daemon.config), "run"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1
    assert "already running" in second.stderr
    scan = subprocess.run(
        [
            sys.executable,
            "-m",
            "optout_mail",
            "--config",
            str(daemon.config),
            "scan",
            "--json",
            "--no-notify",
        ],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scan.returncode == 0, scan.stderr
    assert daemon.requests() == []
    assert daemon.stop() == 0


def test_a_bad_config_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("poll_interval = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "optout_mail", "--config", str(config), "run"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 78
    assert "poll_interval: Input should be greater than or equal to 30" in done.stderr


def test_reconciliation_scan_and_daily_deadline_check(server: Dovecot, tmp_path: Path) -> None:
    """The two scheduled jobs, driven directly: the safety-net scan records what IDLE did not
    see, and an overdue request pops up once, however often the daily check runs."""
    import threading
    from datetime import UTC, datetime

    from optout_mail.config import load_config
    from optout_mail.daemon import Context, check_deadlines, reconcile
    from optout_mail.ledger import Ledger
    from optout_mail.rules import load_rule_set

    user = next(names)
    server.add_user(user, "pw")
    config = tmp_path / "config.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[accounts.home]\nhost = "127.0.0.1"\n'
        f'port = {server.port}\nsecurity = "plain"\nusername = "{user}"\npassword = "pw"\n'
    )
    settings, rules = load_config(config), load_rule_set()
    shown: list[str] = []
    now = [datetime(2025, 5, 21, tzinfo=UTC)]

    def send(popup: object) -> bool:
        shown.append(str(getattr(popup, "title", "")))
        return True

    context = Context(
        settings=settings,
        rules=rules,
        clock=lambda: now[0],
        send_popup=send,
        stop=threading.Event(),
    )
    reconcile(context)  # the first scan: an empty mailbox, no history to sum up
    server.append(user, "Junk", (SAMPLES / "meta/en/received.eml").read_bytes())
    reconcile(context)
    assert shown == ["Meta received your Instagram objection (bob@example.net)"]

    now[0] = datetime(2025, 8, 1, tzinfo=UTC)  # Meta never answered
    check_deadlines(context)
    check_deadlines(context)
    assert shown[1:] == ["Meta is late: Instagram objection (bob@example.net)"]
    with Ledger(settings.ledger_path) as ledger:
        assert ledger.requests(now=now[0])[0].overdue


def test_systemd_readiness_watchdog_and_stopping(daemon: Running, tmp_path: Path) -> None:
    """The sd_notify protocol as systemd speaks it: a datagram socket named in NOTIFY_SOCKET."""
    import socket

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(PUSH_WAIT)
        daemon.env |= {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
        daemon.start()
        messages: list[str] = []
        while not any("WATCHDOG=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert messages[0].startswith("READY=1\nSTATUS=watching 2 folder(s)")
        assert daemon.stop() == 0
        while not any("STOPPING=1" in m for m in messages):
            messages.append(sock.recv(4096).decode())


def test_sighup_reloads_and_keeps_running_on_a_broken_config(
    daemon: Running, popups: NotificationServer
) -> None:
    daemon.start()
    good = daemon.config.read_text()
    daemon.config.write_text(good + "bogus_key = 1\n")
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_log("reload failed, keeping the running configuration")
    daemon.config.write_text(good)
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_for_log("connected, catching up", count=4)  # the watchers started anew
    daemon.append("meta/en/honoured-uk.eml")
    popups.received(min_count=1, timeout=PUSH_WAIT)
    assert daemon.stop() == 0
