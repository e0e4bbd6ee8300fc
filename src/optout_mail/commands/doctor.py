"""`doctor` (is everything in place? a ✓ or ✗ per check, with the fix for each ✗) and
`test-notify` (does a popup reach the desktop, through the notifier the daemon uses).
"""

from __future__ import annotations

import json
import logging

import click

from optout_mail.commands.checks import NOTIFY_FIX, Check
from optout_mail.commands.state import State, pass_state
from optout_mail.errors import OptoutError

EXIT_FAILED, EXIT_CONFIG = 1, 78


@click.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON array of {check, ok, detail, fix}.")
@pass_state
@click.pass_context
def doctor(ctx: click.Context, state: State, as_json: bool) -> None:
    """Check everything optout-mail needs, and say how to fix what is wrong.

    The config (and that only you can read a password in it), each account's connection,
    TLS, login, folders and Junk folder, the rule packs, the ledger, the desktop's
    notification bus and server, the systemd user service and whether the daemon runs.
    Exit status 0 when every check passes, 1 when one fails, 78 when the config is broken.

    \b
    Examples:
      optout-mail doctor
      optout-mail doctor --json | jq '.[] | select(.ok | not)'
    """
    from optout_mail.commands import checks as run

    found, settings = run.config_checks(state)
    if settings is not None:
        for name, account in sorted(settings.accounts.items()):
            found += run.account_checks(name, account)
        found.append(run.rules_check(state))
        found.append(run.ledger_check(settings))
        found += run.notification_checks(settings)
        found += run.service_checks(settings)
    if as_json:
        click.echo(json.dumps([c.as_json() for c in found], ensure_ascii=False, indent=2))
    else:
        _print(found)
    if settings is None:
        ctx.exit(EXIT_CONFIG)
    if not all(c.ok for c in found):
        ctx.exit(EXIT_FAILED)


def _print(found: list[Check]) -> None:
    for check in found:
        mark = click.style("✓", fg="green") if check.ok else click.style("✗", fg="red", bold=True)
        click.echo(f"{mark} {check.check}: {check.detail}")
        if not check.ok and check.fix:
            click.echo(f"    fix: {check.fix}")
    failed = sum(not c.ok for c in found)
    click.echo("All checks passed." if not failed else f"{failed} of {len(found)} checks failed.")


@click.command("test-notify")
@click.option("--json", "as_json", is_flag=True, help="A JSON object: delivered, server, problem.")
def test_notify(as_json: bool) -> None:
    """Show a sample popup through the notifier the daemon uses; say whether it arrived.

    Exit status 1 when the desktop did not accept it, with what to do.

    \b
    Example:
      optout-mail test-notify
    """
    from optout_mail.desktop import DesktopNotifier, Popup, probe

    popup = Popup(
        title="optout-mail: test popup",
        body="This is how Meta's answers to your objections will show up.",
    )
    desktop_log = logging.getLogger("optout_mail.desktop")
    level = desktop_log.level
    desktop_log.setLevel(logging.ERROR)  # the reason is reported below, not logged twice
    try:
        delivered = DesktopNotifier().send(popup)
    finally:
        desktop_log.setLevel(level)
    found = probe()
    if as_json:
        click.echo(
            json.dumps(
                {"delivered": delivered, "server": found.server, "problem": found.problem},
                ensure_ascii=False,
            )
        )
    if delivered:
        server = f" ({found.server})" if found.server else ""
        if not as_json:
            click.echo(f"✓ Delivered: the notification server{server} accepted the popup.")
        return
    reason = found.problem or "the notification server did not accept it"
    raise OptoutError(f"the popup was not delivered: {reason}", hint=NOTIFY_FIX)
