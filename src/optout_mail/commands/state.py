"""What the global options leave for the commands: the config path, verbosity, and the
settings and rule packs loaded on first use (so that `--help` loads neither). Also the clock
and the JSON line printer every command shares.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from optout_mail.config import Settings
    from optout_mail.errors import ConfigError
    from optout_mail.rules import RuleSet


class State:
    """What the global options leave for the commands; config is loaded on first use."""

    def __init__(
        self, config_path: Path | None, verbose: int, data_dir: Path | None = None
    ) -> None:
        self.config_path = config_path
        self.verbose = verbose
        self.data_dir = data_dir  # --data-dir: overrides the config file and the environment
        self._settings: Settings | None = None
        self._rules: RuleSet | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from optout_mail.config import load_config

            settings = load_config(self.config_path)
            if self.data_dir is not None:
                settings = settings.model_copy(update={"data_dir": self.data_dir.expanduser()})
            self._settings = settings
        return self._settings

    def no_accounts(self) -> ConfigError:
        """The error for a command that needs an account when the config has none: which file
        was read (or looked for), and how to create one."""
        import os

        from optout_mail.config import resolve_config_path
        from optout_mail.errors import ConfigError

        path, _ = resolve_config_path(self.config_path, os.environ)
        if not path.is_file():
            return ConfigError(
                f"no config file: looked for {path}",
                hint="create it with `optout-mail init` (your address, server and password), "
                "or name another with --config; to try optout-mail on local mail: "
                "optout-mail scan --source PATH",
            )
        return ConfigError(
            f"{path} configures no account",
            hint="add one with `optout-mail init --force`, or an [accounts.NAME] table (see "
            "the README); to scan local mail: optout-mail scan --source PATH",
        )

    def rules(self) -> RuleSet:
        if self._rules is None:
            from optout_mail.rules import load_rule_set

            self._rules = load_rule_set(self.settings().rules_dirs)
        return self._rules

    def load_fresh(self) -> tuple[Settings, RuleSet]:
        """Read the config and the rules again (the daemon does on start and on SIGHUP)."""
        self._settings = self._rules = None
        return self.settings(), self.rules()


pass_state = click.make_pass_decorator(State)


def now() -> datetime:
    return datetime.now(UTC)


def print_json_line(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


TRUST_OPTION = click.option(
    "--trust",
    "trust_ids",
    multiple=True,
    metavar="ID",
    help="Believe the Authentication-Results of this authserv-id (e.g. mx.example.org, or "
    "*.example.org; repeatable). Default: the known providers, else the receiving server.",
)


def authserv_ids(values: tuple[str, ...]) -> tuple[str, ...]:
    """The `--trust` values, checked. Raises UsageError for one that is not a host name."""
    import re

    from optout_mail.config import AUTHSERV_ID
    from optout_mail.errors import UsageError

    for value in values:
        if value and not re.fullmatch(AUTHSERV_ID, value):
            raise UsageError(
                f"--trust {value!r} is not an authserv-id",
                hint="give a host name like mx.example.org or a pattern like *.example.org",
            )
    return tuple(v.lower() for v in values)
