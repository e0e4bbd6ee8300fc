"""The watchers' reconnect back-off and the daemon's log lines, without a server.

The back-off doubles with jitter up to its cap while attempts fail and starts afresh after a
session that worked; every reconnect line says when the next attempt is; `run` logs at INFO
with timestamps, or without them (and with sd-daemon priorities) when stderr is the journal.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from tests.conftest import SAMPLES

from optout_mail.watcher import BACKOFF_CAP, Backoff, backoff_delay, next_attempt

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|ERROR|DEBUG) ")


def test_backoff_is_capped_and_jittered() -> None:
    assert [backoff_delay(n, rng=lambda: 0.0) for n in range(3)] == [1.0, 2.0, 4.0]
    assert backoff_delay(50, rng=lambda: 1.0) == BACKOFF_CAP
    assert backoff_delay(3, rng=lambda: 0.5) == pytest.approx(12.0)
    assert BACKOFF_CAP / 2 <= backoff_delay(20) <= BACKOFF_CAP


def test_an_outage_backs_off_to_the_cap() -> None:
    backoff = Backoff(rng=lambda: 1.0)
    delays = [backoff.next_delay() for _ in range(12)]
    assert delays[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert delays[-3:] == [BACKOFF_CAP] * 3
    assert delays == sorted(delays)


def test_a_session_that_worked_starts_the_backoff_afresh() -> None:
    """Seven kicks used to cost 101 s: each drop counted as one more failed attempt."""
    backoff = Backoff(rng=lambda: 1.0)
    after_kicks = [backoff.next_delay(session_worked=True) for _ in range(10)]
    assert after_kicks == [2.0] * 10
    for _ in range(8):
        backoff.next_delay()  # a real outage: the server is down
    assert backoff.next_delay() == BACKOFF_CAP
    assert backoff.next_delay(session_worked=True) == 2.0  # it came back and worked


def test_next_attempt_says_how_long_and_when() -> None:
    now = datetime(2025, 5, 21, 18, 2, 27).astimezone()
    assert next_attempt(4.2, now) == "4 s (at 18:02:31)"
    assert next_attempt(300, now) == "300 s (at 18:07:27)"


def _scan_log(tmp_path: Path, *args: str, journal: str | None = None) -> list[str]:
    """stderr of a real `optout-mail ... scan --source`, written to a file as systemd would.
    `journal`: JOURNAL_STREAM, or "stderr" for the device:inode of that file."""
    log = tmp_path / "stderr.log"
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    env["OPTOUT_MAIL_DATA_DIR"] = str(tmp_path / f"data{len(list(tmp_path.iterdir()))}")
    with log.open("wb") as stderr:
        if journal == "stderr":
            stat = os.fstat(stderr.fileno())
            journal = f"{stat.st_dev}:{stat.st_ino}"
        if journal:
            env["JOURNAL_STREAM"] = journal
        subprocess.run(
            [sys.executable, "-m", "optout_mail", *args, "scan", "--source", str(tmp_path / "m")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            check=True,
            timeout=60,
        )
    return log.read_text().splitlines()


@pytest.fixture
def mails(tmp_path: Path) -> Path:
    (tmp_path / "m").mkdir()
    for name in ("honoured-uk.eml", "code.eml"):
        (tmp_path / "m" / name).write_bytes((SAMPLES / "meta/en" / name).read_bytes())
    return tmp_path


def test_other_commands_log_warnings_only_unless_verbose(mails: Path) -> None:
    assert _scan_log(mails) == []
    lines = _scan_log(mails, "-v")
    events = [line for line in lines if "optout_mail.pipeline" in line]
    assert len(events) == 2, lines
    assert all(TIMESTAMP.match(line) for line in lines), lines


def test_under_journald_lines_carry_priorities_and_no_timestamps(mails: Path) -> None:
    lines = _scan_log(mails, "-v", journal="stderr")
    assert lines, "the per-event lines are logged"
    assert all(line.startswith("<6>INFO optout_mail.") for line in lines), lines
    honoured = next(line for line in lines if ": honoured for " in line)
    assert "(Facebook objection #" in honoured and ", rule " in honoured
    code = next(line for line in lines if ": code for " in line)
    assert "483920" not in code, "a one-time code never reaches the log"


def test_a_journal_stream_that_is_not_stderr_keeps_the_timestamps(mails: Path) -> None:
    lines = _scan_log(mails, "-v", journal="8:12345")  # inherited, but stderr was redirected
    assert lines and all(TIMESTAMP.match(line) for line in lines), lines
