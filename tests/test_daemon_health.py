"""`optout-mail run` with a damaged ledger: it says so, stops feeding the systemd watchdog and
exits with status 1, instead of retrying for ever while it reports itself healthy."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from optout_mail import backup

from .test_ledger_file import fill, overwrite_middle

pytestmark = pytest.mark.slow


def start(tmp_path: Path, notify_socket: Path) -> tuple[subprocess.Popen[bytes], Path]:
    config = tmp_path / "config.toml"
    # `run` needs an account; this one's server is down (a closed port): its watcher keeps
    # retrying, which is all these tests of the ledger's health need of it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[notifications]\nenabled = false\n'
        f'[accounts.home]\nhost = "127.0.0.1"\nport = {closed_port}\nsecurity = "plain"\n'
        'username = "u"\npassword = "p"\nfolders = ["INBOX"]\n'
    )
    log = tmp_path / "daemon.log"
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_socket), "WATCHDOG_USEC": "2000000"}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "optout_mail", "--config", str(config), "run"],
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    return proc, log


def messages_until(sock: socket.socket, text: str) -> list[str]:
    seen: list[str] = []
    while not any(text in m for m in seen):
        seen.append(sock.recv(4096).decode())
    return seen


def drain(sock: socket.socket) -> list[str]:
    """The messages still queued on `sock`."""
    sock.settimeout(0.2)
    found: list[str] = []
    while True:
        try:
            found.append(sock.recv(4096).decode())
        except TimeoutError:
            return found


def test_a_ledger_damaged_while_running_stops_the_pings_and_exits_1(tmp_path: Path) -> None:
    ledger = tmp_path / "data" / "ledger.sqlite3"
    fill(ledger, 2000)
    backup.take_backup(ledger, reason="manual", now=datetime.now(UTC))
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(20)
        proc, log = start(tmp_path, path)
        try:
            messages_until(sock, "READY=1")
            messages_until(sock, "WATCHDOG=1")  # healthy: pinging every second
            overwrite_middle(ledger)
            messages_until(sock, "STATUS=stopped")
            assert proc.wait(timeout=15) == 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        rest = drain(sock)
    assert not any("WATCHDOG=1" in m for m in rest)  # no ping once the damage was found
    assert any("STOPPING=1" in m for m in rest)
    said = log.read_text()
    assert "fails the integrity check" in said and "ledger restore" in said


def test_run_refuses_to_start_on_an_empty_ledger(tmp_path: Path) -> None:
    ledger = tmp_path / "data" / "ledger.sqlite3"
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"")
    proc, log = start(tmp_path, tmp_path / "nobody-listens.sock")
    started = time.monotonic()
    assert proc.wait(timeout=30) == 1
    assert time.monotonic() - started < 30
    assert "the file is empty (0 bytes)" in log.read_text()
    assert ledger.stat().st_size == 0
