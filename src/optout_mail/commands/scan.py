"""`scan` (one pass over the accounts or a local mail store) and `run` (the daemon)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from optout_mail.commands.state import TRUST_OPTION, State, authserv_ids, now, pass_state
from optout_mail.errors import UsageError


@click.command()
@click.option(
    "--source",
    "source_path",
    type=click.Path(path_type=Path),
    help="Scan a local Maildir, mbox file or folder of .eml files instead of the accounts "
    "(no config needed).",
)
@click.option(
    "--account",
    "account_names",
    multiple=True,
    metavar="NAME",
    help="Scan only this account (repeatable).",
)
@click.option("--dry-run", is_flag=True, help="Classify and count, but write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option(
    "--notify/--no-notify",
    default=None,
    help="Pop up what changed. Default: on for accounts (when notifications are "
    "enabled), off for --source.",
)
@click.option("--wide", is_flag=True, help="Show every column of the tables.")
@TRUST_OPTION
@pass_state
def scan(
    state: State,
    source_path: Path | None,
    account_names: tuple[str, ...],
    dry_run: bool,
    as_json: bool,
    notify: bool | None,
    wide: bool,
    trust_ids: tuple[str, ...],
) -> None:
    """Scan once: read new mail, classify Meta's replies, record them in the ledger.

    Without --source, every account in the config is scanned (INBOX and the Junk folder
    unless `folders` says otherwise), incrementally: a second scan downloads nothing old.
    Of a large mail from Meta only the header and text parts are downloaded first; the whole
    mail only when a rule could match it. A large first scan uses every core.
    A mail is recorded once, however often it is seen. The first scan of an account (or of
    a folder) records its history without a popup per old mail: one summary popup instead,
    and a one-time code only while it is still valid.

    \b
    Examples:
      optout-mail scan
      optout-mail scan --account home --json
      optout-mail --data-dir "$(mktemp -d)" scan --source samples/    a safe try-it
      optout-mail scan --source ~/Mail/INBOX --dry-run                a Maildir (mbsync)
    """
    from rich.console import Console

    from optout_mail import wiring
    from optout_mail.dkim_dns import TxtLookup
    from optout_mail.output import ScanProgress
    from optout_mail.pipeline import run_sources

    if trust_ids and source_path is None:
        raise UsageError(
            "--trust goes with --source",
            hint="for an account, set trusted_authserv_ids in its config",
        )
    settings = state.settings()
    if source_path is None and not settings.accounts:
        raise state.no_accounts()
    if source_path is not None and not dry_run and state.data_dir is None and settings.accounts:
        click.echo(
            f"note: this records {source_path} into your real ledger ({settings.data_dir}); to "
            f'try it without touching that: optout-mail --data-dir "$(mktemp -d)" scan '
            f"--source {source_path}",
            err=True,
        )
    rule_set = state.rules  # loaded when a SEARCH is sent or a mail is read, not before
    sources = wiring.scan_sources(
        settings, rule_set, source_path, account_names, trust_ids=authserv_ids(trust_ids)
    )
    notify = not dry_run and (notify or (notify is None and source_path is None))
    progress = None if as_json else ScanProgress(Console(stderr=True))
    with wiring.open_ledger(settings, clock=now, notify=notify) as (ledger, notifier):
        try:
            summary = run_sources(
                sources,
                rules=rule_set,
                ledger=ledger,
                clock=now,
                notifier=notifier,
                dry_run=dry_run,
                dkim_dns=TxtLookup(),
                progress=progress,
            )
        finally:
            if progress is not None:
                progress.close()
        requests = ledger.requests(now=now())
    if summary.failures and summary.sources == 1 and not summary.folders:
        raise summary.failures[0].error  # nothing was scanned: the error alone says it all
    if as_json:
        click.echo(json.dumps(summary.as_json(), ensure_ascii=False, default=str))
    else:
        from optout_mail.output import print_scan

        print_scan(Console(), summary, requests, wide=wide)
    error = summary.error()
    if error is not None:
        raise error


@click.command("run")
@pass_state
def run_daemon(state: State) -> None:
    """Watch the mailbox and pop up every answer from Meta as it arrives (the daemon).

    One IMAP IDLE connection per account and folder brings new mail within seconds; a full
    scan every `poll_interval` seconds is the safety net, and once a day overdue requests
    are reported. SIGTERM or Ctrl-C stops it (exit status 0); SIGHUP reloads the config and
    the rules. Meant to run as the systemd user service in systemd/ (see the README).

    \b
    Examples:
      optout-mail run -v                               in a terminal, to watch it work
      systemctl --user enable --now optout-mail       as the service (see the README)
    """
    from optout_mail.daemon import Daemon

    if not state.settings().accounts:
        raise state.no_accounts()  # exit status 78: systemd does not restart it in a loop
    Daemon(state.load_fresh).run()
