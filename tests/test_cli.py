"""The command line as a user meets it: help, exit codes, JSON contracts, the error boundary."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest

from optout_mail.cli import cli as cli_group

from .conftest import Result

CLI = Callable[..., Result]


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", _commands(cli_group), ids=" ".join)
def test_every_command_has_help(cli: CLI, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.status == 0
    assert "Usage: optout-mail" in result.out
    assert len(result.out.splitlines()) > 3


def test_version_and_help_start_without_heavy_imports() -> None:
    code = (
        "import sys\nfrom optout_mail.cli import run\nrun(['--version'])\n"
        "heavy = [m for m in ('pydantic', 'mailparser', 'imapclient', 'sqlite3', 'notifypy', "
        "'apscheduler', 'rich', 'bs4') if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "optout-mail, version" in done.stdout
    assert "HEAVY []" in done.stdout


def test_usage_error_exits_2(cli: CLI) -> None:
    assert cli("classify").status == 2
    assert cli("no-such-command").status == 2


def test_classify_json_line_per_file_even_for_unreadable_files(
    cli: CLI, eml_dir: Path, mail: Callable[..., bytes]
) -> None:
    good = eml_dir / "good.eml"
    good.write_bytes(mail())
    result = cli("classify", "--json", str(good), str(eml_dir / "missing.eml"))
    assert result.status == 1
    lines = [json.loads(line) for line in result.out.splitlines()]
    assert [line["path"] for line in lines] == [str(good), str(eml_dir / "missing.eml")]
    assert set(lines[0]) == {
        "path",
        "outcome",
        "platform",
        "kind",
        "authentic",
        "code",
        "reference",
        "rule",
        "language",
    }
    assert lines[0]["outcome"] == "honoured" and lines[0]["authentic"] is True
    assert lines[1]["outcome"] is None and "cannot read" in lines[1]["error"]


def test_classify_explain_names_the_winner_and_the_guard(
    cli: CLI, eml_dir: Path, mail: Callable[..., bytes]
) -> None:
    path = eml_dir / "a.eml"
    path.write_bytes(mail())
    result = cli("classify", "--explain", str(path))
    assert result.status == 0
    assert "MATCH" in result.out and "wins" in result.out
    assert "blocked" in result.out or "no " in result.out


def test_bad_config_exits_78_and_lists_problems(
    cli: CLI, write_config: Callable[[str], Path]
) -> None:
    path = write_config(
        'poll_interval = "soon"\nbogus = 1\n[accounts.a]\nhost = "h"\n'
        'username = "u"\npassword = "s3cret-value"\nport = 0\n'
    )
    result = cli("--config", str(path), "scan")
    assert result.status == 78
    assert "the configuration has 3 problems" in result.err
    assert result.err.count("  - ") == 3
    assert "s3cret-value" not in result.err + result.out
    assert "Traceback" not in result.err


def test_broken_user_rules_exit_78(
    cli: CLI, write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    pack = tmp_path / "myrules"
    pack.mkdir()
    (pack / "pack.toml").write_text('[pack]\nid = "x"\n[senders]\n"example.net" = "facebook"\n')
    (pack / "en.toml").write_text('language = "en"\n[[rule]]\nid = "x.y"\n')
    path = write_config(f'rules_dirs = ["{pack}"]\n')
    result = cli("--config", str(path), "rules", "check")
    assert result.status == 78
    assert "rule x.y: description: Field required" in result.err


def test_scan_without_accounts_says_how_to_configure(cli: CLI) -> None:
    result = cli("scan")
    assert result.status == 78
    assert "no config file: looked for " in result.err and "config.toml" in result.err
    assert "optout-mail init" in result.err and "--source" in result.err


def test_scan_source_twice_records_once(
    cli: CLI, eml_dir: Path, mail: Callable[..., bytes]
) -> None:
    (eml_dir / "a.eml").write_bytes(mail())
    (eml_dir / "b.eml").write_bytes(mail(sender="Bob <bob@gmail.com>", subject="Fwd: hi"))
    first = json.loads(cli("scan", "--source", str(eml_dir), "--json").out)
    assert (first["examined"], first["matched"], first["recorded"]) == (2, 1, 1)
    second = json.loads(cli("scan", "--source", str(eml_dir), "--json").out)
    assert (second["examined"], second["matched"], second["recorded"]) == (2, 1, 0)
    dry = json.loads(cli("scan", "--source", str(eml_dir), "--json", "--dry-run").out)
    assert dry["dry_run"] is True and dry["recorded"] == 0


def test_scan_missing_source_is_one_sentence(cli: CLI, tmp_path: Path) -> None:
    result = cli("scan", "--source", str(tmp_path / "nope"))
    assert result.status == 1
    assert result.err.startswith(f"optout-mail: {tmp_path / 'nope'} does not exist")


def test_requests_add_list_show_forget(cli: CLI, eml_dir: Path, mail: Callable[..., bytes]) -> None:
    added = cli(
        "requests",
        "add",
        "--platform",
        "instagram",
        "--account",
        "Alice@Example.org",
        "--filed",
        "2025-05-02",
        "--json",
    )
    assert added.status == 0, added.err
    request = json.loads(added.out)
    assert request["due_at"].startswith("2025-06-02") and request["state"] == "filed"
    (eml_dir / "a.eml").write_bytes(mail(sender="Instagram <no-reply@mail.instagram.com>"))
    cli("scan", "--source", str(eml_dir))
    listed = json.loads(cli("requests", "list", "--json").out)
    assert len(listed) == 1
    entry = listed[0]
    assert set(entry) >= {
        "id",
        "platform",
        "account",
        "kind",
        "state",
        "filed_at",
        "due_at",
        "updated_at",
        "events",
    }
    assert entry["state"] == "honoured" and entry["account"] == "alice@example.org"
    assert set(entry["events"][0]) >= {
        "message_id",
        "outcome",
        "authentic",
        "rule",
        "received_at",
        "folder",
    }
    shown = cli("requests", "show", str(entry["id"]))
    assert "filed -> honoured" in shown.out
    assert cli("requests", "forget", str(entry["id"])).status == 0
    assert json.loads(cli("requests", "list", "--json").out) == []
    missing = cli("requests", "show", "999")
    assert missing.status == 2 and "there is no request 999" in missing.err


def test_requests_add_refuses_a_bad_address(cli: CLI) -> None:
    result = cli("requests", "add", "--platform", "facebook", "--account", "alice")
    assert result.status == 2 and "not an e-mail address" in result.err


def test_unreadable_ledger_is_a_clear_error(cli: CLI, isolated_home: Path) -> None:
    ledger = isolated_home / ".local/share/optout-mail/ledger.sqlite3"
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(b"garbage" * 1000)
    result = cli("requests", "list")
    assert result.status == 1 and "cannot open the ledger" in result.err
