"""The command line: commands, their output (tables or `--json`), and the one error boundary.

`main` is the only place that turns exceptions into messages and exit codes. Heavy modules are
imported inside the commands so that `--help` and `--version` start fast.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from optout_mail import __version__
from optout_mail.errors import (
    ConfigError,
    LedgerError,
    OptoutError,
    RuleError,
    SourceError,
    UnknownRequest,
    UsageError,
)
from optout_mail.model import KINDS, KNOWN_PLATFORMS, NO_MATCH

if TYPE_CHECKING:
    from optout_mail.config import Settings
    from optout_mail.rules import RuleSet

log = logging.getLogger("optout_mail")


class ExitStatus(IntEnum):
    OK = 0
    FAILURE = 1  # a failure at run time (mailbox, ledger, ...)
    USAGE = 2
    INTERRUPTED = 130
    CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop


class _State:
    """What the global options leave for the commands; config is loaded on first use."""

    def __init__(self, config_path: Path | None, verbose: int) -> None:
        self.config_path = config_path
        self.verbose = verbose
        self._settings: Settings | None = None
        self._rules: RuleSet | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from optout_mail.config import load_config

            self._settings = load_config(self.config_path)
        return self._settings

    def rules(self) -> RuleSet:
        if self._rules is None:
            from optout_mail.rules import load_rule_set

            self._rules = load_rule_set(self.settings().rules_dirs)
        return self._rules

    def load_fresh(self) -> tuple[Settings, RuleSet]:
        """Read the config and the rules again (the daemon does on start and on SIGHUP)."""
        self._settings = self._rules = None
        return self.settings(), self.rules()


pass_state = click.make_pass_decorator(_State)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="OPTOUT_MAIL_CONFIG",
    help="Config file (TOML). Default: ~/.config/optout-mail/config.toml. "
    "Env: OPTOUT_MAIL_CONFIG.",
)
@click.option("-v", "--verbose", count=True, help="Say more (-vv: debug, with tracebacks).")
@click.version_option(__version__, "--version", prog_name="optout-mail")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Follow up your "right to object" requests to Meta from your mailbox.

    optout-mail reads your mailbox (read-only), recognises Meta's replies -- one-time codes,
    "we will honour your objection", refusals, requests for evidence -- in nine languages,
    keeps a ledger of every request against the legal deadline, and tells you what happened.

    \b
    Start here:
      optout-mail scan --source samples/      try it on the bundled sample mails
      optout-mail classify --explain MAIL.eml  what one mail means, and why
      optout-mail scan                         scan the accounts in your config
      optout-mail requests list                the state of every request
      optout-mail run                          the daemon: popups as replies arrive
    """
    _configure_logging(verbose)
    ctx.obj = _State(config_path, verbose)


# ---------------------------------------------------------------------------------------------
# classify

_TRUST_OPTION = click.option(
    "--trust", "trust_ids", multiple=True, metavar="ID",
    help="Believe the Authentication-Results of this authserv-id (e.g. mx.example.org, or "
    "*.example.org; repeatable). Default: the known providers, else the receiving server.",
)  # fmt: skip


def _authserv_ids(values: tuple[str, ...]) -> tuple[str, ...]:
    import re

    from optout_mail.config import AUTHSERV_ID

    for value in values:
        if value and not re.fullmatch(AUTHSERV_ID, value):
            raise UsageError(f"--trust {value!r} is not an authserv-id",
                             hint="give a host name like mx.example.org or a pattern like "
                             "*.example.org")  # fmt: skip
    return tuple(v.lower() for v in values)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line and file.")
@click.option("--explain", is_flag=True, help="Show which rule matched, what held, what blocked.")
@_TRUST_OPTION
@pass_state
def classify(
    state: _State, files: tuple[Path, ...], as_json: bool, explain: bool, trust_ids: tuple[str, ...]
) -> None:
    """Say what each mail FILE (.eml) means. Reads no mailbox and writes no ledger.

    A file that cannot be read still gets its line, with an error.
    """
    from optout_mail.dkim_dns import TxtLookup
    from optout_mail.model import RawMail
    from optout_mail.output import describe_classification, explanation_lines
    from optout_mail.parse import parse
    from optout_mail.rules import Trust
    from optout_mail.rules import explain as explain_mail

    rule_set = state.rules()
    trust = Trust(_authserv_ids(trust_ids))
    dkim_dns = TxtLookup()
    failures = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            failures += 1
            error = f"cannot read {path}: {exc.strerror or exc}"
            if as_json:
                _print_json_line({"path": str(path), **NO_MATCH.as_json(), "error": error})
            else:
                click.echo(f"{path}: error: {error}", err=True)
            continue
        message = parse(RawMail(data=data, origin=str(path)))
        explanation = explain_mail(message, rule_set, trust, dkim_dns=dkim_dns)
        result = explanation.classification
        if as_json:
            _print_json_line({"path": str(path), **result.as_json()})
        else:
            click.echo(describe_classification(str(path), result))
            if explain:
                click.echo("\n".join(explanation_lines(explanation)))
    if failures:
        raise SourceError(f"{failures} of {len(files)} files could not be read")


# ---------------------------------------------------------------------------------------------
# rules


@cli.group()
def rules() -> None:
    """Inspect and lint the rule packs (bundled ones plus `rules_dirs`)."""


@rules.command("check")
@pass_state
def rules_check(state: _State) -> None:
    """Lint every pack; count rules per language, outcome and provenance."""
    from optout_mail.output import rules_check_lines

    click.echo("\n".join(rules_check_lines(state.rules())))


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of rules.")
@pass_state
def rules_list(state: _State, as_json: bool) -> None:
    """List the rules in the order they are tried (highest priority first)."""
    from optout_mail.output import print_rules, rule_rows

    rows = rule_rows(state.rules())
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    print_rules(Console(), rows)


# ---------------------------------------------------------------------------------------------
# scan


@cli.command()
@click.option(
    "--source", "source_path", type=click.Path(path_type=Path),
    help="Scan a local Maildir, mbox file or folder of .eml files instead of the accounts "
    "(no config needed).",
)  # fmt: skip
@click.option("--account", "account_names", multiple=True, metavar="NAME",
              help="Scan only this account (repeatable).")
@click.option("--dry-run", is_flag=True, help="Classify and count, but write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option("--notify/--no-notify", default=None,
              help="Pop up what changed. Default: on for accounts (when notifications are "
              "enabled), off for --source.")
@_TRUST_OPTION
@pass_state
def scan(
    state: _State, source_path: Path | None, account_names: tuple[str, ...], dry_run: bool,
    as_json: bool, notify: bool | None, trust_ids: tuple[str, ...],
) -> None:
    """Scan once: read new mail, classify Meta's replies, record them in the ledger.

    Without --source, every account in the config is scanned (INBOX and the Junk folder
    unless `folders` says otherwise), incrementally: a second scan downloads nothing old.
    A mail is recorded once, however often it is seen.
    """
    from optout_mail.dkim_dns import TxtLookup
    from optout_mail.ledger import Ledger
    from optout_mail.pipeline import ScanSummary, account_trust, run_source
    from optout_mail.rules import Trust

    if trust_ids and source_path is None:
        raise UsageError("--trust goes with --source",
                         hint="for an account, set trusted_authserv_ids in its config")
    extra_ids = _authserv_ids(trust_ids)
    dkim_dns = TxtLookup()
    settings = state.settings()
    rule_set = state.rules()
    sources = _sources(settings, rule_set, source_path, account_names)
    summary = ScanSummary(dry_run=dry_run)
    with Ledger(settings.ledger_path) as ledger:
        notifier = None
        if notify or (notify is None and source_path is None):
            notifier = _notifier(settings, ledger) if not dry_run else None
        failures: list[SourceError] = []
        for source in sources:
            # An account's trust comes from its config; local mail's from --trust.
            account = getattr(source, "account", None)
            trust = account_trust(account) if account is not None else Trust(extra_ids)
            try:
                run_source(source, rules=rule_set, ledger=ledger, clock=_now,
                           notifier=notifier, dry_run=dry_run, summary=summary,
                           trust=trust, dkim_dns=dkim_dns)
            except SourceError as exc:
                failures.append(exc)
            summary.problems.extend(getattr(source, "problems", []))
        requests = ledger.requests(now=_now())
    if failures and len(sources) == 1 and not summary.folders:
        raise failures[0]  # nothing was scanned: the error alone says it all
    if as_json:
        click.echo(json.dumps(summary.as_json(), ensure_ascii=False, default=str))
    else:
        from rich.console import Console

        from optout_mail.output import print_scan

        print_scan(Console(), summary, requests)
    if len(failures) == 1 and len(sources) == 1:
        raise failures[0]
    if failures:
        raise SourceError(
            f"{len(failures)} of {len(sources)} accounts could not be scanned",
            problems=[f.message + (f" ({f.hint})" if f.hint else "") for f in failures],
        )


def _sources(
    settings: Settings, rule_set: RuleSet, source_path: Path | None, names: tuple[str, ...]
) -> list[Any]:
    if source_path is not None:
        from optout_mail.sources.local import LocalSource

        return [LocalSource(source_path)]
    if not settings.accounts:
        raise ConfigError(
            "no accounts are configured",
            hint="add an [accounts.NAME] table to the config (see the README), or scan local "
            "mail with --source PATH",
        )
    unknown = [n for n in names if n not in settings.accounts]
    if unknown:
        raise UsageError(f"no account named {unknown[0]!r}",
                         hint=f"configured accounts: {', '.join(sorted(settings.accounts))}")
    from optout_mail.sources.imap import IMAPSource

    return [
        IMAPSource(name, account, sender_domains=rule_set.sender_domains(),
                   search_words=rule_set.lookalike_words())
        for name, account in sorted(settings.accounts.items())
        if not names or name in names
    ]


def _notifier(settings: Settings, ledger: Any) -> Any:
    if not settings.notifications.enabled:
        return None
    from optout_mail.notify import PopupNotifier

    return PopupNotifier(ledger, show_codes=settings.notifications.show_codes, clock=_now)


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# run


@cli.command("run")
@pass_state
def run_daemon(state: _State) -> None:
    """Watch the mailbox and pop up every answer from Meta as it arrives (the daemon).

    One IMAP IDLE connection per account and folder brings new mail within seconds; a full
    scan every `poll_interval` seconds is the safety net, and once a day overdue requests
    are reported. SIGTERM or Ctrl-C stops it (exit status 0); SIGHUP reloads the config and
    the rules. Meant to run as the systemd user service in systemd/ (see the README).
    """
    from optout_mail.daemon import Daemon

    Daemon(state.load_fresh).run()


# ---------------------------------------------------------------------------------------------
# requests


@cli.group()
def requests() -> None:
    """The ledger: your requests to Meta and the mails that moved them."""


@requests.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of requests with events.")
@pass_state
def requests_list(state: _State, as_json: bool) -> None:
    """List every request with its state and deadline (overdue ones are marked)."""
    from optout_mail.ledger import Ledger

    with Ledger(state.settings().ledger_path) as ledger:
        rows = ledger.requests(now=_now())
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("No requests yet. Run `optout-mail scan`, or record one you just filed "
                   "with `optout-mail requests add`.")
        return
    from rich.console import Console

    from optout_mail.output import print_requests

    print_requests(Console(), rows)


@requests.command("show")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The request as a JSON object.")
@pass_state
def requests_show(state: _State, request_id: int, as_json: bool) -> None:
    """Show one request and the timeline of the mails that moved it."""
    from optout_mail.ledger import Ledger

    with Ledger(state.settings().ledger_path) as ledger:
        request = ledger.request(request_id, now=_now())
    if as_json:
        click.echo(json.dumps(request.as_json(), ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    from optout_mail.output import print_request

    print_request(Console(), request)


@requests.command("add")
@click.option("--platform", required=True, type=click.Choice(KNOWN_PLATFORMS))
@click.option("--account", required=True, help="The e-mail address you gave in the form.")
@click.option("--kind", type=click.Choice(KINDS), default="objection",
              show_default=True)
@click.option("--filed", "filed_on", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
              help="When you submitted the form (default: now). Starts the one-month clock.")
@click.option("--json", "as_json", is_flag=True, help="Print the new request as JSON.")
@pass_state
def requests_add(
    state: _State, platform: str, account: str, kind: str, filed_on: datetime | None,
    as_json: bool,
) -> None:
    """Record a request you just filed, so its deadline runs from the right day."""
    from optout_mail.ledger import Ledger
    from optout_mail.model import Kind

    if "@" not in account:
        raise UsageError(f"{account!r} is not an e-mail address",
                         hint="give the address you typed into Meta's form")
    now = _now()
    filed = filed_on.replace(tzinfo=UTC) if filed_on else now
    if filed > now:
        raise UsageError("--filed lies in the future")
    with Ledger(state.settings().ledger_path) as ledger:
        request = ledger.add_request(platform=platform, account=account, kind=Kind(kind),
                                     filed_at=filed, now=now)
    if as_json:
        click.echo(json.dumps(request.as_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"Recorded request #{request.id}: {platform} {kind} for {request.account}, "
                   f"filed {request.filed_at[:10]}, Meta must answer by {request.due_at[:10]}.")


@requests.command("forget")
@click.argument("request_id", type=int)
@pass_state
def requests_forget(state: _State, request_id: int) -> None:
    """Delete a request and its events from the ledger (the mails stay in your mailbox)."""
    from optout_mail.ledger import Ledger

    with Ledger(state.settings().ledger_path) as ledger:
        ledger.forget(request_id)
    click.echo(f"Forgot request #{request_id}.")


# ---------------------------------------------------------------------------------------------
# Output helpers, logging, and the error boundary.


def _print_json_line(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


def _configure_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter (protocol traces carry mail contents) stays out unless -vv.
    for name in ("imapclient", "apscheduler", "mailparser"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)


_EXIT_FOR: tuple[tuple[type[OptoutError], ExitStatus], ...] = (
    (UnknownRequest, ExitStatus.USAGE),
    (ConfigError, ExitStatus.CONFIG),
    (RuleError, ExitStatus.CONFIG),
    (UsageError, ExitStatus.USAGE),
    (SourceError, ExitStatus.FAILURE),
    (LedgerError, ExitStatus.FAILURE),
)


def _report(error: OptoutError) -> ExitStatus:
    click.echo(f"optout-mail: {error.message}", err=True)
    for problem in error.problems:
        click.echo(f"  - {problem}", err=True)
    if error.hint:
        click.echo(f"  hint: {error.hint}", err=True)
    for cls, status in _EXIT_FOR:
        if isinstance(error, cls):
            return status
    return ExitStatus.FAILURE


def run(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit status: the single error boundary."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="optout-mail",
                 standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        return ExitStatus.USAGE
    except click.exceptions.Abort:
        click.echo("optout-mail: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    except OptoutError as exc:
        log.debug("traceback of the error below", exc_info=True)
        return _report(exc)
    except KeyboardInterrupt:
        click.echo("optout-mail: interrupted", err=True)
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        return ExitStatus.OK  # `optout-mail ... | head` closed the pipe: not an error
    except Exception as exc:
        log.error("internal error: %s: %s", type(exc).__name__, exc,
                  exc_info=log.isEnabledFor(logging.DEBUG))
        click.echo(
            "optout-mail: internal error; run again with -vv for the traceback and report it",
            err=True,
        )
        return ExitStatus.FAILURE
    return ExitStatus.OK


def main() -> NoReturn:
    sys.exit(run())

