"""Configuration: TOML + environment layering, every problem listed, exit 78, no secret shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from optout_mail.config import load_config
from optout_mail.errors import ConfigError

GOOD = """
data_dir = "{data}"
poll_interval = 120

[notifications]
show_codes = false

[accounts.home]
host = "imap.example.org"
username = "alice@example.org"
password = "hunter2-secret"
"""


def test_toml_is_read_and_env_overrides_it(
    write_config: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(GOOD.format(data=tmp_path / "d"))
    monkeypatch.setenv("OPTOUT_MAIL_POLL_INTERVAL", "600")
    monkeypatch.setenv("OPTOUT_MAIL_ACCOUNTS__HOME__PASSWORD", "from-env")
    monkeypatch.setenv("OPTOUT_MAIL_ACCOUNTS__HOME__PORT", "1993")
    settings = load_config(path)
    assert settings.poll_interval == 600
    assert settings.notifications.show_codes is False
    account = settings.accounts["home"]
    assert account.password is not None and account.password.get_secret_value() == "from-env"
    assert account.host == "imap.example.org"  # merged, not replaced
    assert account.effective_port == 1993
    assert settings.ledger_path == tmp_path / "d" / "ledger.sqlite3"


def test_no_config_file_means_defaults(isolated_home: Path) -> None:
    settings = load_config(None)
    assert settings.accounts == {}
    assert settings.data_dir == isolated_home / ".local/share/optout-mail"


def test_config_path_from_environment(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTOUT_MAIL_CONFIG", str(write_config("poll_interval = 99")))
    assert load_config(None).poll_interval == 99


def test_every_problem_is_listed_without_secrets(
    write_config: Callable[[str], Path], tmp_path: Path
) -> None:
    path = write_config(
        """
        poll_intervall = 5
        [notifications]
        enabeld = true
        [accounts.Home]
        host = "imap.example.org"
        username = "alice@example.org"
        password = "hunter2-secret"
        [accounts.work]
        host = "mail.example.com"
        port = "not-a-port-hunter2"
        username = "alice@example.com"
        password = 12345
        security = "plain"
        ca_file = "/no/such/ca.pem"
        """.replace("\n        ", "\n")
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = "\n".join(caught.value.problems)
    assert "poll_intervall: unknown key (a typo?)" in problems
    assert "notifications.enabeld: unknown key (a typo?)" in problems
    assert "account name 'Home' must be lower-case" in problems
    assert "accounts.work.port:" in problems
    assert "accounts.work.password:" in problems
    assert "accounts.work.ca_file: no such file: /no/such/ca.pem" in problems
    assert f"(in {path})" in problems
    assert "hunter2" not in problems and "12345" not in problems
    assert len(caught.value.problems) >= 6


def test_plaintext_is_refused_beyond_loopback(write_config: Callable[[str], Path]) -> None:
    base = '[accounts.a]\nhost = "{host}"\nusername = "u"\npassword = "p"\nsecurity = "plain"\n'
    with pytest.raises(ConfigError, match="configuration has 1 problem") as caught:
        load_config(write_config(base.format(host="imap.example.org")))
    assert "sends the password unencrypted" in caught.value.problems[0]
    assert load_config(write_config(base.format(host="127.0.0.1"))).accounts["a"]
    allowed = base.format(host="imap.example.org") + "allow_plaintext = true\n"
    assert load_config(write_config(allowed)).accounts["a"].allow_plaintext


def test_an_account_needs_a_password_source(write_config: Callable[[str], Path]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config('[accounts.a]\nhost = "h"\nusername = "u"\n'))
    assert "no password given" in caught.value.problems[0]


def test_env_problems_name_the_variable(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPTOUT_MAIL_POLL_INTERVAL", "often")
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(""))
    assert "(from the environment, OPTOUT_MAIL_POLL_INTERVAL)" in caught.value.problems[0]


def test_toml_syntax_error_names_the_file(write_config: Callable[[str], Path]) -> None:
    path = write_config("poll_interval = = 3")
    with pytest.raises(ConfigError, match=f"{path} is not valid TOML"):
        load_config(path)


def test_named_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_world_readable_config_with_password_warns(
    write_config: Callable[[str], Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(GOOD.format(data=tmp_path))
    path.chmod(0o644)
    load_config(path)
    assert "chmod 600" in caplog.text
