"""The ledger is never silently lost: damaged files refused, backups, restore, permissions,
writers in two processes. Real files and real processes throughout."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from optout_mail import backup, ledger_file
from optout_mail.errors import LedgerDamaged, LedgerError
from optout_mail.ledger import Ledger
from optout_mail.model import Classification, Kind, Observation, Outcome, RawMail
from optout_mail.parse import parse

from .conftest import Result, make_mail

CLI = Callable[..., Result]
NOW = datetime(2025, 5, 21, 8, 0, tzinfo=UTC)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def fill(path: Path, events: int) -> None:
    """A ledger with `events` recorded mails (one request per 3 mails)."""
    base = parse(RawMail(data=make_mail(), origin="t"))
    observations = []
    for i in range(events):
        message = dataclasses.replace(
            base, message_id=f"<m{i}@www.facebook.com>", to=(f"u{i // 3}@example.org",)
        )
        classification = Classification(
            outcome=Outcome.RECEIVED if i % 3 else Outcome.HONOURED,
            platform="facebook",
            kind=Kind.OBJECTION,
            authentic=True,
            rule="t.x",
            language="en",
        )
        observations.append(
            Observation(
                message=message,
                classification=classification,
                source="home",
                account_address=message.to[0],
                folder="INBOX",
                uid=i,
                uidvalidity=7,
            )
        )
    with Ledger(path) as ledger:
        for start in range(0, events, 500):
            ledger.record(observations[start : start + 500], now=NOW)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data"
    monkeypatch.setenv("OPTOUT_MAIL_DATA_DIR", str(path))
    return path


@pytest.fixture
def filled(data_dir: Path) -> Path:
    path = data_dir / "ledger.sqlite3"
    fill(path, 2000)
    return path


# -- damaged files are refused, never replaced ------------------------------------------------


def overwrite_middle(path: Path) -> None:
    pages = path.stat().st_size // 4096
    with path.open("r+b") as handle:
        handle.seek(pages // 2 * 4096)
        handle.write(bytes([0xA5]) * 4096 * 3)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
        (lambda p: p.write_bytes(b"not a database, just words\n" * 500), "not an SQLite database"),
        (overwrite_middle, "fails the integrity check"),
        (lambda p: os.truncate(p, p.stat().st_size // 2), "truncated"),
        (lambda p: os.truncate(p, 60), "truncated"),
    ],
    ids=["empty", "garbage", "corrupt middle", "truncated", "header cut"],
)
def test_a_damaged_ledger_is_refused_and_left_alone(
    filled: Path, damage: Callable[[Path], object], says: str
) -> None:
    damage(filled)
    before = filled.read_bytes()
    with pytest.raises(LedgerDamaged, match=re.escape(says)) as raised:
        Ledger(filled)
    assert "move" in str(raised.value.hint) and "away to start afresh" in str(raised.value.hint)
    assert filled.read_bytes() == before  # not recreated, not "repaired"


def test_the_error_names_the_newest_backup(filled: Path) -> None:
    taken = backup.take_backup(filled, reason="manual", now=NOW)
    filled.write_bytes(b"")
    with pytest.raises(LedgerDamaged) as raised:
        Ledger(filled)
    hint = str(raised.value.hint)
    assert "optout-mail ledger restore" in hint and taken.path.name in hint


def test_commands_refuse_an_empty_ledger_with_status_1(
    cli: CLI, data_dir: Path, eml_dir: Path
) -> None:
    data_dir.mkdir()
    (data_dir / "ledger.sqlite3").write_bytes(b"")
    (eml_dir / "a.eml").write_bytes(make_mail())
    for argv in (("requests", "list"), ("scan", "--source", str(eml_dir))):
        result = cli(*argv)
        assert result.status == 1
        assert "the file is empty (0 bytes)" in result.err and "start afresh" in result.err
    assert (data_dir / "ledger.sqlite3").stat().st_size == 0


def test_quick_check_at_open_is_cheap_on_10k_events(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    fill(path, 10_000)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        Ledger(path).close()
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.1, timings  # measured: about 10 ms for 10k events (3.4 MB)


# -- backups ---------------------------------------------------------------------------------------


def test_backups_rotate_keeping_the_newest_seven(filled: Path) -> None:
    for day in range(9):
        backup.take_backup(filled, reason="daily", now=NOW + timedelta(days=day))
    kept = ledger_file.list_backups(filled)
    assert [b.taken_at for b in kept] == [NOW + timedelta(days=d) for d in range(8, 1, -1)]
    assert kept[0].path.name == "ledger-20250529T080000Z-daily.sqlite3"
    assert mode(kept[0].path.parent) == 0o700 and all(mode(b.path) == 0o600 for b in kept)
    with sqlite3.connect(kept[0].path) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 2000
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # self-contained


def test_a_writer_takes_the_daily_backup_once_a_day(data_dir: Path) -> None:
    path = data_dir / "ledger.sqlite3"
    with Ledger(path) as ledger:  # a brand-new ledger: nothing worth a backup yet
        ledger.mark_popup("event:1", delivered=True, now=NOW)
    with Ledger(path) as ledger:  # still no request and no event: nothing worth one either
        ledger.add_request(
            platform="facebook", account="a@example.org", kind=Kind.OBJECTION, filed_at=NOW, now=NOW
        )
    assert ledger_file.list_backups(path) == []
    with Ledger(path) as ledger:
        ledger.requests(now=NOW)  # readers take none
    assert ledger_file.list_backups(path) == []
    for _ in range(2):
        with Ledger(path) as ledger:
            ledger.mark_popup("event:2", delivered=True, now=NOW)
    (first,) = ledger_file.list_backups(path)
    assert first.reason == "daily"
    first.path.rename(first.path.with_name("ledger-20200101T000000Z-daily.sqlite3"))
    with Ledger(path) as ledger:
        ledger.mark_popup("event:3", delivered=True, now=NOW)
    assert len(ledger_file.list_backups(path)) == 2


def test_a_migration_is_preceded_by_a_backup(filled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from optout_mail import ledger as ledger_module

    current = len(ledger_module.MIGRATIONS)
    monkeypatch.setattr(
        ledger_module, "MIGRATIONS", (*ledger_module.MIGRATIONS, "CREATE TABLE extra (x)")
    )
    Ledger(filled).close()
    (taken,) = ledger_file.list_backups(filled)
    assert taken.reason == f"schema{current}"
    with sqlite3.connect(taken.path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == current
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 2000
    with sqlite3.connect(filled) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == current + 1


# -- the commands ----------------------------------------------------------------------------------


def test_check_backup_restore_round_trip(cli: CLI, filled: Path) -> None:
    checked = cli("ledger", "check", "--json")
    assert checked.status == 0, checked.err
    report = json.loads(checked.out)
    assert report["ok"] and report["counts"]["events"] == 2000 and report["backups"] == []
    assert report["mode"] == "0600"
    assert cli("ledger", "backup").status == 0
    added = cli("requests", "add", "--platform", "threads", "--account", "x@example.org")
    assert added.status == 0
    overwrite_middle(filled)
    broken = cli("ledger", "check")
    assert broken.status == 1 and "DAMAGED" in broken.out and "ledger restore" in broken.err

    restored = cli("ledger", "restore", "--yes")
    assert restored.status == 0, restored.err
    assert "2000 events" in restored.out
    (kept,) = filled.parent.glob("ledger.sqlite3.broken-*")
    assert kept.read_bytes()[:16] == ledger_file.SQLITE_MAGIC  # the damaged file, kept
    assert mode(filled) == 0o600
    listed = json.loads(cli("requests", "list", "--json").out)
    assert "threads" not in {r["platform"] for r in listed}  # back to the backup's state
    with sqlite3.connect(filled) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert json.loads(cli("ledger", "check", "--json").out)["ok"]


def test_restore_refuses_while_run_holds_the_lock(cli: CLI, filled: Path) -> None:
    cli("ledger", "backup")
    with (filled.parent / "run.lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        refused = cli("ledger", "restore", "--yes")
        assert refused.status == 2 and "optout-mail run is running" in refused.err
        assert "--force" in refused.err
        assert cli("ledger", "restore", "--yes", "--force").status == 0


def test_restore_asks_first_and_checks_the_backup(cli: CLI, filled: Path) -> None:
    none = cli("ledger", "restore", "--yes")
    assert none.status == 1 and "there is no backup" in none.err
    cli("ledger", "backup")
    unconfirmed = cli("ledger", "restore")  # stdin is not a terminal under pytest
    assert unconfirmed.status == 2 and "--yes" in unconfirmed.err
    (newest,) = ledger_file.list_backups(filled)
    overwrite_middle(newest.path)
    damaged = cli("ledger", "restore", newest.path.name, "--yes")
    assert damaged.status == 1 and "cannot be restored" in damaged.err
    assert not list(filled.parent.glob("*.broken-*"))  # nothing was touched


# -- permissions ----------------------------------------------------------------------------------


@pytest.fixture
def loose_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.usefixtures("loose_umask")
def test_files_0600_and_folders_0700_whatever_the_umask(data_dir: Path) -> None:
    path = data_dir / "ledger.sqlite3"
    with Ledger(path) as ledger, ledger.popups.claim():
        ledger.mark_popup("event:1", delivered=True, now=NOW)
        wal, shm = ledger_file.sidecars(path)
        assert wal.exists() and shm.exists()
        assert (mode(data_dir), mode(path), mode(wal), mode(shm)) == (0o700, 0o600, 0o600, 0o600)
    taken = backup.take_backup(path, reason="manual", now=NOW)
    assert (mode(taken.path.parent), mode(taken.path)) == (0o700, 0o600)
    assert mode(data_dir / "popups.lock") == 0o600


@pytest.mark.usefixtures("loose_umask")
def test_loose_modes_are_tightened_and_logged(
    filled: Path, caplog: pytest.LogCaptureFixture
) -> None:
    filled.parent.chmod(0o755)
    filled.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="optout_mail.ledger_file"):
        Ledger(filled).close()
    assert (mode(filled.parent), mode(filled)) == (0o700, 0o600)
    said = caplog.text
    assert "could be read by other users (mode 0755); now 0700" in said
    assert "(mode 0644); now 0600" in said


# -- two processes ---------------------------------------------------------------------------------


HOLD = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("INSERT OR REPLACE INTO popups VALUES ('held', '2025-01-01T00:00:00+00:00', 1)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process that holds the ledger's write lock for `seconds`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def finish(proc: subprocess.Popen[str]) -> int:
    proc.communicate(timeout=10)
    return proc.returncode


@pytest.mark.slow
def test_scan_waits_for_a_writer_in_another_process(
    filled: Path, tmp_path: Path, eml_dir: Path
) -> None:
    (eml_dir / "a.eml").write_bytes(make_mail(to="new@example.org"))
    env = {**os.environ, "OPTOUT_MAIL_DATA_DIR": str(filled.parent)}
    holder = hold_write_lock(filled, 3.0)
    started = time.monotonic()
    scan = subprocess.run(
        [sys.executable, "-m", "optout_mail", "scan", "--source", str(eml_dir), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    waited = time.monotonic() - started
    assert finish(holder) == 0
    assert scan.returncode == 0, scan.stderr
    assert json.loads(scan.stdout)["recorded"] == 1 and waited > 2.0


@pytest.mark.slow
def test_an_old_rollback_journal_ledger_waits_for_the_wal_switch(filled: Path) -> None:
    with sqlite3.connect(filled, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode = DELETE")
    holder = hold_write_lock(filled, 1.5)
    with Ledger(filled) as ledger:  # "database is locked" at once, before the fix
        assert ledger.counts()["events"] == 2000
    assert finish(holder) == 0


def test_a_writer_waits_longer_than_one_busy_timeout(
    filled: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ledger_file, "BUSY_TIMEOUT", 0.2)
    ledger = Ledger(filled)
    holder = hold_write_lock(filled, 1.5)
    with caplog.at_level(logging.WARNING):
        ledger.mark_popup("event:9", delivered=True, now=NOW)
    assert "another process is writing it; waiting" in caplog.text
    assert finish(holder) == 0
    monkeypatch.setattr(ledger_file, "WRITE_WAIT", 0.5)
    holder = hold_write_lock(filled, 3.0)
    with pytest.raises(LedgerError, match="stayed locked by another process"):
        ledger.mark_popup("event:10", delivered=True, now=NOW)
    holder.kill()
    finish(holder)
    ledger.close()


OPEN_AND_WRITE = """
import sys
sys.path.insert(0, sys.argv[2])
from datetime import UTC, datetime
from optout_mail.ledger import Ledger
with Ledger(sys.argv[1]) as ledger:
    ledger.mark_popup(f"event:{sys.argv[3]}", delivered=True, now=datetime.now(UTC))
"""


@pytest.mark.slow
def test_processes_creating_the_ledger_at_once_all_succeed(tmp_path: Path) -> None:
    """Before: "table requests already exists" (two migrations) or "database is locked"."""
    for attempt in range(3):
        path = tmp_path / f"try{attempt}" / "ledger.sqlite3"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_AND_WRITE, str(path), SRC, str(n)],
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(6)
        ]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors
        with Ledger(path) as ledger:
            assert len(ledger.popups.undelivered()) == 0
            assert all(ledger.popup_shown(f"event:{n}") for n in range(6))
