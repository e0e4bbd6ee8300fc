"""The ledger as one self-contained HTML page: every request, its mails, the legal clock, and
for a refused or late request what to do next, with a draft complaint filled in.

Pure: request views and `now` in, an HTML string out (inline CSS, no scripts, no external
resources). Every value from a mail is escaped: subjects and senders are written by strangers.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from optout_mail.complaint import (
    DPC_FORM,
    EDPB_MEMBERS,
    ICO_FORM,
    answer_event,
    complaint_draft,
    day,
    days_between,
    days_late,
    long_day,
    needs_complaint,
)
from optout_mail.model import (
    COMPLAINT_HINT,
    EventView,
    Kind,
    Outcome,
    RequestView,
    State,
    platform_name,
    request_label,
)

STATE_LABEL = {
    State.FILED: "filed, no answer yet",
    State.VERIFYING: "code sent, no answer yet",
    State.RECEIVED: "acknowledged, no answer yet",
    State.HONOURED: "honoured",
    State.REJECTED: "refused",
    State.NEEDS_INFO: "Meta wants more information",
}
AUTHENTICITY = {
    True: ("verified", "ok"),
    False: ("FAILED: not Meta", "bad"),
    None: ("unverified", "unknown"),
}

CSS = """
:root{--ink:#1d2430;--muted:#5b6577;--line:#dde2ea;--bg:#f4f6f9;--card:#fff;--ok:#17803d;
--ok-bg:#e3f5e9;--bad:#b42318;--bad-bg:#fdecea;--warn:#9a5b00;--warn-bg:#fff4dc;--wait:#2456a6;
--wait-bg:#e6eefb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:28px 24px 48px}
h1{font-size:28px;margin:0 0 4px;letter-spacing:-.01em}
h2{font-size:20px;margin:0}
h3{font-size:15px;margin:20px 0 8px;text-transform:uppercase;letter-spacing:.06em;
color:var(--muted)}
a{color:var(--wait)}
.sub{color:var(--muted);margin:0 0 18px}
.tally{display:flex;flex-wrap:wrap;gap:10px;list-style:none;padding:0;margin:0 0 22px}
.tally li{background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:8px 14px;min-width:120px}
.tally b{display:block;font-size:22px;line-height:1.2}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:20px 22px;
margin:0 0 20px;box-shadow:0 1px 2px rgba(20,30,50,.05)}
table{width:100%;border-collapse:collapse;font-size:14px}
th{text-align:left;font-weight:600;color:var(--muted);border-bottom:2px solid var(--line);
padding:6px 8px;white-space:nowrap}
td{border-bottom:1px solid var(--line);padding:7px 8px;vertical-align:top}
tr:last-child td{border-bottom:0}
td.subject{overflow-wrap:break-word;min-width:180px}
td.rule{font-size:12px;color:var(--muted);min-width:120px}
td.sender{min-width:150px}
.code{display:block;font-size:12px;color:var(--muted)}
.nowrap{white-space:nowrap}
.badge{display:inline-block;border-radius:999px;padding:2px 10px;font-size:13px;
font-weight:600;white-space:nowrap;background:var(--wait-bg);color:var(--wait)}
.badge.ok,.s-honoured{background:var(--ok-bg);color:var(--ok)}
.badge.bad,.s-rejected,.s-overdue{background:var(--bad-bg);color:var(--bad)}
.badge.unknown,.s-needs_info{background:var(--warn-bg);color:var(--warn)}
.head{display:flex;justify-content:space-between;align-items:center;gap:12px;flex-wrap:wrap}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(160px,1fr));gap:4px 24px;
margin:14px 0 0}
.facts div{min-width:0}
.facts dt{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.facts dd{margin:0;overflow-wrap:anywhere}
.clock{margin-top:14px}
.bar{height:8px;border-radius:4px;background:var(--line);overflow:hidden;margin:6px 0}
.bar span{display:block;height:100%;background:var(--wait)}
.late .bar span{background:var(--bad)}
.done .bar span{background:var(--ok)}
.next{margin-top:18px;border-left:4px solid var(--bad);background:#fffafa;padding:12px 16px;
border-radius:0 8px 8px 0}
.next.calm{border-color:var(--ok);background:#f7fcf8}
.next.info{border-color:var(--warn);background:#fffcf3}
.next h3{margin-top:0;color:var(--ink)}
.next ol{margin:6px 0;padding-left:22px}
.draft{white-space:pre-wrap;background:var(--card);border:1px dashed var(--muted);padding:14px;
border-radius:8px;font:13px/1.5 ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;
overflow-wrap:anywhere}
.muted{color:var(--muted)}
footer{color:var(--muted);font-size:13px;margin-top:28px}
@media (max-width:900px),print{
main{padding:16px 12px}
.card{padding:14px}
table{font-size:12px}
th,td{padding:5px 4px}
th,.requests td.state{white-space:normal}
td.subject,td.sender,td.rule{min-width:0;overflow-wrap:anywhere}
}
@page{size:A4;margin:14mm}
@media print{
body{background:#fff;font-size:11pt}
main{max-width:none;padding:0}
.card{box-shadow:none;border-color:#bbb;break-inside:auto}
.head,.facts,.clock,thead,tr{break-inside:avoid}
.request{break-before:page}
.badge,.bar span,.tally li,.next{-webkit-print-color-adjust:exact;print-color-adjust:exact}
a{color:inherit;text-decoration:none}
a[href^="http"]:not(.url)::after{content:" <" attr(href) ">";font-size:9pt;color:#555}
.draft{border-color:#999;break-inside:auto}
}
"""


def render_report(
    requests: Sequence[RequestView],
    *,
    now: datetime,
    unattached: Sequence[EventView] = (),
    title: str = "Your objections to Meta",
) -> str:
    """The whole report: an overview, one card per request, and the mails that changed no
    request (phishing attempts, unverified copies) at the end."""
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} – {day(now)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<main>\n<h1>{escape(title)}</h1>\n"
        f'<p class="sub">From the optout-mail ledger, {escape(long_day(now))} '
        f"{now:%H:%M} UTC. {len(requests)} request(s); those that need you come first.</p>\n",
        _tally(requests),
        _overview(requests),
        *(_request_card(r, now) for r in sorted(requests, key=_urgency)),
        _unattached(unattached),
        '<footer>Dates are UTC. "Verified" means the mail was shown to come from Meta (DKIM or '
        "DMARC passing for Meta's domain); only verified mails change a request. The original "
        "mails and their SHA-256 checksums: <code>optout-mail evidence ID</code>.</footer>\n",
        "</main>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _urgency(r: RequestView) -> tuple[int, int]:
    """Refused or late first, then Meta's questions, then what is running, then the done."""
    if needs_complaint(r):
        return 0, r.id
    order = {State.NEEDS_INFO: 1, State.HONOURED: 3}
    return order.get(r.state, 2), r.id


def _tally(requests: Sequence[RequestView]) -> str:
    counts = [
        ("honoured", sum(r.state is State.HONOURED for r in requests)),
        ("rejected", sum(r.state is State.REJECTED for r in requests)),
        ("overdue", sum(r.overdue for r in requests)),
        ("needs_info", sum(r.state is State.NEEDS_INFO for r in requests)),
    ]
    waiting = sum(r.state in (State.FILED, State.VERIFYING, State.RECEIVED) for r in requests)
    counts.append(("waiting", waiting - counts[2][1]))
    names = {"rejected": "refused", "needs_info": "need information", "waiting": "waiting"}
    items = "".join(
        f'<li class="s-{key}"><b>{n}</b>{names.get(key, key)}</li>' for key, n in counts
    )
    return f'<ul class="tally">{items}</ul>\n'


def _state_badge(request: RequestView, now: datetime) -> str:
    if request.overdue:
        late = days_late(request, now)
        return f'<span class="badge bad">overdue by {late} day{"s" * (late != 1)}</span>'
    css = {State.HONOURED: "ok", State.REJECTED: "bad", State.NEEDS_INFO: "unknown"}
    return (
        f'<span class="badge {css.get(request.state, "")}">'
        f"{escape(STATE_LABEL[request.state])}</span>"
    )


def _overview(requests: Sequence[RequestView]) -> str:
    if not requests:
        return '<section class="card"><p>No requests in the ledger yet.</p></section>\n'
    rows = []
    for r in requests:
        last = r.events[-1] if r.events else None
        last_text = (
            f'{escape(last.outcome.value)} <span class="nowrap">{day(last.received_at)}</span>'
            if last
            else "none"
        )
        overdue = ' <span class="badge bad">overdue</span>' if r.overdue else ""
        rows.append(
            f'<tr class="request-row" id="row-{r.id}" data-request="{r.id}">'
            f'<td><a href="#request-{r.id}">#{r.id}</a></td>'
            f"<td>{escape(request_label(r.platform, r.kind))}</td>"
            f"<td>{escape(r.account)}</td>"
            f'<td class="nowrap state"><span class="badge {_css(r.state)}">'
            f"{escape(r.state.value)}</span>{overdue}</td>"
            f'<td class="nowrap">{day(r.filed_at)}</td>'
            f'<td class="nowrap">{day(r.due_at)}{" (ext.)" if r.extended else ""}</td>'
            f"<td>{last_text}</td></tr>"
        )
    return (
        '<section class="card"><h2>Overview</h2>\n<table class="requests"><thead><tr>'
        "<th>#</th><th>Request</th><th>Account</th><th>State</th><th>Filed</th><th>Due</th>"
        "<th>Last mail</th></tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table>"
        "</section>\n"
    )


def _css(state: State) -> str:
    return {State.HONOURED: "ok", State.REJECTED: "bad", State.NEEDS_INFO: "unknown"}.get(state, "")


def _request_card(request: RequestView, now: datetime) -> str:
    r = request
    filed_by = "recorded by you" if r.created_by == "user" else "dated by Meta's first mail"
    facts = [
        ("Account", escape(r.account)),
        ("Platform", escape(platform_name(r.platform))),
        (
            "Form",
            "objection (Art. 21 GDPR)" if r.kind is Kind.OBJECTION else "third-party information",
        ),
        (
            "Meta's reference",
            escape(r.reference) if r.reference else '<span class="muted">none</span>',
        ),
        ("Filed", f'{day(r.filed_at)} <span class="muted">({filed_by})</span>'),
    ]
    facts_html = "".join(f"<div><dt>{k}</dt><dd>{v}</dd></div>" for k, v in facts)
    return (
        f'<article class="card request" id="request-{r.id}">\n<div class="head">'
        f"<h2>#{r.id} {escape(request_label(r.platform, r.kind))}</h2>"
        f'{_state_badge(r, now)}</div>\n<dl class="facts">{facts_html}</dl>\n'
        f"{_clock(r, now)}<h3>Mails from Meta</h3>\n{_timeline(r.events)}{_next_steps(r, now)}"
        "</article>\n"
    )


def _clock(r: RequestView, now: datetime) -> str:
    """Filed, due, and where the request stands against the deadline, with a bar."""
    total = max(days_between(r.filed_at, r.due_at), 1)
    answer = answer_event(r)
    extended = " — extended by two months, as Meta announced" if r.extended else ""
    if answer is not None:
        took = days_between(r.filed_at, answer.received_at or r.updated_at)
        status, css = f"answered on {day(answer.received_at)}, after {took} days", "done"
        elapsed = min(took, total)
    elif r.overdue:
        late = days_late(r, now)
        status, css, elapsed = f"<b>overdue by {late} day{'s' * (late != 1)}</b>", "late", total
    elif r.state is State.NEEDS_INFO:
        status, css = "Meta asked you for more information: the next step is yours", "info"
        elapsed = min(days_between(r.filed_at, now), total)
    else:
        left = days_between(now, r.due_at)
        status, css = f"{left} day{'s' * (left != 1)} left for Meta to answer", "wait"
        elapsed = min(days_between(r.filed_at, now), total)
    width = round(100 * max(elapsed, 0) / total)
    return (
        f'<div class="clock {css}"><b>Legal clock</b> (Art. 12(3) GDPR: one month, '
        f"extendable by two): filed {day(r.filed_at)}, due {day(r.due_at)}{extended}; "
        f'{status}.<div class="bar"><span style="width:{width}%"></span></div></div>\n'
    )


def _timeline(events: Sequence[EventView], *, why: bool = False) -> str:
    if not events:
        return '<p class="muted">No mail from Meta yet.</p>\n'
    rows = []
    for e in events:
        label, css = AUTHENTICITY[e.authentic]
        if why:
            effect = escape(_why_unattached(e))
        elif e.state_before != e.state_after:
            effect = f"{escape(str(e.state_before))} → {escape(str(e.state_after))}"
        else:
            effect = '<span class="muted">no change</span>'
        code = f'<span class="code">{escape(e.code)}</span>' if e.code else ""
        rows.append(
            f'<tr class="event-row" data-event="{e.id}">'
            f'<td class="nowrap">{escape((e.received_at or "")[:16].replace("T", " "))}</td>'
            f"<td>{escape(e.outcome.value)}{code}</td>"
            f'<td class="sender">{_breakable(e.sender)}</td>'
            f'<td class="subject">{escape(e.subject)}</td>'
            f'<td><span class="badge {css}">{label}</span></td>'
            f'<td class="rule">{_breakable(e.rule)}</td><td>{effect}</td></tr>'
        )
    last = "Why it changed nothing" if why else "Effect"
    return (
        '<table class="timeline"><thead><tr><th>Date (UTC)</th><th>Outcome</th><th>Sender</th>'
        f"<th>Subject</th><th>Authenticity</th><th>Rule</th><th>{last}</th></tr></thead>\n"
        "<tbody>\n" + "\n".join(rows) + "\n</tbody></table>\n"
    )


def _breakable(text: str) -> str:
    """Escaped, with line-break chances after dots and before the @ of an address."""
    return escape(text).replace(".", ".<wbr>").replace("@", "<wbr>@")


def _why_unattached(e: EventView) -> str:
    if e.authentic is False:
        return "failed the authenticity check: possible phishing, do not click its links"
    if e.outcome is Outcome.NOTICE:
        return "an announcement, not an answer"
    if e.authentic is None:
        return f"could not be verified; if you trust it: optout-mail requests confirm {e.id}"
    return e.note or "it belongs to no request"


def _next_steps(r: RequestView, now: datetime) -> str:
    if needs_complaint(r):
        return _complaint(r, now)
    if r.state is State.HONOURED:
        return (
            '<section class="next calm"><h3>Nothing to do</h3><p>Meta says it honours your '
            "request. Keep this report and the original mails (<code>optout-mail evidence "
            f"{r.id}</code>) in case Meta's practice changes.</p></section>\n"
        )
    if r.state is State.NEEDS_INFO:
        return (
            '<section class="next info"><h3>What you can do next</h3><p>Answer Meta\'s last '
            "mail with what it asks for. If it asks for more than it needs to identify you "
            f"or to decide, you can complain instead: {escape(COMPLAINT_HINT)}</p></section>\n"
        )
    return (
        '<section class="next calm"><h3>Waiting for Meta</h3><p>Meta must answer by '
        f"{day(r.due_at)}. optout-mail tells you when it answers, and when it is late."
        "</p></section>\n"
    )


def _complaint(r: RequestView, now: datetime) -> str:
    answer = answer_event(r)
    if r.state is State.REJECTED and answer is not None:
        happened = (
            f"Meta refused this request on {day(answer.received_at)} "
            f"(“{escape(answer.subject)}”, from {escape(answer.sender)})."
        )
    else:
        late = days_late(r, now)
        happened = f"Meta has not answered: the deadline was {day(r.due_at)}, {late} day(s) ago."
    return (
        f'<section class="next"><h3>What you can do next</h3><p>{happened}</p>\n<ol>\n'
        f"<li>Complain to the Irish Data Protection Commission, Meta's lead authority: "
        f'<a class="url" href="{DPC_FORM}">{DPC_FORM}</a> — or to the authority of the country '
        f'where you live or work (<a href="{EDPB_MEMBERS}">list of EU authorities</a>; in the UK '
        "the ICO, "
        f'<a class="url" href="{ICO_FORM}">{ICO_FORM}</a>). It is free.</li>\n'
        f"<li>Attach the evidence: <code>optout-mail evidence {r.id} --output "
        f"request-{r.id}.zip</code> (Meta's original mails with their checksums).</li>\n"
        "<li>Copy the draft below, fill in what is in [brackets], and check every fact.</li>\n"
        '</ol>\n<p class="muted"><b>DRAFT</b> complaint, made from the ledger:</p>\n'
        f'<pre class="draft">{escape(complaint_draft(r, now))}</pre></section>\n'
    )


def _unattached(events: Sequence[EventView]) -> str:
    if not events:
        return ""
    return (
        '<section class="card"><h2>Mails that changed no request</h2><p class="muted">'
        "Mails that failed the authenticity check (possible phishing), could not be verified, "
        "or were announcements. They are kept as evidence.</p>\n"
        f"{_timeline(events, why=True)}</section>\n"
    )
