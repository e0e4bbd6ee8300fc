"""`init`: set up in a minute. Asks for the address, proposes the provider's server, tests the
login, finds the Junk folder, keeps the password in the keyring (or a 0600 file, and says so),
records requests already filed, writes the config and offers the systemd user service. Every
question has a flag, so that it also runs unattended.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from optout_mail.commands.state import State, now, pass_state
from optout_mail.errors import AuthError, ConfigError, UsageError
from optout_mail.model import KNOWN_PLATFORMS

if TYPE_CHECKING:
    from optout_mail.config import Account
    from optout_mail.providers import MailProvider

T = TypeVar("T")


class Ask:
    """A question answered by its flag, by the proposal (--yes), or by the user."""

    def __init__(self, yes: bool) -> None:
        self.yes = yes

    def value(
        self, given: T | None, question: str, flag: str, default: T | None = None, **prompt: Any
    ) -> T:
        if given is not None:
            return given
        if self.yes:
            if default is None:
                raise UsageError(f"{flag} is needed with --yes")
            return default
        answer: T = click.prompt(question, default=default, **prompt)
        return answer

    def confirm(self, given: bool | None, question: str, default: bool = True) -> bool:
        if given is not None:
            return given
        return default if self.yes else click.confirm(question, default=default)


def parse_filed(values: tuple[str, ...]) -> list[tuple[str, date]]:
    """`PLATFORM:YYYY-MM-DD` values, checked."""
    filed = []
    for value in values:
        platform, _, day = value.partition(":")
        platform = platform.strip().lower()
        if platform not in KNOWN_PLATFORMS:
            raise UsageError(
                f"--filed {value!r}: unknown platform {platform!r}",
                hint=f"one of {', '.join(KNOWN_PLATFORMS)}, e.g. --filed instagram:2025-05-20",
            )
        try:
            when = date.fromisoformat(day.strip())
        except ValueError:
            raise UsageError(f"--filed {value!r}: give the date as YYYY-MM-DD") from None
        if when > now().date():
            raise UsageError(f"--filed {value!r} lies in the future")
        filed.append((platform, when))
    return filed


def try_login(
    name: str, account: Account, secret: str | None, provider: MailProvider | None
) -> list[str]:
    """Log in with the existing IMAP code; return the folders to configure (none: the
    default INBOX + \\Junk finds the Junk folder). Raises SourceError."""
    from optout_mail.providers import JUNK_NAMES, login_advice
    from optout_mail.sources.imap import IMAPSource

    given = (lambda: secret) if secret is not None else None
    source = IMAPSource(name, account, sender_domains=(), secret=given)
    try:
        with source.session() as session:
            count = session.message_count("INBOX")
            junk = session.junk_folder()
            names = [] if junk else session.all_folders()
    except AuthError as exc:
        if provider is not None:
            exc.hint = (
                f"{exc.hint}; {login_advice(provider)}" if exc.hint else login_advice(provider)
            )
        raise
    click.echo(f"✓ Logged in to {account.host} as {account.username}; INBOX holds {count} mails.")
    if junk:
        click.echo(f"✓ Junk folder: {junk} (flagged by the server, watched by default).")
        return []
    usual = [provider.junk] if provider else []
    found = next((n for n in [*usual, *JUNK_NAMES] if n in names), None)
    if found:
        click.echo(f"✓ Junk folder: {found}.")
        return ["INBOX", found]
    click.echo("! No Junk folder found: only INBOX will be watched.")
    return []


SECURITY = click.Choice(["tls", "starttls", "plain"])


@click.command()
@click.option("--address", help="Your e-mail address (the one you gave Meta).")
@click.option("--host", help="IMAP server (default: your provider's).")
@click.option("--port", type=click.IntRange(1, 65535), help="IMAP port.")
@click.option("--security", type=SECURITY, help="How to encrypt the connection.")
@click.option("--username", help="Login name (default: the address).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin's first line.")
@click.option(
    "--password-command",
    metavar="CMD",
    help="A command printing the password, e.g. 'pass show mail/me' (kept in the config).",
)
@click.option(
    "--token-command",
    metavar="CMD",
    help='OAuth2 (Microsoft): a command printing an access token (with auth = "xoauth2").',
)
@click.option(
    "--ca-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Trust this CA certificate (Proton Mail Bridge's, or your own server's).",
)
@click.option(
    "--keyring/--no-keyring",
    "use_keyring",
    default=None,
    help="Keep the password in the system keyring, or in the config file. "
    "Default: the keyring when there is one.",
)
@click.option(
    "--filed",
    multiple=True,
    metavar="PLATFORM:DATE",
    help="A request you filed already, e.g. instagram:2025-05-20 (repeatable).",
)
@click.option("--service/--no-service", default=None, help="Install the systemd user service.")
@click.option("--yes", "-y", is_flag=True, help="Accept every proposal; ask nothing.")
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@pass_state
def init(
    state: State,
    address: str | None,
    host: str | None,
    port: int | None,
    security: str | None,
    username: str | None,
    password_stdin: bool,
    password_command: str | None,
    token_command: str | None,
    ca_file: Path | None,
    use_keyring: bool | None,
    filed: tuple[str, ...],
    service: bool | None,
    yes: bool,
    force: bool,
) -> None:
    """Set up optout-mail: your account, its Junk folder, requests already filed, the service.

    Proposes the server settings of well-known providers (Gmail, Outlook, Yahoo, iCloud, GMX,
    web.de, Fastmail, Posteo, mailbox.org, Proton Mail Bridge, Zoho, ...) and tests the login
    before it writes anything. The config goes to --config (default
    ~/.config/optout-mail/config.toml), readable only by you.

    \b
    Examples:
      optout-mail init
      echo "$APP_PASSWORD" | optout-mail init --address alice@gmail.com \\
          --password-stdin --filed instagram:2025-05-20 --yes
    """
    from optout_mail import providers
    from optout_mail.commands.configfile import keep_secret, render_config, write_config
    from optout_mail.commands.service import install
    from optout_mail.config import load_config, resolve_config_path

    path, named = resolve_config_path(state.config_path, os.environ)
    if path.exists() and not force:
        raise UsageError(f"{path} exists already", hint="add --force to replace it")
    requests = parse_filed(filed)
    ask = Ask(yes)
    address = ask.value(address, "Your e-mail address (the one you gave Meta)", "--address")
    address = address.strip()
    domain = providers.domain_of(address)
    if not domain:
        raise UsageError(f"{address!r} is not an e-mail address")
    provider = providers.by_domain(domain) or (None if host else _by_mx(domain))
    host, port, security = _server(ask, provider, domain, host, port, security)
    username = ask.value(username, "Login name", "--username", address)
    fields: dict[str, object] = {
        "host": host,
        "port": port,
        "security": security,
        "username": username,
    }
    if username.lower() != address.lower():
        fields["address"] = address
    if ca_file is not None:
        fields["ca_file"] = str(ca_file.absolute())
    secret = _secret_fields(fields, ask, provider, password_stdin, password_command, token_command)
    name = providers.account_name(provider, domain)
    folders = try_login(name, _account(fields, secret), secret, provider)
    if folders:
        fields["folders"] = folders
    if secret is not None:
        keep_secret(fields, username, secret, use_keyring, path)
    write_config(path, render_config(name, fields, provider))
    click.echo(f"✓ Wrote {path}.")
    if (
        not requests
        and not yes
        and click.confirm("Did you file requests with Meta already?", default=False)
    ):
        requests = _ask_filed()
    if requests:
        _record(load_config(path).ledger_path, address, requests)
    if ask.confirm(service, "Install and start the systemd user service (popups as Meta answers)?"):
        _, lines = install(path if named else None)
        for line in lines:
            click.echo(line)
    click.echo("Next: `optout-mail doctor` checks everything; `optout-mail scan` reads your mail.")


def _server(
    ask: Ask,
    provider: MailProvider | None,
    domain: str,
    host: str | None,
    port: int | None,
    security: str | None,
) -> tuple[str, int, str]:
    """Host, port and security: the flags, else the provider's (if the user agrees), else
    asked."""
    from optout_mail.providers import login_advice

    if provider is not None:
        click.echo(f"{provider.name}: {provider.host}:{provider.port} ({provider.security})")
        click.echo(f"  {login_advice(provider)}")
        if (
            host is None
            and port is None
            and security is None
            and ask.confirm(None, "Use these server settings?")
        ):
            host, port, security = provider.host, provider.port, provider.security
    elif host is None:
        click.echo(f"optout-mail does not know the IMAP server of {domain}.")
    host = ask.value(host, "IMAP server", "--host", provider.host if provider else None)
    proposed = provider.security if provider else "tls"
    security = ask.value(security, "Security", "--security", proposed, type=SECURITY)
    default_port = (
        provider.port if provider and host == provider.host else (993 if security == "tls" else 143)
    )
    port = ask.value(port, "Port", "--port", default_port, type=click.IntRange(1, 65535))
    return host, port, security


def _by_mx(domain: str) -> MailProvider | None:
    from optout_mail.dkim_dns import resolve_mx
    from optout_mail.providers import by_mx

    return by_mx(resolve_mx(domain))


def _secret_fields(
    fields: dict[str, object],
    ask: Ask,
    provider: MailProvider | None,
    password_stdin: bool,
    password_command: str | None,
    token_command: str | None,
) -> str | None:
    """Put the login's secret source into `fields`; return the password to keep, if any."""
    if password_stdin:
        line = sys.stdin.readline()
        if not line.strip():
            raise UsageError("--password-stdin: stdin holds no password")
        return line.rstrip("\r\n")
    if password_command:
        fields["password_command"] = password_command
        return None
    if token_command or (provider is not None and provider.login == "oauth2"):
        fields["auth"] = "xoauth2"
        fields["token_command"] = ask.value(
            token_command, "Command that prints an OAuth2 access token", "--token-command"
        )
        return None
    labels = {"app_password": "App password", "bridge": "Password shown by Proton Mail Bridge"}
    label = labels.get(provider.login if provider else "", "Password")
    secret: str = ask.value(None, label, "--password-stdin or --password-command", hide_input=True)
    return secret


def _account(fields: dict[str, object], secret: str | None) -> Account:
    """The account as the config will hold it, validated by the config's own rules."""
    from pydantic import ValidationError

    from optout_mail.config import Account

    data = {**fields, **({"password": secret} if secret is not None else {})}
    unknown = [key for key in data if key not in Account.model_fields]
    if unknown:
        raise ConfigError(
            f"this optout-mail cannot log in with {', '.join(unknown)} yet",
            hint="update optout-mail, or give --password-stdin if the provider still accepts "
            "an app password",
        )
    try:
        return Account.model_validate(data)
    except ValidationError as exc:
        problems = [
            str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise ConfigError("these account settings cannot work", problems=problems) from None


def _ask_filed() -> list[tuple[str, date]]:
    answer = click.prompt(f"Which platforms ({', '.join(KNOWN_PLATFORMS)})", default="instagram")
    values = []
    for platform in (p.strip() for p in answer.split(",") if p.strip()):
        day = click.prompt(f"Filed {platform} on (YYYY-MM-DD)", default=now().date().isoformat())
        values.append(f"{platform}:{day}")
    return parse_filed(tuple(values))


def _record(ledger_path: Path, address: str, requests: list[tuple[str, date]]) -> None:
    from optout_mail.ledger import Ledger
    from optout_mail.model import Kind

    moment = now()
    with Ledger(ledger_path) as ledger:
        known = {(r.platform, r.account, r.kind) for r in ledger.requests(now=moment)}
        for platform, day in requests:
            if (platform, address.lower(), Kind.OBJECTION) in known:
                click.echo(f"  {platform}: already in the ledger")
                continue
            filed_at = datetime(day.year, day.month, day.day, tzinfo=UTC)
            request = ledger.add_request(
                platform=platform,
                account=address,
                kind=Kind.OBJECTION,
                filed_at=filed_at,
                now=moment,
            )
            click.echo(
                f"✓ Recorded request #{request.id}: {platform}, filed {day}, "
                f"Meta must answer by {request.due_at[:10]}."
            )
