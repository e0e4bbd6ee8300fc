"""`optout-mail run` with an OAuth2 account: IDLE push, and access tokens that expire under it.

A private Dovecot checks tokens at a loopback introspection endpoint (tests/oauth2server.py);
the account's token_command asks that endpoint for the current token, as `oama access` would.
The daemon harness is the one of tests/test_daemon.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.imapserver import Dovecot
from tests.notification_daemon import NotificationServer
from tests.oauth2server import TokenEndpoint
from tests.test_daemon import PUSH_WAIT, Running

pytestmark = [pytest.mark.imap, pytest.mark.desktop, pytest.mark.slow]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as token_endpoint:
        yield token_endpoint


@pytest.fixture(scope="module")
def server(endpoint: TokenEndpoint) -> Iterator[Dovecot]:
    with Dovecot(oauth2_url=endpoint.introspection_url) as srv:
        yield srv


@pytest.fixture
def popups() -> Iterator[NotificationServer]:
    with NotificationServer() as notification_server:
        yield notification_server


def oauth2_daemon(
    server: Dovecot,
    popups: NotificationServer,
    tmp_path: Path,
    token_command: Callable[[str], list[str]],
) -> Running:
    """The harness's daemon, its account switched to XOAUTH2 with `token_command(user)`."""
    running = Running(server, popups, tmp_path)
    config = running.config.read_text().replace(f'password = "pw-{running.user}"\n', "")
    command = json.dumps(token_command(running.user))
    running.config.write_text(config + f'auth = "xoauth2"\ntoken_command = {command}\n')
    return running


def wait_until_idling(daemon: Running, connects: int) -> None:
    """Wait for `connects` connections in all, then a moment for their catch-up scans to end
    and IDLE to begin: a mail that arrives between the two is left to the next full scan."""
    daemon.wait_for_log("connected, catching up", count=connects)
    time.sleep(1.5)


@pytest.fixture
def cleanup() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for running in started:
        if running.proc is not None and running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()


def test_idle_push_and_an_expired_token_under_a_running_daemon(
    server: Dovecot,
    endpoint: TokenEndpoint,
    popups: NotificationServer,
    tmp_path: Path,
    cleanup: list[Running],
) -> None:
    daemon = oauth2_daemon(server, popups, tmp_path, endpoint.helper_argv)
    cleanup.append(daemon)
    first = endpoint.issue(daemon.user)
    daemon.start()
    wait_until_idling(daemon, connects=2)
    daemon.append("meta/en/received.eml")
    popups.received(min_count=1, timeout=PUSH_WAIT)

    # The provider revokes the token; the helper still hands it out once from its cache.
    # The server ends the sessions; the daemon reconnects, the stale token is refused, a fresh
    # one is asked for at once, and IDLE resumes (no 30-minute wait as for a wrong password).
    endpoint.expire(daemon.user, stale_hand_outs=1)
    server.kick(daemon.user)
    daemon.wait_for_log("the access token was refused (expired?); trying once more")
    wait_until_idling(daemon, connects=4)
    daemon.append("meta/en/honoured-us.eml")
    received = popups.received(min_count=2, timeout=PUSH_WAIT)
    assert received[1].summary.startswith("Instagram honoured your objection")
    states = {(r["account"], r["platform"]): r["state"] for r in daemon.requests()}
    assert states == {
        ("bob@example.net", "instagram"): "received",
        ("carla@example.com", "instagram"): "honoured",
    }
    handed_out = endpoint.tokens_handed_out(daemon.user)
    assert handed_out.count(first) >= 3  # two watchers, then the stale hand-out
    assert handed_out[-1] != first
    log = daemon.log.read_text()
    assert "retrying every 30 minutes" not in log
    assert not any(token in log for token in handed_out)
    assert daemon.stop() == 0


def test_a_token_refused_twice_backs_off_and_recovers(
    server: Dovecot,
    endpoint: TokenEndpoint,
    popups: NotificationServer,
    tmp_path: Path,
    cleanup: list[Running],
) -> None:
    """A helper that hands out a dead token: reconnects back off as for a network problem
    (seconds, not the half hour of a wrong password), and pick up the token once it works."""
    token_file = tmp_path / "token"
    token_file.write_text("ya29.revoked-long-ago\n")
    helper = [sys.executable, "-c", "import sys; print(open(sys.argv[1]).read())", str(token_file)]
    daemon = oauth2_daemon(server, popups, tmp_path, lambda _user: helper)
    cleanup.append(daemon)
    with daemon.log.open("ab") as log_file:  # not start(): no connection succeeds yet
        daemon.proc = subprocess.Popen(
            [sys.executable, "-m", "optout_mail", "--config", str(daemon.config), "-v", "run"],
            env=daemon.env,
            stdout=log_file,
            stderr=log_file,
            stdin=subprocess.DEVNULL,
        )
    daemon.wait_for_log("the access token was refused (expired?) by 127.0.0.1")
    daemon.wait_for_log("reconnecting in")
    token_file.write_text(endpoint.issue(daemon.user) + "\n")
    started = time.monotonic()
    # Only INBOX is watched: the folder list could not be asked for at the start.
    daemon.wait_for_log("connected, catching up", timeout=30)
    wait_until_idling(daemon, connects=1)
    print(f"recovered {time.monotonic() - started:.1f} s after the token was fixed")
    log = daemon.log.read_text()
    assert "retrying every 30 minutes" not in log and "revoked-long-ago" not in log
    daemon.append("meta/en/honoured-uk.eml")
    popups.received(min_count=1, timeout=PUSH_WAIT)
    assert daemon.stop() == 0
