"""The configuration: a TOML file plus `OPTOUT_MAIL_*` environment variables (pydantic-settings).

Loaded once, at the edge, by `load_config`; everything below receives values. Every problem is
reported at once as a `ConfigError` that names the key and where it came from, never a secret.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import stat
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from optout_mail.errors import ConfigError

log = logging.getLogger(__name__)

APP_NAME = "optout-mail"
ENV_PREFIX = "OPTOUT_MAIL_"
CONFIG_ENV = "OPTOUT_MAIL_CONFIG"
ACCOUNT_NAME = r"^[a-z0-9]+(_[a-z0-9]+)*$"
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
AUTHSERV_ID = rf"(\*\.)?{_LABEL}(\.{_LABEL})*"  # a host name, or *.suffix
DEFAULT_SINCE = date(2024, 5, 1)  # Meta's first objection wave started in May 2024
PROBLEM_SEPARATOR = "\n"  # one validator's several problems, listed one by one


def default_config_path() -> Path:
    from platformdirs import user_config_path

    return user_config_path(APP_NAME) / "config.toml"


def default_data_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path(APP_NAME)


class Account(BaseModel):
    """One IMAP account, keyed by a lower-case name in `[accounts.NAME]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    security: Literal["tls", "starttls", "plain"] = "tls"
    allow_plaintext: bool = False  # plaintext IMAP beyond loopback, for people who must
    username: Annotated[str, Field(min_length=1)]
    auth: Literal["password", "xoauth2", "oauthbearer"] = "password"
    password: SecretStr | None = None
    password_command: str | list[str] | None = None
    keyring: bool = False  # look the password up in the system keyring (service "optout-mail")
    token_command: str | list[str] | None = None  # xoauth2/oauthbearer: prints an access token
    address: str | None = None  # the address Meta writes to, when it is not the username
    folders: list[str] | None = None  # default: INBOX plus the server's \Junk folder
    ca_file: Path | None = None
    since: date = DEFAULT_SINCE  # how far back the first scan of a folder looks
    timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    # Authserv-ids whose Authentication-Results to believe (exact, or "*.suffix"; "" is the
    # header without an id that Microsoft writes). Default: known providers, else learned.
    trusted_authserv_ids: list[str] = Field(default_factory=list)

    @field_validator("trusted_authserv_ids")
    @classmethod
    def _check_authserv_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if item and not re.fullmatch(AUTHSERV_ID, item):
                raise ValueError(
                    f"{item!r} is not an authserv-id: give a host name like mx.example.org, "
                    'a pattern like *.example.org, or "" for Microsoft\'s header without one'
                )
        return [item.lower() for item in value]

    @field_validator("ca_file")
    @classmethod
    def _ca_file_exists(cls, value: Path | None) -> Path | None:
        if value is not None:
            value = value.expanduser()
            if not value.is_file():
                raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _check_credentials(self) -> Account:
        problems = []
        secret = "the access token" if self.uses_oauth2 else "the password"
        if self.security == "plain" and not self.allow_plaintext and not _is_loopback(self.host):
            problems.append(
                f'security = "plain" sends {secret} unencrypted to {self.host}; use tls or '
                "starttls, or set allow_plaintext = true if you really mean it"
            )
        if self.uses_oauth2:
            problems.extend(self._oauth2_problems())
        elif self.token_command:
            problems.append(
                'token_command is only used with auth = "xoauth2" or "oauthbearer"; '
                "set auth, or remove token_command"
            )
        elif self.password is None and not self.password_command and not self.keyring:
            problems.append(
                "no password given: set password, password_command or keyring = true "
                "(or the environment variable OPTOUT_MAIL_ACCOUNTS__<NAME>__PASSWORD), "
                'or auth = "xoauth2" with a token_command'
            )
        if problems:
            raise ValueError(PROBLEM_SEPARATOR.join(problems))
        return self

    def _oauth2_problems(self) -> list[str]:
        problems = []
        if not self.token_command:
            problems.append(
                f'auth = "{self.auth}" needs token_command, the command that prints a fresh '
                'access token (e.g. token_command = "oama access alice@gmail.com")'
            )
        given = [
            key
            for key, value in (
                ("password", self.password is not None),
                ("password_command", bool(self.password_command)),
                ("keyring", self.keyring),
            )
            if value
        ]
        if given:
            problems.append(
                f'auth = "{self.auth}" logs in with an access token, not a password: remove '
                f"{' and '.join(given)}"
            )
        return problems

    @property
    def uses_oauth2(self) -> bool:
        """Logs in with an OAuth2 access token (SASL XOAUTH2 or OAUTHBEARER)."""
        return self.auth != "password"

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 993 if self.security == "tls" else 143


class Notifications(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    show_codes: bool = True  # put one-time codes in the popup


class Settings(BaseSettings):
    """Everything optout-mail can be told. Field names are the TOML keys."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    poll_interval: Annotated[int, Field(ge=30, le=86400)] = 300
    rules_dirs: list[Path] = Field(default_factory=list)
    notifications: Notifications = Notifications()
    # Names are checked as keys, so that a bad name and the account's own problems are all
    # reported together.
    accounts: dict[Annotated[str, Field(pattern=ACCOUNT_NAME)], Account] = Field(
        default_factory=dict
    )

    @field_validator("data_dir")
    @classmethod
    def _expand_data_dir(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("rules_dirs")
    @classmethod
    def _expand_rules_dirs(cls, value: list[Path]) -> list[Path]:
        return [p.expanduser() for p in value]

    @property
    def ledger_path(self) -> Path:
        return self.data_dir / "ledger.sqlite3"


def resolve_config_path(explicit: Path | None, env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read and whether the user named it (then it must exist)."""
    if explicit is not None:
        return explicit.expanduser(), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser(), True
    return default_config_path(), False


def load_config(explicit: Path | None = None) -> Settings:
    """Read the TOML file and the environment. Raises ConfigError listing every problem."""
    env = os.environ
    path, named = resolve_config_path(explicit, env)
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path} is not valid TOML",
                problems=[str(exc)],
                hint="fix the syntax at the line and column shown",
            ) from None
        except OSError as exc:
            raise ConfigError(f"{path} cannot be read: {exc.strerror}") from None
        _warn_if_readable_by_others(path, data)
    elif named:
        raise ConfigError(
            f"config file {path} does not exist",
            hint="create it (see the README, section Configuration) or leave --config out",
        )
    toml_file = path if path.is_file() else None

    class _Loaded(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if toml_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
            return tuple(sources)

    try:
        loaded = _Loaded()
    except ValidationError as exc:
        problems = [
            problem
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
            for problem in _describe(error, data, env, toml_file)
        ]
        raise ConfigError(
            f"the configuration has {len(problems)} problem{'s' if len(problems) > 1 else ''}",
            problems=problems,
            hint=f"fix the keys above in {path} or in the environment, then run the command again"
            if toml_file is not None
            else "fix the environment variables above, then run the command again",
        ) from None
    return Settings.model_construct(
        **{name: getattr(loaded, name) for name in Settings.model_fields}
    )


def _describe(
    error: Any, data: Mapping[str, Any], env: Mapping[str, str], toml_file: Path | None
) -> list[str]:
    """One line per problem of a pydantic error: the key, what is wrong, where it was set."""
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc) or "(top level)"
    env_name = ENV_PREFIX + "__".join(part.upper() for part in loc if part != "[key]")
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        guess = _closest_key(loc)
        message = f"unknown key (did you mean {guess}?)" if guess else "unknown key (a typo?)"
    if loc and loc[-1] == "[key]" and loc[0] == "accounts":
        key = f"accounts.{loc[1]}"
        message = (
            f"account name {loc[1]!r} must be lower-case letters and digits, words joined by "
            "single underscores (environment variables cannot tell cases apart)"
        )
    origin = ""
    # The environment wins over the file: a variable naming this very key is to blame.
    exact = next((name for name in env if name.upper() == env_name), None)
    if exact is not None:
        origin = f" (from the environment, {exact})"
    elif loc and loc[0] in data and toml_file is not None:
        origin = f" (in {toml_file})"
    elif any(name.upper().startswith(env_name) for name in env):
        origin = f" (from the environment, {env_name})"
    return [f"{key}: {line}{origin}" for line in message.split(PROBLEM_SEPARATOR)]


def _closest_key(loc: list[str]) -> str | None:
    """The known key nearest to the unknown one at `loc` (difflib), e.g. "poll_interval" for
    "pol_interval"; None when nothing is close."""
    import difflib

    model: type[BaseModel] = Settings
    if loc[:1] == ["accounts"] and len(loc) == 3:
        model = Account
    elif loc[:1] == ["notifications"] and len(loc) == 2:
        model = Notifications
    elif len(loc) != 1:
        return None
    found = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1, cutoff=0.6)
    return found[0] if found else None


def _warn_if_readable_by_others(path: Path, data: Mapping[str, Any]) -> None:
    accounts = data.get("accounts")
    has_password = isinstance(accounts, dict) and any(
        isinstance(a, dict) and "password" in a for a in accounts.values()
    )
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if has_password and mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "%s holds a password and can be read by other users; run: chmod 600 %s", path, path
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)
