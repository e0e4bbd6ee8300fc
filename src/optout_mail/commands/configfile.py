"""The config file `init` writes: TOML text for one account, written atomically with mode
0600 (a new folder 0700) once `load_config` accepts it, and the password's place: the system
keyring when there is one, else the file, which the user is told.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from optout_mail.commands.state import now
from optout_mail.errors import ConfigError

if TYPE_CHECKING:
    from optout_mail.providers import MailProvider


def toml_value(value: object) -> str:
    """A TOML literal for a string, bool, int, path or list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    text = str(value)
    escaped = "".join(
        {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}.get(c)
        or (f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c)
        for c in text
    )
    return f'"{escaped}"'


def render_config(name: str, fields: dict[str, object], provider: MailProvider | None) -> str:
    """The config file `init` writes: notifications on, one account."""
    from optout_mail.providers import login_advice

    lines = [
        "# optout-mail configuration, written by `optout-mail init` on "
        f"{now().date().isoformat()}.",
        "# Every key is explained in the README (section Configure); check it with",
        "# `optout-mail doctor`.",
        "",
        "[notifications]",
        "enabled = true",
        "show_codes = true            # put one-time codes in the popup",
        "",
        f"[accounts.{name}]",
    ]
    if provider is not None:
        lines.append(f"# {login_advice(provider)}")
    lines += [f"{key} = {toml_value(value)}" for key, value in fields.items()]
    return "\n".join(lines) + "\n"


def write_config(path: Path, text: str) -> None:
    """Write `text` to `path` (0600; a new folder 0700), after `load_config` accepted it."""
    from optout_mail.config import load_config

    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
    temp = folder / f".{path.name}.{os.getpid()}.tmp"
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        load_config(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def keyring_usable() -> bool:
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        return not isinstance(backend, fail.Keyring) and float(backend.priority) > 0
    except Exception:  # a broken backend: as good as none
        return False


def store_in_keyring(username: str, secret: str) -> str | None:
    """Keep the password in the system keyring; the problem when that fails."""
    from optout_mail.sources.credentials import KEYRING_SERVICE

    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, username, secret)
    except Exception as exc:  # backends raise their own, undocumented types
        return f"the keyring refused it ({type(exc).__name__})"
    return None


def keep_secret(
    fields: dict[str, object], username: str, secret: str, use_keyring: bool | None, path: Path
) -> None:
    if use_keyring is not False and (use_keyring or keyring_usable()):
        problem = store_in_keyring(username, secret)
        if problem is None:
            fields["keyring"] = True
            click.echo("✓ The password is in the system keyring, not in the config file.")
            return
        if use_keyring:
            raise ConfigError(
                f"cannot store the password in the keyring: {problem}",
                hint="unlock the keyring, or use --no-keyring",
            )
        click.echo(f"! Cannot use the keyring: {problem}.")
    fields["password"] = secret
    click.echo(
        f"! The password is stored in {path}, readable only by you (mode 0600). To keep it out "
        "of the file, use a keyring or --password-command."
    )
