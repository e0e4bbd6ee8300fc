"""`ledger check|backup|restore`: the ledger file's health, its backups, and the way back.

`check` reads only and works on a damaged file; `restore` refuses while `run` holds
DATA_DIR/run.lock (unless --force) and asks before it replaces anything (--yes for scripts).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from optout_mail.commands.state import State, now, pass_state
from optout_mail.errors import LedgerDamaged, LedgerError, UsageError

if TYPE_CHECKING:
    from optout_mail.ledger_file import Backup


@click.group()
def ledger() -> None:
    """The ledger file: check it, back it up, restore a backup.

    The ledger (DATA_DIR/ledger.sqlite3) is the record of your requests and Meta's answers.
    It is checked each time it is opened, and backed up once a day to DATA_DIR/backups (the
    newest 7 are kept).

    \b
    Examples:
      optout-mail ledger check            is it sound? what is in it? which backups?
      optout-mail ledger backup           take a backup now
      optout-mail ledger restore          put the newest backup back in place
    """


@ledger.command("check")
@click.option("--json", "as_json", is_flag=True, help="One JSON object: file, problems, backups.")
@pass_state
def ledger_check(state: State, as_json: bool) -> None:
    """Check the ledger, count what it holds, list the backups.

    Runs SQLite's full integrity check (the quick one runs whenever the ledger is opened);
    reads only, so it also works on a damaged ledger. Exit status 1 when it is damaged.

    \b
    Examples:
      optout-mail ledger check
      optout-mail ledger check --json | jq .backups
    """
    from optout_mail.backup import check_backup
    from optout_mail.ledger_file import inspect, list_backups
    from optout_mail.ledger_schema import MIGRATIONS

    path = state.settings().ledger_path
    report = inspect(path)
    backups = [
        {**b.as_json(), "ok": not check_backup(b.path, max_schema=len(MIGRATIONS))}
        for b in list_backups(path)
    ]
    if as_json:
        click.echo(json.dumps({**report.as_json(), "backups": backups}, indent=2))
    else:
        click.echo("\n".join(_check_lines(report.as_json(), backups)))
    if report.problems:
        from optout_mail.ledger_file import damaged

        hint = damaged(path, report.problems[0]).hint
        raise LedgerDamaged(f"the ledger {path} is damaged: {report.problems[0]}", hint=hint)


def _check_lines(report: dict[str, object], backups: list[dict[str, object]]) -> list[str]:
    if not report["exists"]:
        lines = [f"Ledger: {report['path']} does not exist yet (the first scan creates it)."]
    else:
        lines = [
            f"Ledger: {report['path']} ({_size(report['size'])}, mode {report['mode']}, "
            f"schema {report['schema']})",
            f"Integrity: {'ok' if report['ok'] else 'DAMAGED'} ({report['check_ms']} ms)",
        ]
        problems = report["problems"]
        assert isinstance(problems, list)
        lines += [f"  - {problem}" for problem in problems[:10]]
        counts = report["counts"]
        assert isinstance(counts, dict)
        if counts:
            lines.append("Rows: " + ", ".join(f"{n} {table}" for table, n in counts.items()))
    if not backups:
        lines.append("Backups: none yet (`optout-mail ledger backup` takes one).")
        return lines
    lines.append("Backups (newest first):")
    for backup in backups:
        status = "ok" if backup["ok"] else "DAMAGED"
        lines.append(
            f"  {Path(str(backup['path'])).name}  {_size(backup['size'])}  {backup['reason']}  "
            f"{status}"
        )
    return lines


def _size(size: object) -> str:
    number = float(size) if isinstance(size, int | float) else 0.0
    for unit in ("bytes", "KB", "MB", "GB"):
        if number < 1024 or unit == "GB":
            return f"{number:.0f} {unit}" if unit == "bytes" else f"{number:.1f} {unit}"
        number /= 1024
    return f"{number:.1f} GB"


@ledger.command("backup")
@click.option("--json", "as_json", is_flag=True, help="A JSON object: the backup's path and size.")
@pass_state
def ledger_backup(state: State, as_json: bool) -> None:
    """Take a backup now, into DATA_DIR/backups.

    The newest 7 backups are kept. Safe while `optout-mail run` or a scan is writing:
    SQLite's backup API copies a consistent state. A damaged ledger is not backed up (it
    would push out the good backups).

    \b
    Example:
      optout-mail ledger backup
    """
    from optout_mail.backup import take_backup
    from optout_mail.ledger import Ledger

    path = state.settings().ledger_path
    Ledger(path).close()  # the integrity check; creates an empty ledger if there is none
    taken = take_backup(path, reason="manual", now=now())
    if as_json:
        click.echo(json.dumps({"path": str(taken.path), "size": taken.size}))
    else:
        click.echo(f"Backed up to {taken.path} ({_size(taken.size)}).")


@ledger.command("restore")
@click.argument("backup", required=False, type=click.Path(path_type=Path))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (for scripts).")
@click.option("--force", is_flag=True, help="Restore even while `optout-mail run` is running.")
@pass_state
def ledger_restore(state: State, backup: Path | None, yes: bool, force: bool) -> None:
    """Put a backup back in place of the ledger.

    The newest backup, unless BACKUP names one: a file name in DATA_DIR/backups or a path.
    On a terminal it asks first (--yes for scripts). The backup is checked first; the
    ledger it replaces is kept as ledger.sqlite3.broken-TIMESTAMP beside it. Stop the daemon
    first (systemctl --user stop optout-mail); mails that arrived since the backup are
    recorded again by the next scan.

    \b
    Examples:
      optout-mail ledger restore
      optout-mail ledger restore ledger-20250521T080000Z-daily.sqlite3 --yes
    """
    from optout_mail.backup import check_backup, restore
    from optout_mail.ledger import Ledger
    from optout_mail.ledger_file import flocked, list_backups
    from optout_mail.ledger_schema import MIGRATIONS

    settings = state.settings()
    path = settings.ledger_path
    chosen = _choose_backup(path, backup, list_backups(path))
    problems = check_backup(chosen, max_schema=len(MIGRATIONS))
    if problems:
        raise LedgerDamaged(
            f"the backup {chosen} cannot be restored: {problems[0]}",
            hint="pick another one: `optout-mail ledger check` lists them",
        )
    with flocked(settings.data_dir / "run.lock", wait=False) as ours:
        if not ours and not force:
            raise UsageError(
                "optout-mail run is running and writes the ledger",
                hint="stop it first (systemctl --user stop optout-mail), or use --force",
            )
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    "restoring replaces the ledger; confirm with --yes when not on a terminal"
                )
            question = f"Replace {path} with {chosen.name}? The current file is kept."
            if not click.confirm(question, default=False):
                click.echo("Nothing changed.")
                return
        done = restore(path, chosen, now=now(), max_schema=len(MIGRATIONS))
    with Ledger(path) as restored:
        counts = restored.counts()
    click.echo(f"Restored {chosen.name}: {counts['requests']} requests, {counts['events']} events.")
    if done.kept is not None:
        click.echo(f"The file it replaced is kept as {done.kept}.")


def _choose_backup(path: Path, given: Path | None, backups: list[Backup]) -> Path:
    """The backup to restore: `given` (a path, or a name in the backups folder), else the
    newest one."""
    from optout_mail.ledger_file import backup_dir

    if given is None:
        if not backups:
            raise LedgerError(
                f"there is no backup in {backup_dir(path)}",
                hint=f"to start afresh, move {path} away; the next scan creates a new ledger",
            )
        return backups[0].path
    if given.exists() or given.is_absolute() or len(given.parts) > 1:
        return given
    return backup_dir(path) / given
