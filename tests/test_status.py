"""`status`, `config show` and `test-notify`, plus the pieces `init` is made of that need no
mail server: the provider table, the generated config, the systemd unit it installs.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from tests.conftest import Result
from tests.notification_daemon import NotificationServer, PrivateBus, missing_tools

from optout_mail import providers, runstatus
from optout_mail.commands import service
from optout_mail.commands.configfile import render_config
from optout_mail.commands.state import now
from optout_mail.config import ACCOUNT_NAME, Account

CLI = Callable[..., Result]
ACCOUNT = """
[accounts.home]
host = "imap.example.org"
username = "alice@example.org"
password = "file-secret-123"
"""


def test_config_show_masks_secrets_and_names_where_each_value_came_from(
    cli: CLI, write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config("poll_interval = 120\n" + ACCOUNT)
    monkeypatch.setenv("OPTOUT_MAIL_ACCOUNTS__HOME__PASSWORD", "env-secret-456")
    monkeypatch.setenv("OPTOUT_MAIL_NOTIFICATIONS__SHOW_CODES", "false")
    result = cli("--config", str(config), "config", "show", "--json")
    assert result.status == 0, result.err
    values = {v["key"]: v for v in json.loads(result.out)["values"]}
    password = values["accounts.home.password"]
    assert password["value"] == "********"
    assert (password["source"], password["origin"]) == (
        "env",
        "OPTOUT_MAIL_ACCOUNTS__HOME__PASSWORD",
    )
    assert values["notifications.show_codes"]["value"] is False
    assert values["notifications.show_codes"]["origin"] == "OPTOUT_MAIL_NOTIFICATIONS__SHOW_CODES"
    assert (values["poll_interval"]["value"], values["poll_interval"]["source"]) == (120, "file")
    assert values["accounts.home.host"]["origin"] == str(config)
    assert values["accounts.home.timeout"]["source"] == "default"
    text = cli("--config", str(config), "config", "show")
    for shown in (result, text):
        assert "file-secret" not in shown.out + shown.err
        assert "env-secret" not in shown.out + shown.err
    assert "(env OPTOUT_MAIL_ACCOUNTS__HOME__PASSWORD)" in text.out


@pytest.fixture
def ledger_config(write_config: Callable[[str], Path], tmp_path: Path) -> Path:
    return write_config(f'data_dir = "{tmp_path / "data"}"\n')


def test_status_shows_requests_deadlines_and_what_is_due_next(
    cli: CLI, ledger_config: Path
) -> None:
    today = now().date()
    for platform, days_ago in (("instagram", 70), ("facebook", 5), ("threads", 12)):
        filed = (today - timedelta(days=days_ago)).isoformat()
        added = cli(
            "--config",
            str(ledger_config),
            "requests",
            "add",
            "--platform",
            platform,
            "--account",
            "alice@example.org",
            "--filed",
            filed,
        )
        assert added.status == 0, added.err
    report = json.loads(cli("--config", str(ledger_config), "status", "--json").out)
    by_platform = {r["platform"]: r for r in report["requests"]}
    assert by_platform["instagram"]["overdue"]
    assert by_platform["instagram"]["days_left"] < -30
    assert not by_platform["facebook"]["overdue"]
    assert 20 <= by_platform["facebook"]["days_left"] <= 26
    assert report["next_due"]["platform"] == "threads"
    assert report["daemon"]["running"] is False
    text = cli("--config", str(ledger_config), "status").out
    assert re.search(r"#1 +instagram +filed +filed on \S+ +overdue by \d+ day", text)
    assert "1 overdue" in text
    assert "Next: #3 threads" in text
    assert "Daemon: not running" in text


def test_status_reads_the_daemons_status_file_and_lock(
    cli: CLI, ledger_config: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with (data_dir / "run.lock").open("a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as `optout-mail run` holds it
        runstatus.started(data_dir, ["home/INBOX", "home/Junk"])
        runstatus.scanned("home/INBOX")
        runstatus.failed("home/Junk", "account home: 127.0.0.1:1 refused the connection")
        try:
            report = json.loads(cli("--config", str(ledger_config), "status", "--json").out)
            text = cli("--config", str(ledger_config), "status").out
        finally:
            runstatus.stopped()
    daemon = report["daemon"]
    assert daemon["running"] and daemon["pid"] == os.getpid()
    assert daemon["watched"] == ["home/INBOX", "home/Junk"]
    assert daemon["last_scan"] == "home/INBOX"
    assert daemon["last_error"]["where"] == "home/Junk"
    assert f"Daemon: running (pid {os.getpid()})" in text
    assert "refused the connection" in text
    assert not list(data_dir.glob(".status-*"))  # the temporary files were renamed


@pytest.fixture
def popups(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotificationServer]:
    if missing_tools():
        pytest.skip(str(missing_tools()))
    with NotificationServer() as server:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", server.address)
        yield server


@pytest.mark.desktop
def test_test_notify_shows_a_popup(cli: CLI, popups: NotificationServer) -> None:
    result = cli("test-notify")
    assert result.status == 0, result.err
    assert "✓ Delivered" in result.out
    (received,) = popups.received(min_count=1)
    assert received.summary == "optout-mail: test popup"


@pytest.mark.desktop
def test_test_notify_without_a_bus_or_a_server_says_what_to_do(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    result = cli("test-notify")
    assert result.status == 1
    assert "no session bus" in result.err
    assert "systemctl --user import-environment DBUS_SESSION_BUS_ADDRESS" in result.err
    if missing_tools():
        return
    with PrivateBus() as bus:  # a bus, but nobody serving notifications on it
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
        result = cli("test-notify")
    assert result.status == 1
    assert "ServiceUnknown" in result.err


def test_the_provider_table() -> None:
    assert providers.by_domain("gmail.com").host == "imap.gmail.com"  # type: ignore[union-attr]
    bridge = providers.by_domain("proton.me")
    assert bridge is not None
    assert (bridge.host, bridge.port, bridge.security, bridge.login) == (
        "127.0.0.1",
        1143,
        "starttls",
        "bridge",
    )
    assert providers.by_domain("hotmail.com").login == "oauth2"  # type: ignore[union-attr]
    assert providers.by_mx(["ASPMX.L.GOOGLE.COM."]).key == "gmail"  # type: ignore[union-attr]
    m365 = providers.by_mx(["example-org.mail.protection.outlook.com"])
    assert m365 is not None and m365.key == "microsoft365"
    assert providers.by_mx(["mx.example.org"]) is None
    assert providers.domain_of("Alice@Example.ORG") == "example.org"
    assert providers.domain_of("alice") == ""
    assert providers.account_name(None, "my-domain.example") == "my_domain"
    domains = [d for p in providers.PROVIDERS for d in p.domains]
    assert len(domains) == len(set(domains))
    for provider in providers.PROVIDERS:
        assert re.fullmatch(ACCOUNT_NAME, provider.key)
        assert provider.help_url.startswith("https://")
        assert provider.name in providers.login_advice(provider)


def test_generated_config_reads_back_and_writes_oauth2_as_text(tmp_path: Path) -> None:
    fields: dict[str, object] = {
        "host": "imap.example.org",
        "port": 993,
        "security": "tls",
        "username": 'a"b\\c@example.org',
        "password": 'p"w\\\n\t\x7f',
        "folders": ["INBOX", "Spam"],
    }
    data = tomllib.loads(render_config("home", fields, None))
    assert data["accounts"]["home"] == fields
    Account.model_validate(data["accounts"]["home"])
    outlook = providers.by_domain("outlook.com")
    oauth = {
        "host": "outlook.office365.com",
        "username": "bob@outlook.com",
        "auth": "xoauth2",
        "token_command": "oama access bob@outlook.com",
    }
    text = render_config("outlook", oauth, outlook)
    assert 'auth = "xoauth2"' in text
    assert 'token_command = "oama access bob@outlook.com"' in text
    assert "# Outlook.com / Hotmail needs OAuth2" in text


def test_the_unit_starts_this_program_with_the_config_given(tmp_path: Path) -> None:
    template = service.bundled_unit()
    assert template is not None
    program = ["/opt/my tools/bin/python", "-m", "optout_mail"]
    unit = service.render_unit(template.read_text(), program, tmp_path / "50% config.toml")
    (exec_start,) = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    assert exec_start == 'ExecStart="/opt/my tools/bin/python" -m optout_mail run'
    assert f'Environment="OPTOUT_MAIL_CONFIG={tmp_path}/50%% config.toml"' in unit
    assert "RestartPreventExitStatus=78" in unit  # the rest is the shipped unit


def test_service_install_is_skipped_without_systemctl_and_done_with_it(
    cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    installed, lines = service.install(None)
    assert not installed
    assert "systemctl is not installed" in lines[0]
    assert not service.user_unit_path().exists()

    calls = tmp_path / "calls"
    fake = bin_dir / "systemctl"  # records what it was asked, as a user manager would accept
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    installed, lines = service.install(tmp_path / "config.toml")
    assert installed, lines
    unit = service.user_unit_path()
    assert unit == isolated_home / ".config/systemd/user/optout-mail.service"
    assert "ExecStart=" in unit.read_text() and "OPTOUT_MAIL_CONFIG=" in unit.read_text()
    assert calls.read_text().splitlines() == [
        "--user show-environment",
        "--user daemon-reload",
        "--user enable --now optout-mail.service",
    ]
