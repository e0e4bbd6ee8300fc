"""The command line: the `optout-mail` group, its global options, logging, and the one error
boundary; the commands themselves live in `commands/`, one module per group.

`main` is the only place that turns exceptions into messages and exit codes. Heavy modules are
imported inside the commands so that `--help` and `--version` start fast.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path
from typing import NoReturn

import click

from optout_mail import __version__
from optout_mail.commands.classify import classify, rules
from optout_mail.commands.doctor import doctor, test_notify
from optout_mail.commands.export import evidence, export
from optout_mail.commands.ledger import ledger
from optout_mail.commands.requests import requests
from optout_mail.commands.scan import run_daemon, scan
from optout_mail.commands.setup import init
from optout_mail.commands.state import State
from optout_mail.commands.status import config_group, status_command
from optout_mail.errors import (
    ConfigError,
    LedgerError,
    OptoutError,
    RuleError,
    SourceError,
    UnknownRequest,
    UsageError,
)

log = logging.getLogger("optout_mail")


class ExitStatus(IntEnum):
    OK = 0
    FAILURE = 1  # a failure at run time (mailbox, ledger, ...)
    USAGE = 2
    INTERRUPTED = 130
    CONFIG = 78  # EX_CONFIG: systemd's RestartPreventExitStatus=78 stops a restart loop


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="OPTOUT_MAIL_CONFIG",
    help="Config file (TOML). Default: ~/.config/optout-mail/config.toml. Env: OPTOUT_MAIL_CONFIG.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the ledger here instead of data_dir of the config (or OPTOUT_MAIL_DATA_DIR), "
    'e.g. a throw-away one to try things: --data-dir "$(mktemp -d)".',
)
@click.option("-v", "--verbose", count=True, help="Say more (-vv: debug, with tracebacks).")
@click.version_option(__version__, "--version", prog_name="optout-mail")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, data_dir: Path | None, verbose: int) -> None:
    """Follow up your "right to object" requests to Meta from your mailbox.

    optout-mail reads your mailbox (read-only), recognises Meta's replies -- one-time codes,
    "we will honour your objection", refusals, requests for evidence -- in nine languages,
    keeps a ledger of every request against the legal deadline, and tells you what happened.

    \b
    Examples (start here):
      optout-mail init                         set up your account, in a minute
      optout-mail doctor                       check that everything is in place
      optout-mail status                       your requests, deadlines, the daemon
      optout-mail --data-dir "$(mktemp -d)" scan --source samples/
                                               try it on the bundled samples, in a
                                               throw-away ledger
      optout-mail classify --explain MAIL.eml  what one mail means, and why
      optout-mail scan                         scan the accounts in your config
      optout-mail requests list                the state of every request
      optout-mail run                          the daemon: popups as replies arrive
    """
    _configure_logging(verbose, daemon=ctx.invoked_subcommand == "run")
    ctx.obj = State(config_path, verbose, data_dir)


for _command in (
    init,
    doctor,
    test_notify,
    status_command,
    config_group,
    classify,
    rules,
    scan,
    run_daemon,
    requests,
    ledger,
    export,
    evidence,
):
    cli.add_command(_command)


# ---------------------------------------------------------------------------------------------
# Output helpers, logging, and the error boundary.


def _configure_logging(verbose: int, *, daemon: bool = False) -> None:
    """WARNING by default, INFO with -v, DEBUG with -vv; `run` logs at INFO at least, so that
    its journal tells what it does. Timestamps unless journald adds its own."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    if daemon:
        level = min(level, logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    if _stderr_is_journal():
        handler.setFormatter(_JournalFormatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%d %H:%M:%S"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Third-party chatter (protocol traces carry mail contents) stays out unless -vvv.
    for name in ("imapclient", "apscheduler", "mailparser"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)


def _stderr_is_journal() -> bool:
    """systemd sets JOURNAL_STREAM=device:inode of the journal stream it connected; stderr is
    that stream only when its fstat matches (a redirection or a child's pipe would not)."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        stat = os.fstat(sys.stderr.fileno())
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (ValueError, OSError, AttributeError):
        return False


class _JournalFormatter(logging.Formatter):
    """Prefixes sd-daemon(3) priorities ("<4>" = warning), so `journalctl -p` filters them."""

    PRIORITIES = ((logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in self.PRIORITIES if record.levelno >= level), 7)
        return f"<{priority}>{super().format(record)}"


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
        # Without standalone mode, click returns the status of `ctx.exit(status)` instead of
        # raising it.
        status = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="optout-mail",
            standalone_mode=False,
        )
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
        log.error(
            "internal error: %s: %s",
            type(exc).__name__,
            exc,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        click.echo(
            "optout-mail: internal error; run again with -vv for the traceback and report it",
            err=True,
        )
        return ExitStatus.FAILURE
    return status if isinstance(status, int) else ExitStatus.OK


def main() -> NoReturn:
    sys.exit(run())
