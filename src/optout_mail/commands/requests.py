"""`requests list|show|add|forget|note|set-state|confirm`: the ledger's requests, as the user
sees and corrects them."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from optout_mail.commands.state import State, now, pass_state
from optout_mail.errors import UsageError
from optout_mail.model import KINDS, KNOWN_PLATFORMS
from optout_mail.model import State as StateName


@click.group()
def requests() -> None:
    """The ledger: your requests to Meta and the mails that moved them.

    \b
    Examples:
      optout-mail requests list
      optout-mail requests show 3
      optout-mail requests add --platform instagram --account alice@example.org
    """


@requests.command("list")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of requests with events.")
@click.option("--wide", is_flag=True, help="Show every column, however wide the table gets.")
@pass_state
def requests_list(state: State, as_json: bool, wide: bool) -> None:
    """List every request with its state and deadline (overdue ones are marked).

    \b
    Examples:
      optout-mail requests list
      optout-mail requests list --wide            every column, also the account
      optout-mail requests list --json | jq '.[] | select(.overdue)'
    """
    from optout_mail.ledger import Ledger

    with Ledger(state.settings().ledger_path) as ledger:
        rows = ledger.requests(now=now())
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo(
            "No requests yet. Run `optout-mail scan`, or record one you just filed "
            "with `optout-mail requests add`."
        )
        return
    from rich.console import Console

    from optout_mail.output import print_requests

    print_requests(Console(), rows, wide=wide)


@requests.command("show")
@click.argument("request_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The request as a JSON object.")
@pass_state
def requests_show(state: State, request_id: int, as_json: bool) -> None:
    """Show one request and the timeline of the mails that moved it, with your own notes
    and corrections.

    \b
    Example:
      optout-mail requests show 3
    """
    from optout_mail.ledger import Ledger

    with Ledger(state.settings().ledger_path) as ledger:
        request = ledger.request(request_id, now=now())
    if as_json:
        click.echo(json.dumps(request.as_json(), ensure_ascii=False, indent=2))
        return
    from rich.console import Console

    from optout_mail.output import print_request

    print_request(Console(), request)


@requests.command("add")
@click.option("--platform", required=True, type=click.Choice(KNOWN_PLATFORMS))
@click.option("--account", required=True, help="The e-mail address you gave in the form.")
@click.option("--kind", type=click.Choice(KINDS), default="objection", show_default=True)
@click.option(
    "--filed",
    "filed_on",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    help="When you submitted the form (default: now). Starts the one-month clock.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the new request as JSON.")
@pass_state
def requests_add(
    state: State,
    platform: str,
    account: str,
    kind: str,
    filed_on: datetime | None,
    as_json: bool,
) -> None:
    """Record a request you just filed, so its deadline runs from the right day.

    \b
    Example:
      optout-mail requests add --platform facebook --account alice@example.org \\
          --filed 2025-05-21
    """
    from optout_mail.ledger import Ledger
    from optout_mail.model import Kind

    if "@" not in account:
        raise UsageError(
            f"{account!r} is not an e-mail address",
            hint="give the address you typed into Meta's form",
        )
    moment = now()
    filed = filed_on.replace(tzinfo=UTC) if filed_on else moment
    if filed > moment:
        raise UsageError("--filed lies in the future")
    with Ledger(state.settings().ledger_path) as ledger:
        request = ledger.add_request(
            platform=platform, account=account, kind=Kind(kind), filed_at=filed, now=moment
        )
    if as_json:
        click.echo(json.dumps(request.as_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(
            f"Recorded request #{request.id}: {platform} {kind} for {request.account}, "
            f"filed {request.filed_at[:10]}, Meta must answer by {request.due_at[:10]}."
        )


@requests.command("forget")
@click.argument("request_id", type=int, required=False)
@click.option(
    "--all",
    "forget_all",
    is_flag=True,
    help="Forget every request and recorded mail; the next scan reads the mailbox afresh.",
)
@click.option("--yes", is_flag=True, help="Do not ask (for scripts).")
@pass_state
def requests_forget(state: State, request_id: int | None, forget_all: bool, yes: bool) -> None:
    """Delete a request and its events from the ledger (the mails stay in your mailbox).

    With --all, the whole ledger starts afresh: every request, every recorded mail and how
    far each folder was read, e.g. after trying optout-mail on the samples in your real
    ledger. It asks first, unless --yes.

    \b
    Examples:
      optout-mail requests forget 3
      optout-mail requests forget --all --yes
    """
    from optout_mail.ledger import Ledger

    if forget_all == (request_id is not None):
        raise UsageError(
            "give a request ID or --all",
            hint="`optout-mail requests list` shows the ids",
        )
    path = state.settings().ledger_path
    with Ledger(path) as ledger:
        if request_id is not None:
            ledger.forget(request_id)
            click.echo(f"Forgot request #{request_id}.")
            return
        count = len(ledger.requests(now=now()))
        if not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    "requests forget --all asks first, and there is nobody to ask",
                    hint="add --yes to forget everything without asking",
                )
            click.confirm(
                f"Forget all {count} request(s) and every recorded mail in {path}?",
                abort=True,
            )
        ledger.forget_all()
    click.echo(
        f"Forgot {count} request(s) and every recorded mail; the next scan reads the mailbox "
        "afresh. A backup was taken first: `optout-mail ledger restore` brings it back."
    )


@requests.command("note")
@click.argument("request_id", type=int)
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON afterwards.")
@pass_state
def requests_note(state: State, request_id: int, text: str, as_json: bool) -> None:
    """Add your own note to a request's timeline (what you did, what Meta said elsewhere).

    \b
    Example:
      optout-mail requests note 3 "answered Meta's request for evidence by mail"
    """
    from optout_mail.ledger import Ledger

    with Ledger(state.settings().ledger_path) as ledger:
        request = ledger.note(request_id, text, now=now())
    if as_json:
        click.echo(json.dumps(request.as_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"Noted on request #{request_id}.")


@requests.command("set-state")
@click.argument("request_id", type=int)
@click.argument("new_state", metavar="STATE", type=click.Choice([s.value for s in StateName]))
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON afterwards.")
@pass_state
def requests_set_state(state: State, request_id: int, new_state: str, as_json: bool) -> None:
    """Correct the state of a request by hand, when the mails got it wrong or Meta answered
    some other way. The timeline records it as your decision ("set by the user"); a mail
    older than the correction does not undo it, a newer one moves the request as usual.

    \b
    Example:
      optout-mail requests set-state 3 honoured
    """
    from optout_mail.ledger import Ledger

    with Ledger(state.settings().ledger_path) as ledger:
        request = ledger.set_state(request_id, StateName(new_state), now=now())
    if as_json:
        click.echo(json.dumps(request.as_json(), ensure_ascii=False, indent=2))
    else:
        click.echo(f"Request #{request_id} is now {request.state.value} (set by you).")


@requests.command("confirm")
@click.argument("event_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the request as JSON afterwards.")
@pass_state
def requests_confirm(state: State, event_id: int, as_json: bool) -> None:
    """Accept a mail that could not be verified, as your own decision.

    A reply whose authenticity could not be established (no trusted Authentication-Results,
    no DKIM key to check) is kept as evidence but moves nothing. If you have checked it
    yourself, e.g. in "Emails from Facebook" in the app's settings, accept it here: it then
    moves its request, and the ledger records that you accepted it. A mail that FAILED the
    check cannot be accepted.

    \b
    Example:
      optout-mail requests show 3        # find the event id of the unverified mail
      optout-mail requests confirm 17
    """
    from optout_mail.ledger import Ledger

    with Ledger(state.settings().ledger_path) as ledger:
        change = ledger.confirm(event_id, now=now())
    request = change.request
    if as_json:
        click.echo(json.dumps(request.as_json() if request else None, ensure_ascii=False))
    elif request is None:
        click.echo(f"Accepted event {event_id}; it belongs to no request.")
    else:
        click.echo(
            f"Accepted event {event_id} as your decision: request #{request.id} is now "
            f"{request.state.value}."
        )
