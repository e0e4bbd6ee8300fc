"""The command line: commands, their output (tables or `--json`), and the one error boundary.

`main` is the only place that turns exceptions into messages and exit codes. Heavy modules are
imported inside the commands so that `--help` and `--version` start fast.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
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
    UsageError,
)

if TYPE_CHECKING:
    from optout_mail.config import Settings
    from optout_mail.rules import Explanation, RuleSet

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
    """
    _configure_logging(verbose)
    ctx.obj = _State(config_path, verbose)


# ---------------------------------------------------------------------------------------------
# classify


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line and file.")
@click.option("--explain", is_flag=True, help="Show which rule matched, what held, what blocked.")
@pass_state
def classify(state: _State, files: tuple[Path, ...], as_json: bool, explain: bool) -> None:
    """Say what each mail FILE (.eml) means. Reads no mailbox and writes no ledger.

    A file that cannot be read still gets its line, with an error.
    """
    from optout_mail.model import RawMail
    from optout_mail.parse import parse
    from optout_mail.rules import explain as explain_mail

    rule_set = state.rules()
    failures = 0
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            failures += 1
            error = f"cannot read {path}: {exc.strerror or exc}"
            if as_json:
                _print_json_line({"path": str(path), **_EMPTY_RESULT, "error": error})
            else:
                click.echo(f"{path}: error: {error}", err=True)
            continue
        message = parse(RawMail(data=data, origin=str(path)))
        explanation = explain_mail(message, rule_set)
        result = explanation.classification
        if as_json:
            _print_json_line({"path": str(path), **result.as_json()})
        else:
            click.echo(_describe_classification(str(path), result))
            if explain:
                _print_explanation(explanation)
    if failures:
        raise SourceError(f"{failures} of {len(files)} files could not be read")


_EMPTY_RESULT: dict[str, Any] = {
    "outcome": None, "platform": None, "kind": None, "authentic": None, "code": None,
    "reference": None, "rule": None, "language": None,
}  # fmt: skip


def _describe_classification(where: str, result: Any) -> str:
    if result.outcome is None:
        why = f" ({result.notes[0]})" if result.notes else ""
        return f"{where}: no match{why}"
    authentic = {True: "authentic", False: "NOT AUTHENTIC", None: "authenticity unknown"}
    parts = [
        f"{result.outcome.value}",
        f"{result.platform}",
        f"{result.kind.value}",
        authentic[result.authentic],
        f"rule {result.rule} [{result.language}]",
    ]
    if result.code:
        parts.insert(1, f"code {result.code}")
    if result.reference:
        parts.insert(1, f"reference {result.reference}")
    line = f"{where}: " + ", ".join(parts)
    if result.lookalike:
        line += " -- the sender only looks like Meta: possible phishing"
    return line


def _print_explanation(explanation: Explanation) -> None:
    if explanation.pack is None:
        click.echo(f"  sender {explanation.sender or '(none)'}: no rule pack covers it")
        return
    click.echo(f"  sender {explanation.sender}: pack {explanation.pack}")
    for trace in explanation.traces:
        mark = "MATCH  " if trace.matched else ("blocked" if trace.blocked_by else "no     ")
        click.echo(f"  {mark} {trace.rule.id} (priority {trace.rule.priority})")
        for reason in trace.reasons:
            click.echo(f"            {reason}")
    winner = explanation.classification.rule
    if winner:
        click.echo(f"  -> {winner} wins (highest priority among the matching rules)")


# ---------------------------------------------------------------------------------------------
# rules


@cli.group()
def rules() -> None:
    """Inspect and lint the rule packs (bundled ones plus `rules_dirs`)."""


@rules.command("check")
@pass_state
def rules_check(state: _State) -> None:
    """Lint every pack; count rules per language, outcome and provenance."""
    from collections import Counter

    rule_set = state.rules()
    all_rules = rule_set.rules
    click.echo(f"{len(rule_set.packs)} pack(s), {len(all_rules)} rules, no problems found.")
    for title, counter in (
        ("language", Counter(r.language for r in all_rules)),
        ("outcome", Counter(f"{r.kind.value}/{r.outcome.value}" for r in all_rules)),
        ("provenance", Counter(r.source for r in all_rules)),
    ):
        counts = ", ".join(f"{key} {n}" for key, n in sorted(counter.items()))
        click.echo(f"  by {title}: {counts}")
    for pack in rule_set.packs:
        click.echo(f"  pack {pack.id}: senders {', '.join(sorted(pack.senders))}")


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of rules.")
@pass_state
def rules_list(state: _State, as_json: bool) -> None:
    """List the rules in the order they are tried (highest priority first)."""
    rows = [
        {
            "id": r.id, "pack": pack.id, "language": r.language, "outcome": r.outcome.value,
            "kind": r.kind.value, "priority": r.priority, "source": r.source,
            "description": r.description, "file": r.path,
        }
        for pack in state.rules().packs
        for r in pack.rules
    ]  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "lang", "outcome", "kind", "prio", "source", "description")
    for row in rows:
        table.add_row(
            str(row["id"]), str(row["language"]), str(row["outcome"]), str(row["kind"]),
            str(row["priority"]), str(row["source"]), str(row["description"]),
        )  # fmt: skip
    Console().print(table)


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

