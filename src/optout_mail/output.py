"""How results look in a terminal: classifications, explanations, rule tables, scan summaries,
request tables and timelines (rich). All terminal rendering lives here; the JSON shapes belong
to the values themselves (`as_json`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from optout_mail.model import (
    Change,
    EventView,
    Outcome,
    RequestView,
    UserEventView,
    platform_name,
    request_label,
)
from optout_mail.pipeline import ScanSummary
from optout_mail.tables import Column, fitted_table

if TYPE_CHECKING:
    from optout_mail.model import Classification
    from optout_mail.rules import Explanation, RuleSet
    from optout_mail.rules.compiled import TermSet

AUTHENTICITY = {True: "authentic", False: "NOT authentic", None: "authenticity unknown"}


def describe_classification(where: str, result: Classification) -> str:
    """One line: what a mail means, e.g. for `classify`."""
    if result.outcome is None or result.kind is None:
        why = f" ({result.notes[0]})" if result.notes else ""
        return f"{where}: no match{why}"
    parts = [
        result.outcome.value,
        f"{result.platform}",
        result.kind.value,
        AUTHENTICITY[result.authentic],
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


def explanation_lines(explanation: Explanation) -> list[str]:
    """What `classify --explain` prints below the classification."""
    if explanation.pack is None:
        return [f"  sender {explanation.sender or '(none)'}: no rule pack covers it"]
    lines = [f"  sender {explanation.sender}: pack {explanation.pack}"]
    close = [t for t in explanation.traces if t.came_close]
    if len(close) < len(explanation.traces):
        hidden = len(explanation.traces) - len(close)
        lines.append(f"  ({hidden} rules that did not come close are not shown)")
    for trace in close:
        mark = "MATCH  " if trace.matched else ("blocked" if trace.blocked_by else "no     ")
        lines.append(f"  {mark} {trace.rule.id} (priority {trace.rule.priority})")
        lines.extend(f"            {reason}" for reason in trace.reasons)
    winner = explanation.classification.rule
    if winner:
        lines.append(f"  -> {winner} wins (highest priority among the matching rules)")
    lines.extend(
        f"  {note}"
        for note in explanation.classification.notes
        if note.startswith(("authenticity:", "warning:"))
    )
    return lines


def rules_check_lines(
    rule_set: RuleSet, samples: dict[str, dict[str, object]] | None = None
) -> list[str]:
    """The report of `rules check`: counts per language, outcome and provenance; the lexicon
    sets of each language; and, given the samples' expectations, their coverage."""
    all_rules = rule_set.rules
    lines = [f"{len(rule_set.packs)} pack(s), {len(all_rules)} rules, no problems found."]
    for title, counter in (
        ("language", Counter(r.language for r in all_rules)),
        ("outcome", Counter(f"{r.kind.value}/{r.outcome.value}" for r in all_rules)),
        ("provenance", Counter(r.source for r in all_rules)),
    ):
        counts = ", ".join(f"{key} {n}" for key, n in sorted(counter.items()))
        lines.append(f"  by {title}: {counts}")
    for pack in rule_set.packs:
        lines.append(f"  pack {pack.id}: senders {', '.join(sorted(pack.senders))}")
        lines.extend(_lexicon_lines(pack.lexicons))
    if samples is not None:
        lines.extend(_sample_lines(rule_set, samples))
    return lines


def _lexicon_lines(lexicons: dict[str, dict[str, TermSet]]) -> list[str]:
    """Terms per lexicon set and language: a set missing in one language is a gap."""
    languages = sorted(lexicons)
    names = sorted({name for sets in lexicons.values() for name in sets})
    if not names:
        return []
    lines = ["  lexicon (terms per set): " + " ".join(f"{lang:>4}" for lang in languages)]
    for name in names:
        counts = [
            len(lexicons[lang][name].terms) if name in lexicons[lang] else 0 for lang in languages
        ]
        cells = " ".join(f"{n:>4}" if n else "   -" for n in counts)
        lines.append(f"    {name:<22}{cells}")
    return lines


def _sample_lines(rule_set: RuleSet, expected: dict[str, dict[str, object]]) -> list[str]:
    """Samples per language and outcome, and the rules no sample exercises."""
    table: Counter[tuple[str, str]] = Counter()
    for entry in expected.values():
        if "language" in entry:
            table[(str(entry["language"]), f"{entry.get('kind')}/{entry['outcome']}")] += 1
    languages = sorted({lang for lang, _ in table})
    outcomes = sorted({outcome for _, outcome in table})
    lines = ["  samples (per language): " + " ".join(f"{lang:>4}" for lang in languages)]
    for outcome in outcomes:
        cells = " ".join(
            f"{table[(lang, outcome)]:>4}" if table[(lang, outcome)] else "   -"
            for lang in languages
        )
        lines.append(f"    {outcome:<22}{cells}")
    covered = {str(e.get("rule")) for e in expected.values()}
    missing = [r.id for r in rule_set.rules if r.id not in covered]
    lines.append(f"  rules without a sample: {', '.join(missing) if missing else 'none'}")
    return lines


def rule_rows(rule_set: RuleSet) -> list[dict[str, object]]:
    """Every rule as a flat dict, in the order rules are tried (`rules list [--json]`)."""
    return [
        {
            "id": r.id,
            "pack": pack.id,
            "language": r.language,
            "outcome": r.outcome.value,
            "kind": r.kind.value,
            "priority": r.priority,
            "source": r.source,
            "description": r.description,
            "file": r.path,
        }
        for pack in rule_set.packs
        for r in pack.rules
    ]


RULE_COLUMNS = (
    Column("id", essential=True),
    Column("lang", rank=1),
    Column("outcome", rank=0),
    Column("kind", rank=3),
    Column("prio", rank=2, justify="right"),
    Column("source", rank=4),
    Column("description", rank=5, wrap=True),
)


def print_rules(console: Console, rows: Sequence[dict[str, object]], *, wide: bool = False) -> None:
    keys = ("id", "language", "outcome", "kind", "priority", "source", "description")
    cells = [[escape(str(row[k])) for k in keys] for row in rows]
    console.print(fitted_table(console, RULE_COLUMNS, cells, wide=wide))


STATE_STYLE = {
    "honoured": "green",
    "rejected": "bold red",
    "needs_info": "yellow",
    "received": "cyan",
    "verifying": "cyan",
    "filed": "",
}


def describe_change(change: Change) -> str:
    """One line in plain words: what a recorded mail did."""
    event = change.event
    if change.request is None:
        why = "changed no request"
        if event.authentic is False:
            why = "failed the authenticity check: possible phishing, the ledger is unchanged"
        elif event.authentic is None and event.outcome is not Outcome.NOTICE:
            why = "could not be verified as Meta's: kept as evidence, the ledger is unchanged"
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


def print_scan(
    console: Console,
    summary: ScanSummary,
    requests: Sequence[RequestView],
    *,
    wide: bool = False,
) -> None:
    title = "Scan (dry run: nothing written)" if summary.dry_run else "Scan"
    columns = (
        Column("source", essential=True),
        Column("folder", essential=True),
        Column("examined", essential=True, justify="right"),
        Column("matched", rank=1, justify="right"),
        Column("would record" if summary.dry_run else "recorded", essential=True, justify="right"),
        Column("known", rank=2, justify="right"),
        Column("errors", rank=0, justify="right"),
    )
    rows = [
        [
            escape(f.source),
            escape(f.folder),
            *(str(n) for n in (f.examined, f.matched, f.recorded, f.duplicates, f.errors)),
        ]
        for f in summary.folders
    ]
    table = fitted_table(console, columns, rows, wide=wide, title=title)
    console.print(table)
    for problem in summary.problems:
        console.print(f"[yellow]problem:[/] {problem}", highlight=False)
    first = [f"{f.source}/{f.folder}" for f in summary.folders if f.first_scan and f.recorded]
    if first and not summary.dry_run:
        console.print(
            f"First scan of {', '.join(first)}: its mails are history, recorded without a popup "
            "each (one summary instead; a code still valid pops up on its own).",
            highlight=False,
        )
    worth_saying = [c for c in summary.changes if _worth_saying(c)]
    if worth_saying:
        console.print("[bold]What changed[/]")
        for change in worth_saying:
            console.print(f"  {describe_change(change)}", highlight=False)
    quiet = len(summary.changes) - len(worth_saying)
    if quiet:
        console.print(
            f"  ({quiet} more mail(s) recorded that changed no request: "
            "announcements, repeats; `requests show ID` lists them)"
        )
    if not summary.changes and not summary.dry_run:
        console.print("Nothing new.")
    if requests:
        print_requests(console, requests, wide=wide)


REQUEST_COLUMNS = (
    Column("id", essential=True, justify="right"),
    Column("platform", essential=True),
    Column("account", rank=0, wrap=True),
    Column("kind", rank=2),
    Column("state", essential=True),
    Column("filed", essential=True),
    Column("due", essential=True),
    Column("last mail", rank=1),
)


def print_requests(
    console: Console, requests: Sequence[RequestView], *, wide: bool = False
) -> None:
    """The requests table: id, platform, state, filed and due always in full; account, last
    mail and kind as the width allows (all of them with `wide`)."""
    rows = []
    for r in requests:
        style = STATE_STYLE.get(r.state)
        state = f"[{style}]{r.state}[/]" if style else str(r.state)
        if r.overdue:
            state += " [bold red](overdue)[/]"
        last = r.events[-1] if r.events else None
        rows.append(
            [
                str(r.id),
                escape(platform_name(r.platform)),
                escape(r.account),
                str(r.kind),
                state,
                r.filed_at[:10],
                r.due_at[:10] + (" (extended)" if r.extended else ""),
                f"{last.outcome} {last.received_at[:10] if last.received_at else ''}"
                if last
                else "",
            ]
        )
    console.print(fitted_table(console, REQUEST_COLUMNS, rows, wide=wide, title="Requests"))


def print_request(console: Console, request: RequestView) -> None:
    console.print(
        f"[bold]Request #{request.id}[/]: {request_label(request.platform, request.kind)} "
        f"for {request.account}",
        highlight=False,
    )
    console.print(f"  state      {request.state}{'  (OVERDUE)' if request.overdue else ''}")
    console.print(f"  filed      {request.filed_at}  ({request.created_by})")
    extended = "  (extended by two months)" if request.extended else ""
    console.print(f"  due        {request.due_at}{extended}")
    console.print("  timeline")
    if not request.events:
        console.print("    no mail from Meta yet")
    timeline: list[tuple[str, str]] = [
        (e.received_at or "", _event_line(e)) for e in request.events
    ]
    timeline += [(u.recorded_at, _user_event_line(u)) for u in request.user_events]
    for _, line in sorted(timeline, key=lambda item: item[0]):
        console.print(f"    {line}", highlight=False)


def _user_event_line(event: UserEventView) -> str:
    """The user's own event: "2025-06-02T10:00  you: received -> honoured (set by the user)",
    or "... you noted: TEXT"."""
    when = event.recorded_at[:16]
    if event.action == "set-state":
        return f"{when}  you: {event.state_before} -> {event.state_after} ({event.text})"
    return f"{when}  you noted: {event.text}"


def _event_line(event: EventView) -> str:
    auth = AUTHENTICITY
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


class ScanProgress:
    """A progress bar on stderr for a long scan (more than `threshold` mails in a folder), on a
    terminal only; it vanishes when done. Call it after each batch (`pipeline.Progress`)."""

    def __init__(self, console: Console, threshold: int = 200) -> None:
        self._console = console
        self._threshold = threshold
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, where: str, done: int, total: int | None) -> None:
        if self._progress is None:
            if max(done, total or 0) <= self._threshold or not self._console.is_terminal:
                return
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
        task = self._tasks.get(where)
        if task is None:
            task = self._tasks[where] = self._progress.add_task(where, total=total)
        self._progress.update(task, completed=done, total=total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
