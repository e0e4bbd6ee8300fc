"""Where an account's secret comes from: a password (the config or environment, a command, the
keyring) or an OAuth2 access token (the user's token helper, `token_command`).

Asked at every connect and reconnect, never stored, never logged: access tokens live an hour,
so only the helper knows a valid one. Failures say which source failed and how to fix it,
without echoing what the command printed (it may be the secret itself).
"""

from __future__ import annotations

import shlex
import subprocess

from optout_mail.config import Account
from optout_mail.errors import AuthError

KEYRING_SERVICE = "optout-mail"
COMMAND_TIMEOUT = 60  # a password manager may wait for the user to unlock it


def secret_for(name: str, account: Account) -> str:
    """What account `name` logs in with: a fresh access token for OAuth2, else the password."""
    return token_for(name, account) if account.uses_oauth2 else password_for(name, account)


def password_for(name: str, account: Account) -> str:
    """The password of account `name`. Raises AuthError when no source yields one."""
    if account.password is not None:
        return account.password.get_secret_value()
    if account.password_command:
        return _from_command(name, "password_command", account.password_command)
    return _from_keyring(name, account.username)


def token_for(name: str, account: Account) -> str:
    """A fresh OAuth2 access token of account `name`, from its `token_command` (run every time:
    the helper refreshes the token when it expires). Raises AuthError when the command fails."""
    if not account.token_command:
        raise AuthError(f"account {name}: auth = {account.auth!r} needs a token_command")
    return _from_command(name, "token_command", account.token_command).strip()


def _from_command(name: str, key: str, command: str | list[str]) -> str:
    argv = _argv(command)
    shown = shown_command(command)
    by_hand = f"run it by hand to see why: {shown}"
    if not argv:
        raise AuthError(f"account {name}: {key} is empty", hint=f"set {key} in the config")
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise AuthError(
            f"account {name}: {key} {shown!r} not found",
            hint="give the full path of the program, or install it",
        ) from None
    except OSError as exc:
        raise AuthError(
            f"account {name}: {key} {shown!r} cannot be started ({exc.strerror})",
            hint="check that the program is executable",
        ) from None
    except subprocess.TimeoutExpired:
        raise AuthError(
            f"account {name}: {key} {shown!r} gave no answer in {COMMAND_TIMEOUT} s",
            hint=f"is the password store locked, or does it wait for a browser? {by_hand}",
        ) from None
    if done.returncode != 0:
        raise AuthError(
            f"account {name}: {key} {shown!r} failed with status {done.returncode}",
            hint=by_hand,
        )
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    if not lines or not lines[0].strip():
        raise AuthError(f"account {name}: {key} {shown!r} printed nothing", hint=by_hand)
    return lines[0]  # like `pass`: the secret is the first line


def shown_command(command: str | list[str]) -> str:
    """A command as the user would type it in a shell."""
    return " ".join(shlex.quote(a) for a in _argv(command))


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def _from_keyring(name: str, username: str) -> str:
    try:
        import keyring
        import keyring.errors

        secret = keyring.get_password(KEYRING_SERVICE, username)
    except Exception as exc:  # keyring backends raise their own, undocumented types
        raise AuthError(
            f"account {name}: the system keyring cannot be read ({type(exc).__name__})",
            hint="unlock the keyring, or use password_command instead",
        ) from None
    if not secret:
        raise AuthError(
            f"account {name}: no password for {username} in the system keyring",
            hint=f"store it with: keyring set {KEYRING_SERVICE} {username}",
        )
    return str(secret)
