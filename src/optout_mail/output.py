"""How results look in a terminal: scan summaries, request tables, timelines (rich).

Only presentation lives here; the JSON shapes belong to the values themselves (`as_json`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from optout_mail.ledger import Change, EventView, RequestView
from optout_mail.model import platform_name, request_label
from optout_mail.pipeline import ScanSummary

STATE_STYLE = {
    "honoured": "green", "rejected": "bold red", "needs_info": "yellow", "received": "cyan",
    "verifying": "cyan", "filed": "",
}  # fmt: skip


def describe_change(change: Change) -> str:
    """One line in plain words: what a recorded mail did."""
    event = change.event
    if change.request is None:
        why = (
            "failed the authenticity check: possible phishing, the ledger is unchanged"
            if event.authentic is False
            else "changed no request"
        )
        return f"{event.outcome} from {event.sender} {why}"
    request = change.request
    line = f"#{request.id} {request_label(request.platform, request.kind)} ({request.account}): "
    if change.state_changed:
        line += f"{event.state_before} -> {event.state_after}"
    else:
        line += f"{event.outcome} recorded, still {request.state}"
    if event.code:
        line += f", code {event.code}"
    if event.authentic is None:
        line += " (authenticity unknown)"
    return line


def _worth_saying(change: Change) -> bool:
    """State changes, codes and phishing warnings; not announcements or repeated answers."""
    return change.state_changed or bool(change.event.code) or change.event.authentic is False


def print_scan(console: Console, summary: ScanSummary, requests: Sequence[RequestView]) -> None:
    title = "Scan (dry run: nothing written)" if summary.dry_run else "Scan"
    table = Table("source", "folder", "examined", "matched",
                  "would record" if summary.dry_run else "recorded", "already known", "errors",
                  title=title, title_justify="left")  # fmt: skip
    for f in summary.folders:
        table.add_row(f.source, f.folder, str(f.examined), str(f.matched), str(f.recorded),
                      str(f.duplicates), str(f.errors))  # fmt: skip
    console.print(table)
    for problem in summary.problems:
        console.print(f"[yellow]problem:[/] {problem}", highlight=False)
    worth_saying = [c for c in summary.changes if _worth_saying(c)]
    if worth_saying:
        console.print("[bold]What changed[/]")
        for change in worth_saying:
            console.print(f"  {describe_change(change)}", highlight=False)
    quiet = len(summary.changes) - len(worth_saying)
    if quiet:
        console.print(f"  ({quiet} more mail(s) recorded that changed no request: "
                      "announcements, repeats; `requests show ID` lists them)")
    if not summary.changes and not summary.dry_run:
        console.print("Nothing new.")
    if requests:
        print_requests(console, requests)


def print_requests(console: Console, requests: Sequence[RequestView]) -> None:
    table = Table("id", "platform", "account", "kind", "state", "filed", "due", "last mail",
                  title="Requests", title_justify="left")  # fmt: skip
    for r in requests:
        style = STATE_STYLE.get(r.state)
        state = f"[{style}]{r.state}[/]" if style else r.state
        if r.overdue:
            state += " [bold red](overdue)[/]"
        last = r.events[-1] if r.events else None
        table.add_row(
            str(r.id), platform_name(r.platform), r.account, r.kind, state, r.filed_at[:10],
            r.due_at[:10] + (" (extended)" if r.extended else ""),
            f"{last.outcome} {last.received_at[:10] if last.received_at else ''}" if last else "",
        )  # fmt: skip
    console.print(table)


def print_request(console: Console, request: RequestView) -> None:
    console.print(
        f"[bold]Request #{request.id}[/]: {request_label(request.platform, request.kind)} "
        f"for {request.account}", highlight=False
    )
    console.print(f"  state      {request.state}{'  (OVERDUE)' if request.overdue else ''}")
    console.print(f"  filed      {request.filed_at}  ({request.created_by})")
    extended = "  (extended by two months)" if request.extended else ""
    console.print(f"  due        {request.due_at}{extended}")
    console.print("  timeline")
    if not request.events:
        console.print("    no mail from Meta yet")
    for event in request.events:
        console.print(f"    {_event_line(event)}", highlight=False)


def _event_line(event: EventView) -> str:
    auth = {True: "authentic", False: "NOT authentic", None: "authenticity unknown"}
    move = (
        f"{event.state_before} -> {event.state_after}"
        if event.state_before != event.state_after
        else "no change"
    )
    where = f"{event.source}/{event.folder}" if event.folder else event.source
    if event.uid is not None:
        where += f" uid {event.uid}"
    code = f", code {event.code}" if event.code else ""
    ref = f", reference {event.reference}" if event.reference else ""
    return (
        f"{(event.received_at or '')[:16]}  {event.outcome}{code}{ref}  ({move}; "
        f"{auth[event.authentic]}; rule {event.rule})\n"
        f"      {event.subject!r} from {event.sender}, Message-ID {event.message_id}, {where}"
    )
