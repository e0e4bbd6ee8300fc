"""OAuth2 accounts (`auth = "xoauth2"` / `"oauthbearer"`) against a real, private Dovecot.

Dovecot's oauth2 passdb checks every bearer token at a loopback introspection endpoint
(tests/oauth2server.py) that issues, expires and revokes tokens like a provider would; the
account's token_command is a small helper that asks that endpoint for the current token.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.conftest import SAMPLES, Result
from tests.imapserver import Dovecot, dovecot_available
from tests.oauth2server import TokenEndpoint

pytestmark = pytest.mark.imap

if not dovecot_available():
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the IMAP tests: install dovecot-imapd (see .ci/run)")
    pytest.skip("needs Debian dovecot-imapd and openssl", allow_module_level=True)

CLI = Callable[..., Result]
_names = (f"oauth{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def endpoint() -> Iterator[TokenEndpoint]:
    with TokenEndpoint() as token_endpoint:
        yield token_endpoint


@pytest.fixture(scope="module")
def server(endpoint: TokenEndpoint) -> Iterator[Dovecot]:
    with Dovecot(oauth2_url=endpoint.introspection_url) as srv:
        yield srv


@pytest.fixture
def user(server: Dovecot, endpoint: TokenEndpoint) -> str:
    name = next(_names)
    server.add_user(name, f"pw-{name}-unused")
    endpoint.issue(name)
    server.append(name, "INBOX", (SAMPLES / "meta/en/honoured-uk.eml").read_bytes())
    return name


def helper_script(tmp_path: Path, body: str) -> Path:
    """An executable token helper: a Python script whose stdout is the token."""
    script = tmp_path / "token-helper"
    script.write_text(f"#!{sys.executable}\nimport sys, urllib.request\n{body}\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def account(server: Dovecot, user: str, write_config: Callable[[str], Path]) -> Callable[..., Path]:
    def config(token_command: str | list[str], *, auth: str = "xoauth2", port: int = 0) -> Path:
        return write_config(
            "[notifications]\nenabled = false\n[accounts.home]\n"
            f'host = "{server.host}"\nport = {port or server.port}\nsecurity = "plain"\n'
            f'username = "{user}"\nauth = "{auth}"\ntoken_command = {json.dumps(token_command)}\n'
            "timeout = 5\n"
        )

    return config


def logins(server: Dovecot, user: str) -> list[str]:
    """Dovecot's log lines of `user`'s token logins (the test helpers log in with PLAIN)."""
    return [
        line
        for line in server.log_lines()
        if f"Login: user=<{user}>" in line and "method=PLAIN" not in line
    ]


def test_an_xoauth2_account_scans_with_a_token_command_script(
    server: Dovecot,
    endpoint: TokenEndpoint,
    user: str,
    cli: CLI,
    account: Callable[..., Path],
    tmp_path: Path,
) -> None:
    script = helper_script(tmp_path, "print(urllib.request.urlopen(sys.argv[1]).read().decode())")
    config = account(f"{script} {endpoint.token_url(user)}")
    result = cli("--config", str(config), "scan", "--json")
    assert result.status == 0, result.err
    assert json.loads(result.out)["recorded"] == 1
    (login,) = logins(server, user)
    assert "method=XOAUTH2" in login
    token = endpoint.tokens_handed_out(user)[-1]
    assert (token, True) in endpoint.introspections
    assert token not in result.out + result.err
    # A second scan runs the helper again: a token is never kept between connections.
    assert cli("--config", str(config), "scan", "--json").status == 0
    assert len(endpoint.tokens_handed_out(user)) == 2


def test_an_oauthbearer_account_with_an_argv_token_command(
    server: Dovecot, endpoint: TokenEndpoint, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    config = account(endpoint.helper_argv(user), auth="oauthbearer")
    result = cli("--config", str(config), "scan", "--json")
    assert result.status == 0, result.err
    assert json.loads(result.out)["recorded"] == 1
    assert "method=OAUTHBEARER" in logins(server, user)[0]


def test_an_expired_token_is_replaced_by_a_fresh_one_at_once(
    server: Dovecot, endpoint: TokenEndpoint, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    """The helper still hands out its cached token once, but the provider already revoked it:
    the server refuses it, the token_command is asked again and the login goes through."""
    stale = endpoint.issue(user)
    endpoint.expire(user, stale_hand_outs=1)
    result = cli("--config", str(account(endpoint.helper_argv(user))), "scan", "--json")
    assert result.status == 0, result.err
    stale_again, fresh = endpoint.tokens_handed_out(user)
    assert stale_again == stale and fresh != stale
    assert (stale, False) in endpoint.introspections and (fresh, True) in endpoint.introspections
    assert len(logins(server, user)) == 1


def test_a_token_refused_twice_is_a_clear_error(
    user: str, cli: CLI, account: Callable[..., Path], tmp_path: Path
) -> None:
    script = helper_script(tmp_path, "print('ya29.not-valid-anywhere')")
    result = cli("--config", str(account(str(script))), "scan")
    assert result.status == 1
    assert "account home: the access token was refused (expired?)" in result.err
    assert "https://mail.google.com/" in result.err and str(script) in result.err
    assert "not-valid-anywhere" not in result.out + result.err
    assert "Traceback" not in result.err


def test_a_failing_token_command_names_the_account_and_the_command(
    user: str, cli: CLI, account: Callable[..., Path], tmp_path: Path
) -> None:
    script = helper_script(
        tmp_path,
        "print('ya29.half-a-token')\n"
        "print('error: the refresh token was revoked', file=sys.stderr)\nsys.exit(3)",
    )
    result = cli("--config", str(account([str(script), "--account", user])), "scan")
    assert result.status == 1
    assert f"account home: token_command '{script} --account {user}' failed with status 3" in (
        result.err
    )
    assert "run it by hand" in result.err
    assert "half-a-token" not in result.out + result.err
    assert "refresh token was revoked" not in result.err  # its stderr is the user's to read


def test_a_token_command_that_does_not_exist(
    user: str, cli: CLI, account: Callable[..., Path], tmp_path: Path
) -> None:
    result = cli("--config", str(account(str(tmp_path / "no-such-helper"))), "scan")
    assert result.status == 1
    assert "account home: token_command" in result.err and "not found" in result.err


def test_a_server_without_oauth2_says_so(
    endpoint: TokenEndpoint, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    with Dovecot() as password_only:
        config = account(endpoint.helper_argv(user), port=password_only.port)
        result = cli("--config", str(config), "scan")
    assert result.status == 1
    assert "does not offer XOAUTH2 logins" in result.err
    assert endpoint.tokens_handed_out(user) == []  # no token fetched for nothing


def test_the_secret_source_is_chosen_by_auth(
    endpoint: TokenEndpoint, user: str, account: Callable[..., Path]
) -> None:
    from optout_mail.config import load_config
    from optout_mail.sources.credentials import secret_for

    settings = load_config(account(endpoint.helper_argv(user)))
    token = secret_for("home", settings.accounts["home"])
    assert token == endpoint.tokens_handed_out(user)[-1]
