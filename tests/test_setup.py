"""`init` and `doctor` as a user meets them: a private Dovecot on loopback, a real notification
server on a private D-Bus session, a real `optout-mail run` process holding its lock.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest
from tests.conftest import Result, make_mail
from tests.imapserver import Dovecot, dovecot_available
from tests.notification_daemon import NotificationServer, missing_tools

from optout_mail.config import load_config

pytestmark = pytest.mark.imap

if not dovecot_available():
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the IMAP tests: install dovecot-imapd (see .ci/run)")
    pytest.skip("needs Debian dovecot-imapd and openssl", allow_module_level=True)

CLI = Callable[..., Result]
_names = (f"setup{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with Dovecot() as srv:
        yield srv


@pytest.fixture
def user(server: Dovecot) -> str:
    name = next(_names)
    server.add_user(name, f"pw-{name}-secret")
    return name


@pytest.fixture(autouse=True)
def no_user_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No systemd user manager and no session bus, whatever the machine running the tests has."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)


class DictKeyring(keyring.backend.KeyringBackend):
    """A keyring in memory, standing in for the desktop's Secret Service."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.secrets.pop((service, username), None)


def init(
    cli: CLI,
    monkeypatch: pytest.MonkeyPatch,
    server: Dovecot,
    user: str,
    config: Path,
    *extra: str,
    password: str | None = None,
) -> Result:
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{password or f'pw-{user}-secret'}\n"))
    return cli(
        "--config",
        str(config),
        "init",
        "--address",
        f"{user}@example.org",
        "--host",
        server.host,
        "--port",
        str(server.tls_port),
        "--security",
        "tls",
        "--ca-file",
        str(server.ca_file),
        "--username",
        user,
        "--password-stdin",
        "--no-service",
        "--yes",
        *extra,
    )


def doctor(cli: CLI, config: Path) -> tuple[int, dict[str, dict[str, object]]]:
    result = cli("--config", str(config), "doctor", "--json")
    return result.status, {c["check"]: c for c in json.loads(result.out)}


def test_init_unattended_writes_a_config_that_scan_uses(
    server: Dovecot, user: str, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "conf" / "config.toml"
    result = init(
        cli,
        monkeypatch,
        server,
        user,
        config,
        "--no-keyring",
        "--filed",
        "instagram:2025-05-20",
        "--filed",
        "facebook:2025-06-02",
    )
    assert result.status == 0, result.err
    assert f"Logged in to {server.host} as {user}" in result.out
    assert "Junk folder: Junk" in result.out
    assert f"The password is stored in {config}" in result.out  # it says so
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    settings = load_config(config)
    account = settings.accounts["example"]
    assert (account.host, account.effective_port, account.security) == (
        server.host,
        server.tls_port,
        "tls",
    )
    assert account.address == f"{user}@example.org"
    assert account.folders is None  # INBOX + the \Junk folder the server flags

    server.append(user, "Junk", make_mail(to=f"{user}@example.org"))
    scan = cli("--config", str(config), "scan", "--json")
    assert scan.status == 0, scan.err
    assert json.loads(scan.out)["recorded"] == 1
    requests = json.loads(cli("--config", str(config), "requests", "list", "--json").out)
    states = {(r["platform"], r["filed_at"][:10]): r["state"] for r in requests}
    assert states[("instagram", "2025-05-20")] == "filed"
    assert ("facebook", "2025-06-02") in states
    assert "honoured" in states.values()


def test_init_refuses_to_overwrite_and_a_refused_login_writes_nothing(
    server: Dovecot, user: str, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("# mine\n")
    refused = init(cli, monkeypatch, server, user, config, "--no-keyring")
    assert refused.status == 2
    assert "--force" in refused.err
    assert config.read_text() == "# mine\n"

    wrong = init(
        cli, monkeypatch, server, user, config, "--no-keyring", "--force", password="not-it"
    )
    assert wrong.status == 1
    assert "refused the login" in wrong.err
    assert "not-it" not in wrong.out + wrong.err
    assert config.read_text() == "# mine\n"


def test_init_keeps_the_password_in_the_keyring(
    server: Dovecot, user: str, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = keyring.get_keyring()
    backend = DictKeyring()
    keyring.set_keyring(backend)
    try:
        config = tmp_path / "config.toml"
        result = init(cli, monkeypatch, server, user, config)
        assert result.status == 0, result.err
        assert "in the system keyring" in result.out
        assert "secret" not in config.read_text()
        assert backend.secrets == {("optout-mail", user): f"pw-{user}-secret"}
        assert load_config(config).accounts["example"].keyring
        assert cli("--config", str(config), "scan").status == 0
    finally:
        keyring.set_keyring(previous)


def test_init_without_a_keyring_refuses_when_told_to_use_one(
    server: Dovecot, user: str, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        result = init(cli, monkeypatch, server, user, tmp_path / "config.toml", "--keyring")
    finally:
        keyring.set_keyring(previous)
    assert result.status == 78
    assert "keyring" in result.err
    assert not (tmp_path / "config.toml").exists()


@pytest.fixture
def configured(
    server: Dovecot, user: str, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    config = tmp_path / "config.toml"
    assert init(cli, monkeypatch, server, user, config, "--no-keyring").status == 0
    return config


@pytest.mark.desktop
@pytest.mark.slow
@pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools()))
def test_doctor_all_green_with_the_daemon_running_and_status_shows_it(
    configured: Path, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with NotificationServer() as popups:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", popups.address)
        data_dir = load_config(configured).data_dir
        log = (tmp_path / "daemon.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "optout_mail", "--config", str(configured), "run"],
            env=os.environ.copy(),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not (data_dir / "status.json").exists():
                assert daemon.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            status, checks = doctor(cli, configured)
            assert status == 0, checks
            assert all(c["ok"] for c in checks.values())
            assert {
                "config",
                "config file mode",
                "example: connection",
                "example: TLS",
                "example: login",
                "example: folders",
                "example: Junk",
                "rule packs",
                "ledger",
                "notification bus",
                "notification server",
                "systemd unit",
                "daemon",
            } <= set(checks)
            assert "TLS" in str(checks["example: TLS"]["detail"])
            assert f"pid {daemon.pid}" in str(checks["daemon"]["detail"])
            shown = cli("--config", str(configured), "status", "--json")
            running = json.loads(shown.out)["daemon"]
            assert running["running"] and running["pid"] == daemon.pid
            assert running["watched"] == ["example/INBOX", "example/Junk"]
        finally:
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=10) == 0
            log.close()
    stopped = json.loads(cli("--config", str(configured), "status", "--json").out)["daemon"]
    assert not stopped["running"]
    assert stopped["stopped_at"] and stopped["last_scan_at"]
    text = cli("--config", str(configured), "status").out
    assert "Daemon: not running (stopped" in text


def test_doctor_red_with_the_fix_for_a_wrong_password_and_a_stopped_server(
    configured: Path, server: Dovecot, cli: CLI
) -> None:
    text = configured.read_text()
    configured.write_text(text.replace('password = "pw-', 'password = "wrong-'))
    status, checks = doctor(cli, configured)
    assert status == 1
    assert checks["example: connection"]["ok"] and checks["example: TLS"]["ok"]
    login = checks["example: login"]
    assert not login["ok"]
    assert "refused the login" in str(login["detail"])
    assert "password" in str(login["fix"])
    assert "wrong-" not in json.dumps(checks)
    assert not checks["daemon"]["ok"] and "optout-mail run" in str(checks["daemon"]["fix"])

    configured.write_text(text)
    server.stop()
    try:
        status, checks = doctor(cli, configured)
    finally:
        server.start()
    assert status == 1
    connection = checks["example: connection"]
    assert not connection["ok"]
    assert "refused the connection" in str(connection["detail"])
    assert "port" in str(connection["fix"])
    assert "example: login" not in checks

    human = cli("--config", str(configured), "doctor")
    assert human.status == 1
    assert "✓ example: login" in human.out
    assert "✗ notification bus" in human.out
    assert "import-environment DBUS_SESSION_BUS_ADDRESS" in human.out


def test_doctor_flags_a_readable_password_file_and_a_broken_config(
    configured: Path, cli: CLI, write_config: Callable[[str], Path]
) -> None:
    configured.chmod(0o644)
    status, checks = doctor(cli, configured)
    assert status == 1
    assert not checks["config file mode"]["ok"]
    assert checks["config file mode"]["fix"] == f"chmod 600 {configured}"

    broken = write_config("poll_interval = 1\n")
    result = cli("--config", str(broken), "doctor", "--json")
    assert result.status == 78
    (check,) = json.loads(result.out)
    assert check["check"] == "config" and not check["ok"]
    assert "poll_interval" in check["detail"]
