"""Reports and evidence: the originals kept beside the ledger, `export` as CSV, JSON and HTML,
and `evidence` zips that a stranger can verify with hashlib or `sha256sum -c`."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import sqlite3
import stat
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from optout_mail.ledger import MIGRATIONS, Ledger
from optout_mail.mailstore import MailStore
from optout_mail.pipeline import run_source
from optout_mail.report import render_report
from optout_mail.rules import RuleSet
from optout_mail.sources.local import LocalSource

from .conftest import Result
from .reportdata import HOSTILE_SUBJECT, MAILS, NOW, build_ledger

CLI = Callable[..., Result]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rule_set: RuleSet) -> Path:
    """The report ledger, as the CLI's data directory, with the CLI's clock at NOW."""
    data = tmp_path / "data"
    build_ledger(data, rule_set, hostile=True)
    monkeypatch.setenv("OPTOUT_MAIL_DATA_DIR", str(data))
    monkeypatch.setattr("optout_mail.commands.export.now", lambda: NOW)
    return data


def _requests(data_dir: Path) -> list[dict[str, object]]:
    with Ledger(data_dir / "ledger.sqlite3") as ledger:
        return [r.as_json() for r in ledger.requests(now=NOW)]


# -- the originals ------------------------------------------------------------------------------


def test_every_recorded_mail_keeps_its_original_once(data_dir: Path, rule_set: RuleSet) -> None:
    folder = data_dir / "mails"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with Ledger(data_dir / "ledger.sqlite3") as ledger:
        events = [e for r in ledger.requests(now=NOW) for e in r.events]
        events += ledger.unattached_events()
        for event in events:
            assert event.raw_sha256, f"{event.subject} has no original"
            path = folder / f"{event.raw_sha256}.eml"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == event.raw_sha256
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # The same mails again: nothing is recorded, nothing is written.
        before = sorted(folder.iterdir())
        run_source(
            LocalSource(data_dir.parent / "inbox"), rules=rule_set, ledger=ledger, clock=lambda: NOW
        )
    assert sorted(folder.iterdir()) == before
    assert len(before) == len(events)
    assert not [p for p in before if p.name.startswith(".tmp")]


def test_a_dry_run_and_a_ledger_in_memory_keep_nothing(tmp_path: Path, rule_set: RuleSet) -> None:
    inbox = tmp_path / "inbox"
    build_ledger(tmp_path / "unused", rule_set, mails=inbox)
    with Ledger(tmp_path / "dry" / "ledger.sqlite3") as ledger:
        run_source(
            LocalSource(inbox), rules=rule_set, ledger=ledger, clock=lambda: NOW, dry_run=True
        )
    assert not (tmp_path / "dry" / "mails").exists()
    with Ledger(":memory:") as ledger:
        run_source(LocalSource(inbox), rules=rule_set, ledger=ledger, clock=lambda: NOW)
        assert all(e.raw_sha256 is None for r in ledger.requests(now=NOW) for e in r.events)


def test_the_store_refuses_names_that_are_not_digests(tmp_path: Path) -> None:
    store = MailStore(tmp_path / "mails")
    digest = store.put(b"Subject: x\r\n\r\nbody\r\n")
    assert store.put(b"Subject: x\r\n\r\nbody\r\n") == digest
    assert store.get(digest) == b"Subject: x\r\n\r\nbody\r\n"
    with pytest.raises(ValueError, match="not a SHA-256"):
        store.path("../../etc/passwd")
    assert store.get("../../etc/passwd") is None
    store.path(digest).write_bytes(b"tampered")
    assert store.get(digest) is None  # a damaged copy is no evidence


def test_migration_3_keeps_old_events_without_an_original(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:2]:
            db.executescript(script)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO events (message_id, dedupe_key, outcome, rule, sender, subject, "
            "received_at, recorded_at, source) VALUES ('<m>', '<m>', 'notice', 'r', 's', 'x', "
            "'2024-06-01T00:00:00+00:00', '2024-06-01T00:00:00+00:00', 'home')"
        )
    with Ledger(path) as ledger:
        (event,) = ledger.unattached_events()
    assert event.raw_sha256 is None and event.as_json()["raw_sha256"] is None
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


# -- export -------------------------------------------------------------------------------------


def test_export_json_is_the_requests_list_array(cli: CLI, data_dir: Path) -> None:
    exported = cli("export", "--format", "json")
    assert exported.status == 0, exported.err
    assert json.loads(exported.out) == _requests(data_dir)
    assert {r["state"] for r in json.loads(exported.out)} >= {"honoured", "rejected"}


def test_export_csv_has_one_row_per_mail_and_round_trips(
    cli: CLI, data_dir: Path, tmp_path: Path
) -> None:
    assert cli("export", "--format", "csv", "--output", str(tmp_path / "l.csv")).status == 0
    with (tmp_path / "l.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    requests = _requests(data_dir)
    attached = [(r, e) for r in requests for e in r["events"]]  # type: ignore[attr-defined]
    assert len(rows) == len(attached) + 1  # + the phishing mail, which belongs to no request
    for row, (request, event) in zip(rows, attached, strict=False):
        assert int(row["request_id"]) == request["id"]
        for column in ("platform", "account", "kind", "state", "filed_at", "due_at"):
            assert row[column] == request[column]
        assert row["overdue"] == str(request["overdue"]).lower()
        for column in ("message_id", "outcome", "rule", "sender", "received_at", "raw_sha256"):
            assert row[column] == (event[column] or "")
        assert row["subject"] in (event["subject"], "'" + event["subject"])
    phishing = rows[-1]
    assert phishing["request_id"] == "" and phishing["authentic"] == "false"
    hostile = next(r for r in rows if "script" in r["subject"])
    assert hostile["subject"] == HOSTILE_SUBJECT  # text, not a formula: kept as it is


def test_csv_cells_that_a_spreadsheet_would_run_start_with_an_apostrophe() -> None:
    from optout_mail.export import _cell

    assert _cell('=HYPERLINK("http://evil")').startswith("'=")
    assert _cell("@SUM(1)") == "'@SUM(1)" and _cell("Update") == "Update"
    assert _cell(None) == "" and _cell(True) == "true"


def test_export_html_writes_report_html_and_escapes_subjects(
    cli: CLI, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("export", "--format", "html")
    assert result.status == 0, result.err
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o600
    assert "&lt;script&gt;document.title=&quot;pwned&quot;&lt;/script&gt;" in page
    # Everything from a mail is escaped, so every "<" left opens one of the report's own tags:
    # none of them runs a script or loads anything.
    tags = {m.group(1).lower() for m in re.finditer(r"<([a-zA-Z0-9]+)", page)}
    assert not tags & {"script", "img", "link", "iframe", "object", "embed", "base", "form"}
    assert "http-equiv" not in page
    assert not re.search(r"<[^>]*\s(src|on[a-z]+)=", page)
    assert "@import" not in page and "url(" not in page
    assert "@media print" in page


def test_the_report_says_what_to_do_for_refused_and_late_requests(data_dir: Path) -> None:
    with Ledger(data_dir / "ledger.sqlite3") as ledger:
        requests = {r.account: r for r in ledger.requests(now=NOW)}
    refused = render_report([requests["erik@example.net"]], now=NOW)
    assert "forms.dataprotection.ie/contact" in refused
    assert "Meta refused my objection" in refused and "Article 21(1)" in refused
    late = render_report([requests["bob@example.net"]], now=NOW)
    assert "overdue by 12 days" in late and "Meta has not answered" in late
    assert "Article 12(3)" in late and "12 June 2025" in late
    extended = render_report([requests["maeve@example.ie"]], now=NOW)
    assert "extended by two months" in extended and "dataprotection.ie/contact" not in extended
    honoured = render_report([requests["alice@example.org"]], now=NOW)
    assert "Nothing to do" in honoured and '<pre class="draft">' not in honoured


# -- evidence -----------------------------------------------------------------------------------


def _evidence(cli: CLI, data_dir: Path, tmp_path: Path, account: str) -> tuple[Path, Result]:
    request = next(r for r in _requests(data_dir) if r["account"] == account)
    out = tmp_path / f"request-{request['id']}.zip"
    return out, cli("evidence", str(request["id"]), "--output", str(out))


def test_evidence_zip_verifies_with_hashlib_and_sha256sum(
    cli: CLI, data_dir: Path, tmp_path: Path
) -> None:
    out, result = _evidence(cli, data_dir, tmp_path, "alice@example.org")
    assert result.status == 0, result.err
    assert "2 original mail(s)" in result.out and result.err == ""
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        files = {name.partition("/")[2]: archive.read(name) for name in names}
        archive.extractall(tmp_path / "unzipped")
    assert {n.partition("/")[0] for n in names} == {"request-1"}
    manifest = json.loads(files["manifest.json"])
    assert manifest["request"]["account"] == "alice@example.org"
    assert [e["original"] for e in manifest["events"]] == ["kept", "kept"]
    for entry in manifest["files"]:
        assert hashlib.sha256(files[entry["path"]]).hexdigest() == entry["sha256"]
    sums = dict(
        reversed(line.split("  ", 1)) for line in files["MANIFEST.sha256"].decode().splitlines()
    )
    assert set(sums) == set(files) - {"MANIFEST.sha256"}
    for path, digest in sums.items():
        assert hashlib.sha256(files[path]).hexdigest() == digest
    originals = sorted(p for p in files if p.endswith(".eml"))
    assert files[originals[0]] == (Path(__file__).parent.parent / "samples" / MAILS[0]).read_bytes()
    assert b"#1 Facebook objection" in files["report.html"]
    if shutil.which("sha256sum"):
        checked = subprocess.run(
            ["sha256sum", "-c", "MANIFEST.sha256"],
            cwd=tmp_path / "unzipped" / "request-1",
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert checked.stdout.count(": OK") == len(sums)


def test_evidence_refuses_to_overwrite_without_force(
    cli: CLI, data_dir: Path, tmp_path: Path
) -> None:
    out, first = _evidence(cli, data_dir, tmp_path, "erik@example.net")
    assert first.status == 0
    out.write_bytes(b"keep me")
    again = cli("evidence", "2", "--output", str(out))
    assert again.status == 2 and "exists already" in again.err and "--force" in again.err
    assert out.read_bytes() == b"keep me"
    assert cli("evidence", "2", "--output", str(out), "--force").status == 0
    assert zipfile.is_zipfile(out)
    assert cli("evidence", "99", "--output", str(tmp_path / "x.zip")).status == 2


def test_evidence_lists_mails_recorded_before_originals_were_kept(
    cli: CLI, data_dir: Path, tmp_path: Path
) -> None:
    with sqlite3.connect(data_dir / "ledger.sqlite3") as db:
        db.execute("UPDATE events SET raw_sha256 = NULL WHERE subject LIKE '%confirmation code'")
        (gone,) = db.execute(
            "SELECT raw_sha256 FROM events WHERE subject = 'Your objection "
            "request' AND sender LIKE '%facebookmail%'"
        ).fetchone()
    (data_dir / "mails" / f"{gone}.eml").unlink()
    out, result = _evidence(cli, data_dir, tmp_path, "alice@example.org")
    assert result.status == 0, result.err
    assert "0 original mail(s)" in result.out
    assert "recorded before optout-mail kept original mails" in result.err
    assert "missing or damaged" in result.err
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("request-1/manifest.json"))
        assert not [n for n in archive.namelist() if n.endswith(".eml")]
    assert [e["original"] for e in manifest["events"]] == [
        "original not kept",
        "original missing or damaged",
    ]
    assert all(e["file"] is None for e in manifest["events"])


def test_export_and_evidence_help_show_an_example(cli: CLI) -> None:
    assert "optout-mail export --format html" in cli("export", "--help").out
    assert "sha256sum -c MANIFEST.sha256" in cli("evidence", "--help").out


def test_csv_of_an_empty_ledger_is_just_the_header(cli: CLI, tmp_path: Path) -> None:
    from optout_mail.export import CSV_COLUMNS

    result = cli("export", "--format", "csv")
    assert result.status == 0, result.err
    assert list(csv.reader(io.StringIO(result.out))) == [list(CSV_COLUMNS)]


def test_a_mail_whose_original_cannot_be_written_is_still_recorded(
    tmp_path: Path, rule_set: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox = tmp_path / "inbox"
    build_ledger(tmp_path / "unused", rule_set, mails=inbox)

    def disk_full(self: MailStore, data: bytes) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MailStore, "put", disk_full)
    with Ledger(tmp_path / "full" / "ledger.sqlite3") as ledger:
        summary = run_source(LocalSource(inbox), rules=rule_set, ledger=ledger, clock=lambda: NOW)
        events = [e for r in ledger.requests(now=NOW) for e in r.events]
    assert events and all(e.raw_sha256 is None for e in events)
    assert summary.problems and "No space left on device" in summary.problems[0]
