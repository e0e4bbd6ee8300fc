"""A real `optout-mail run` process for the daemon tests: its config, environment and log.

`Running` starts the daemon against the private Dovecot (tests/imapserver.py) with popups going
to a private notification server, and reads its log as a user reads the journal.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import SAMPLES
from tests.imapserver import Dovecot, dovecot_available
from tests.notification_daemon import NotificationServer, missing_tools

names = (f"d{i}" for i in itertools.count())
PUSH_WAIT = 20.0  # generous for a loaded CI machine; the poll interval is 300 s


def why_not() -> str | None:
    """Why the daemon tests cannot run here, or None."""
    return (None if dovecot_available() else "needs Debian dovecot-imapd") or missing_tools()


class Running:
    """A daemon process and what it needs: config, environment, its log."""

    def __init__(self, server: Dovecot, popups: NotificationServer, tmp_path: Path) -> None:
        self.user = next(names)
        server.add_user(self.user, f"pw-{self.user}")
        self.server = server
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f'data_dir = "{tmp_path / "data"}"\npoll_interval = 300\n'
            f'[accounts.home]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
            f'username = "{self.user}"\npassword = "pw-{self.user}"\ntimeout = 5\n'
        )
        self.env = {**os.environ, **popups.env}
        self.log = tmp_path / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        """Start `optout-mail run` as systemd would, without -v: `run` logs at INFO by itself."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "optout_mail", "--config", str(self.config), "run"],
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        self.wait_for_log("connected, catching up", count=2)  # INBOX and Junk
        return self.proc

    def wait_for_log(self, text: str, count: int = 1, timeout: float = PUSH_WAIT) -> float:
        """Wait until `text` is in the log `count` times; returns the seconds it took."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.count(text) >= count:
                return time.monotonic() - started
            assert self.proc is None or self.proc.poll() is None, self.log.read_text()
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged {count}x:\n{self.log.read_text()}")

    def count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

    def lines(self, text: str = "") -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if text in line]

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def requests(self) -> list[dict[str, object]]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "optout_mail",
                "--config",
                str(self.config),
                "requests",
                "list",
                "--json",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def append(self, name: str, folder: str = "INBOX") -> None:
        self.server.append(self.user, folder, (SAMPLES / name).read_bytes())

    def append_fresh(self, name: str, folder: str = "INBOX") -> None:
        """A sample re-dated to now, as Meta's code mail is while the form is still open."""
        self.server.append(self.user, folder, redated(SAMPLES / name))


def redated(path: Path) -> bytes:
    from datetime import UTC, datetime
    from email.utils import format_datetime

    data = path.read_bytes()
    head, sep, body = data.partition(b"\n\n")
    lines = [
        b"Date: " + format_datetime(datetime.now(UTC)).encode()
        if line.startswith(b"Date:")
        else line
        for line in head.split(b"\n")
    ]
    return b"\n".join(lines) + sep + body
