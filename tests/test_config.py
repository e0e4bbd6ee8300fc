"""Configuration: TOML + environment layering, every problem listed, exit 78, no secret shown."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import Result

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
    assert "poll_intervall: unknown key (did you mean poll_interval?)" in problems
    assert "notifications.enabeld: unknown key (did you mean enabled?)" in problems
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


OAUTH2 = '[accounts.gmail]\nhost = "imap.gmail.com"\nusername = "alice@gmail.com"\n'


def test_oauth2_accounts_take_a_token_command_as_string_or_argv(
    write_config: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = OAUTH2 + 'auth = "xoauth2"\ntoken_command = "oama access alice@gmail.com"\n'
    account = load_config(write_config(text)).accounts["gmail"]
    assert (account.auth, account.uses_oauth2) == ("xoauth2", True)
    assert account.token_command == "oama access alice@gmail.com"
    argv = OAUTH2 + 'auth = "oauthbearer"\ntoken_command = ["mutt_oauth2.py", "tokens"]\n'
    assert load_config(write_config(argv)).accounts["gmail"].token_command == [
        "mutt_oauth2.py",
        "tokens",
    ]
    password = load_config(write_config(GOOD.format(data="d"))).accounts["home"]
    assert (password.auth, password.uses_oauth2) == ("password", False)
    gcloud = "gcloud auth print-access-token"
    monkeypatch.setenv("OPTOUT_MAIL_ACCOUNTS__GMAIL__TOKEN_COMMAND", gcloud)
    from_env = load_config(write_config(OAUTH2 + 'auth = "xoauth2"\n')).accounts["gmail"]
    assert from_env.token_command == gcloud


def test_oauth2_problems_are_all_listed(
    write_config: Callable[[str], Path], cli: Callable[..., Result]
) -> None:
    path = write_config(
        OAUTH2.replace("imap.gmail.com", "imap.example.org")
        + 'auth = "xoauth2"\nsecurity = "plain"\npassword = "hunter2-secret"\nkeyring = true\n'
    )
    result = cli("--config", str(path), "scan")
    assert result.status == 78
    assert "the configuration has 3 problems" in result.err
    assert "sends the access token unencrypted to imap.example.org" in result.err
    assert 'accounts.gmail: auth = "xoauth2" needs token_command' in result.err
    assert "not a password: remove password and keyring" in result.err
    assert "hunter2" not in result.err + result.out


def test_a_token_command_needs_an_oauth2_auth_and_auth_is_checked(
    write_config: Callable[[str], Path],
) -> None:
    with pytest.raises(ConfigError, match="1 problem") as caught:
        load_config(write_config(OAUTH2 + 'token_command = "oama access alice@gmail.com"\n'))
    assert 'token_command is only used with auth = "xoauth2"' in caught.value.problems[0]
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(OAUTH2 + 'auth = "oauth2"\ntoken_command = "x"\n'))
    assert caught.value.problems[0].startswith("accounts.gmail.auth: Input should be")
