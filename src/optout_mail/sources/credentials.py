"""Where an account's password comes from: the config or environment, a command, or the keyring.

Asked at connect time, never stored, never logged. Failures say which source failed and how to
fix it, without echoing what the command printed (it may be the secret itself).
"""

from __future__ import annotations

import shlex
import subprocess

from optout_mail.config import Account
from optout_mail.errors import AuthError

KEYRING_SERVICE = "optout-mail"
COMMAND_TIMEOUT = 60  # a password manager may wait for the user to unlock it


def password_for(name: str, account: Account) -> str:
    """The password of account `name`. Raises AuthError when no source yields one."""
    if account.password is not None:
        return account.password.get_secret_value()
    if account.password_command:
        return _from_command(name, account.password_command)
    return _from_keyring(name, account.username)


def _from_command(name: str, command: str | list[str]) -> str:
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    shown = " ".join(shlex.quote(a) for a in argv)
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
            f"account {name}: password_command {shown!r} not found",
            hint="give the full path of the program, or install it",
        ) from None
    except subprocess.TimeoutExpired:
        raise AuthError(
            f"account {name}: password_command {shown!r} gave no answer in {COMMAND_TIMEOUT} s",
            hint="is the password store locked?",
        ) from None
    if done.returncode != 0:
        raise AuthError(
            f"account {name}: password_command {shown!r} failed with status {done.returncode}",
            hint="run it by hand to see why",
        )
    lines = done.stdout.decode("utf-8", "replace").splitlines()
    if not lines or not lines[0]:
        raise AuthError(f"account {name}: password_command {shown!r} printed nothing")
    return lines[0]  # like `pass`: the password is the first line


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
