"""The command line as a person meets it: a throw-away data directory, corrections by hand,
tables that fit 80 columns, plain text when piped, an example in every help, and bad input
answered with what to do."""

from __future__ import annotations

import io
import json
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from rich.console import Console

from optout_mail.cli import cli as cli_group
from optout_mail.config import Account
from optout_mail.output import ScanProgress
from optout_mail.sources.imap_connect import connection_error

from .conftest import SAMPLES, Result

CLI = Callable[..., Result]


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path) or "optout-mail", group
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


@pytest.mark.parametrize(("name", "command"), list(commands(cli_group)))
def test_every_command_has_an_example_in_its_help(name: str, command: click.Command) -> None:
    assert "Example" in (command.help or ""), f"`{name} --help` shows no example"


def test_data_dir_keeps_the_try_it_out_of_the_real_ledger(
    cli: CLI, tmp_path: Path, isolated_home: Path
) -> None:
    scratch = tmp_path / "scratch"
    result = cli("--data-dir", str(scratch), "scan", "--source", str(SAMPLES / "meta/en"))
    assert result.status == 0, result.err
    assert (scratch / "ledger.sqlite3").is_file()
    assert not (isolated_home / ".local/share/optout-mail/ledger.sqlite3").exists()
    listed = cli("--data-dir", str(scratch), "requests", "list", "--json")
    assert json.loads(listed.out)


def test_data_dir_overrides_the_environment_and_shows_in_config_show(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTOUT_MAIL_DATA_DIR", str(tmp_path / "from-env"))
    result = cli("--data-dir", str(tmp_path / "option"), "config", "show", "--json")
    (value,) = [v for v in json.loads(result.out)["values"] if v["key"] == "data_dir"]
    assert value["value"] == str(tmp_path / "option")
    assert (value["source"], value["origin"]) == ("option", "--data-dir")


def test_scan_source_into_a_ledger_with_accounts_says_how_to_try_it_safely(
    cli: CLI, write_config: Callable[[str], Path]
) -> None:
    config = write_config('[accounts.home]\nhost = "imap.example.org"\nusername = "a"\n')
    config.write_text(config.read_text() + 'password = "x"\n')
    result = cli("--config", str(config), "scan", "--source", str(SAMPLES / "meta/en"))
    assert result.status == 0
    assert "records" in result.err and "real ledger" in result.err
    assert '--data-dir "$(mktemp -d)"' in result.err
    again = cli("--config", str(config), "scan", "--source", str(SAMPLES / "meta/en"), "--dry-run")
    assert "real ledger" not in again.err


def test_note_and_set_state_are_the_users_own_events(cli: CLI, tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "d"))
    cli(*data, "scan", "--source", str(SAMPLES / "meta/en/received.eml"))
    assert cli(*data, "requests", "note", "1", "phoned the DPC").status == 0
    done = cli(*data, "requests", "set-state", "1", "honoured", "--json")
    assert done.status == 0, done.err
    request = json.loads(done.out)
    assert request["state"] == "honoured"
    note, correction = request["user_events"]
    assert (note["action"], note["text"]) == ("note", "phoned the DPC")
    assert correction["action"] == "set-state"
    assert (correction["state_before"], correction["state_after"]) == ("received", "honoured")
    assert correction["text"] == "set by the user"
    shown = cli(*data, "requests", "show", "1")
    assert "you noted: phoned the DPC" in shown.out
    assert "received -> honoured (set by the user)" in shown.out
    assert cli(*data, "requests", "set-state", "1", "honoured").status == 2  # already
    assert cli(*data, "requests", "note", "99", "x").status == 2


def test_forget_all_asks_first_and_yes_skips_the_question(cli: CLI, tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path / "d"))
    cli(*data, "scan", "--source", str(SAMPLES / "meta/en"))
    refused = cli(*data, "requests", "forget", "--all")  # stdin is no terminal under pytest
    assert refused.status == 2 and "--yes" in refused.err
    assert json.loads(cli(*data, "requests", "list", "--json").out)
    done = cli(*data, "requests", "forget", "--all", "--yes")
    assert done.status == 0 and "Forgot" in done.out
    assert json.loads(cli(*data, "requests", "list", "--json").out) == []
    assert list((tmp_path / "d/backups").glob("ledger-*-forget.sqlite3"))
    assert cli(*data, "requests", "forget").status == 2  # neither an id nor --all


def test_tables_fit_80_columns_and_keep_ids_dates_in_full(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    data = ("--data-dir", str(tmp_path / "d"))
    scanned = cli(*data, "scan", "--source", str(SAMPLES))
    listed = cli(*data, "requests", "list")
    rules = cli("rules", "list")
    for out in (scanned.out, listed.out, rules.out):
        assert "\x1b[" not in out  # plain text when not on a terminal
        assert "…" not in out  # nothing cut
        assert max(len(line) for line in out.splitlines()) <= 80
    requests = json.loads(cli(*data, "requests", "list", "--json").out)
    for request in requests:
        assert request["filed_at"][:10] in listed.out and request["due_at"][:10] in listed.out
    for rule in json.loads(cli("rules", "list", "--json").out):
        assert rule["id"] in rules.out
    wide = cli(*data, "requests", "list", "--wide")
    assert "account" in wide.out and "alice@example.org" in wide.out


def test_no_color_gives_plain_text_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    from optout_mail.output import print_rules

    monkeypatch.setenv("NO_COLOR", "1")
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80)
    print_rules(
        console,
        [
            {
                "id": "x",
                "language": "en",
                "outcome": "honoured",
                "kind": "k",
                "priority": 1,
                "source": "s",
                "description": "d",
            }
        ],
    )
    assert "\x1b[3" not in buffer.getvalue()  # no colours (bold may stay)


def test_progress_bar_only_on_a_terminal_and_for_long_scans() -> None:
    piped = io.StringIO()
    progress = ScanProgress(Console(file=piped, width=80))
    progress("home/INBOX", 500, 1000)
    progress.close()
    assert piped.getvalue() == ""
    tty = io.StringIO()
    progress = ScanProgress(Console(file=tty, force_terminal=True, width=80))
    progress("home/INBOX", 50, 100)
    assert tty.getvalue() == ""  # a short scan: no bar
    progress("home/Big", 300, 1000)
    progress.close()
    assert "home/Big" in tty.getvalue()


def test_scan_json_stays_clean(cli: CLI, tmp_path: Path) -> None:
    result = cli("--data-dir", str(tmp_path / "d"), "scan", "--source", str(SAMPLES), "--json")
    assert json.loads(result.out)["examined"] > 0


@pytest.mark.parametrize("argv", [("rules", "check", "--json"), ("ledger", "backup", "--json")])
def test_commands_that_print_data_speak_json(cli: CLI, argv: tuple[str, ...]) -> None:
    result = cli(*argv)
    assert result.status == 0, result.err
    assert isinstance(json.loads(result.out), dict)


def test_classify_says_not_a_mail_and_points_folders_to_scan(cli: CLI, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("shopping list\nmilk\n")
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)))
    result = cli("classify", str(text), str(binary), str(tmp_path))
    assert result.status == 1
    assert f"{text} is not a mail" in result.err and f"{binary} is not a mail" in result.err
    assert "no match" not in result.err + result.out
    assert f"{tmp_path} is a folder" in result.err and "scan --source" in result.err
    as_json = cli("classify", "--json", str(text))
    assert "not a mail" in json.loads(as_json.out)["error"]


def test_run_without_accounts_exits_78_naming_the_config(
    cli: CLI, write_config: Callable[[str], Path]
) -> None:
    missing = cli("run")
    assert missing.status == 78
    assert "no config file: looked for" in missing.err and "optout-mail init" in missing.err
    empty = write_config("poll_interval = 300\n")
    result = cli("--config", str(empty), "run")
    assert result.status == 78 and f"{empty} configures no account" in result.err


def _account(**extra: object) -> Account:
    return Account(host="imap.example.org", username="a", password="x", **extra)  # type: ignore[arg-type]


def test_a_certificate_for_another_name_points_to_host_not_ca_file() -> None:
    exc = ssl.SSLCertVerificationError("certificate verify failed")
    exc.verify_code = 62
    exc.verify_message = "Hostname mismatch, certificate is not valid for 'imap.example.org'."
    error = connection_error("home", _account(), exc)
    assert error is not None
    assert "made out to another name" in error.message
    assert error.hint is not None and "`host`" in error.hint and "ca_file" not in error.hint
    untrusted = ssl.SSLCertVerificationError("certificate verify failed")
    untrusted.verify_code = 19
    untrusted.verify_message = "self-signed certificate in certificate chain"
    other = connection_error("home", _account(), untrusted)
    assert other is not None and other.hint is not None and "ca_file" in other.hint


def test_the_timeout_message_names_the_limit_that_ran_out() -> None:
    account = _account(timeout=60)
    connect = connection_error("home", account, TimeoutError(), waited=15.2)
    read = connection_error("home", account, TimeoutError(), waited=60.1)
    assert connect is not None and "within 15 s" in connect.message
    assert read is not None and "within 60 s" in read.message
    short = connection_error("home", _account(timeout=5), TimeoutError(), waited=5.0)
    assert short is not None and "within 5 s" in short.message


def test_a_bad_environment_value_is_blamed_on_the_variable(
    cli: CLI, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config("poll_interval = 300\n")
    monkeypatch.setenv("OPTOUT_MAIL_POLL_INTERVAL", "soon")
    result = cli("--config", str(config), "config", "show")
    assert result.status == 78
    assert "(from the environment, OPTOUT_MAIL_POLL_INTERVAL)" in result.err
    assert f"(in {config})" not in result.err


def test_a_mistyped_key_gets_a_did_you_mean(cli: CLI, write_config: Callable[[str], Path]) -> None:
    config = write_config(
        "pol_interval = 300\n[notifications]\nshow_code = true\n[accounts.home]\n"
        'host = "imap.example.org"\nusername = "a"\npassword = "x"\nprot = 993\n'
    )
    result = cli("--config", str(config), "config", "show")
    assert result.status == 78
    assert "pol_interval: unknown key (did you mean poll_interval?)" in result.err
    assert "notifications.show_code: unknown key (did you mean show_codes?)" in result.err
    assert "accounts.home.prot: unknown key (did you mean port?)" in result.err
