"""Benchmarks for optout-mail, each number beside a baseline and reported as a ratio.

Classify cost beyond parse(), parse() against stdlib email and raw mail-parser, hostile mails
(time and memory, one child process each) and `scan --source` throughput. See README.md.
"""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import gc
import json
import math
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import tracemalloc
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import mailparser

from optout_mail.ledger import Ledger
from optout_mail.model import Message, RawMail
from optout_mail.parse import (
    MAX_PARSE_BYTES,
    MAX_TEXT_CHARS,
    html_to_text,
    parse,
)
from optout_mail.pipeline import ScanSummary, run_source
from optout_mail.rules import (
    RuleSet,
    classify,
    explain,
    iter_rules,
    load_rule_set,
    normalise,
)
from optout_mail.rules.authresults import parse_auth_header
from optout_mail.sources.local import BATCH_SIZE, LocalSource

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
MiB = 1 << 20
NOW = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
Json = dict[str, Any]


@dataclass(frozen=True)
class Profile:
    """How much work one run does. --quick shrinks the counts, never the hostile sizes (it
    skips the one hostile case that takes seconds)."""

    generated: int  # noise mails added to the samples in sections 1-2
    reps: int  # repetitions per mail in sections 1-2
    classify_reps: int  # repetitions of classify() on pre-parsed messages
    pattern_reps: int  # best of this many searches per pattern on the hostile text
    hostile_reps: int  # timed runs per hostile case and implementation
    traced: bool  # one more run under tracemalloc (the peak RSS is always measured)
    quick: bool  # skip the hostile cases that take seconds
    scan_mails: int  # .eml files for the scan benchmark
    scan_reps: int


FULL = Profile(
    generated=500,
    reps=3,
    classify_reps=5,
    pattern_reps=2,
    hostile_reps=2,
    traced=True,
    scan_mails=2000,
    scan_reps=2,
    quick=False,
)
QUICK = Profile(
    generated=40,
    reps=1,
    classify_reps=1,
    pattern_reps=1,
    hostile_reps=1,
    traced=False,
    scan_mails=300,
    scan_reps=1,
    quick=True,
)


# ---------------------------------------------------------------------------------------------
# Small helpers.


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def us(ns: float) -> float:
    return round(ns / 1000, 1)


def ms(ns: float) -> float:
    return round(ns / 1e6, 2)


def ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if b else None


@contextmanager
def no_gc() -> Iterator[None]:
    """Like timeit: no collector pauses inside timed loops (collected once before)."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def timed(fn: Callable[..., object], *args: object) -> int:
    """Nanoseconds taken by fn(*args)."""
    t0 = time.perf_counter_ns()
    fn(*args)
    return time.perf_counter_ns() - t0


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> Json:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "mail_parser": _version("mail-parser"),
        "optout_mail": _version("optout-mail"),
    }


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------------------------------
# Inputs: the samples, and generated noise (a real mailbox is mostly not Meta's replies).

LANG_TEXT = {
    "en": [
        "Thanks for your message.",
        "See you on Thursday at the usual place.",
        "The invoice for June is attached.",
        "Could you send me the slides from Monday?",
        "Our team will get back to you within two business days.",
    ],
    "de": [
        "Vielen Dank für Ihre Nachricht.",
        "Wir sehen uns am Donnerstag.",
        "Die Rechnung für Juni finden Sie im Anhang.",
        "Schöne Grüße aus München.",
    ],
    "fr": [
        "Merci pour votre message.",
        "À jeudi au même endroit.",
        "Veuillez trouver ci-joint la facture de juin.",
        "Bonne journée à vous.",
    ],
    "es": [
        "Gracias por tu mensaje.",
        "Nos vemos el jueves.",
        "Adjunto la factura de junio.",
        "Un saludo desde Madrid.",
    ],
    "it": ["Grazie per il messaggio.", "Ci vediamo giovedì.", "In allegato la fattura di giugno."],
    "nl": ["Bedankt voor je bericht.", "Tot donderdag.", "De factuur van juni zit in de bijlage."],
    "pl": ["Dziękuję za wiadomość.", "Do zobaczenia w czwartek.", "W załączniku faktura."],
    "pt": ["Obrigado pela sua mensagem.", "Até quinta-feira.", "Segue em anexo a fatura."],
    "sv": ["Tack för ditt meddelande.", "Vi ses på torsdag.", "Fakturan för juni är bifogad."],
}
META_NOTES = [
    ("{name} commented on your post", '{name} commented on your post: "Great photo!"'),
    ("{name} and 3 others reacted to your photo", "See who reacted to your photo."),
    ("You have 4 new notifications", "A lot has happened on Facebook since you last logged in."),
    ("New login to your account", "We noticed a new login from Chrome on Windows near Berlin."),
    ("{code} is your Facebook confirmation code", "Enter this code to confirm your account."),
    ("{name} sent you a message", "You have a new message from {name} on Messenger."),
    ("{name} started following you", "{name} (@{handle}) started following you on Instagram."),
    ("Your weekly Page summary", "Your Page reached 1,204 people this week."),
]
NAMES = [
    "Anna Schmidt",
    "Luca Rossi",
    "Marie Dubois",
    "Jan de Vries",
    "Ola Nordmann",
    "Piotr Nowak",
    "Sofia García",
    "João Silva",
    "Erik Svensson",
    "Sam Taylor",
]
META_SENDERS = [
    ("Facebook", "notification@facebookmail.com", "facebookmail.com"),
    ("Instagram", "no-reply@mail.instagram.com", "mail.instagram.com"),
    ("Facebook", "security@facebookmail.com", "facebookmail.com"),
    ("Threads", "no-reply@threads.net", "threads.net"),
]
LOOKALIKES = [
    "faceb00k-support.net",
    "instagrarn-help.com",
    "facebook-privacy-centre.org",
    "meta-whatsapp-security.com",
]
KINDS = ("personal", "newsletter", "html_only", "attachment", "meta_note", "lookalike")
WEIGHTS = (24, 24, 10, 7, 30, 5)


@dataclass(frozen=True)
class Mail:
    name: str
    group: str  # samples | non-Meta | Meta notif. | lookalike
    data: bytes


def load_samples() -> list[Mail]:
    return [
        Mail(str(p.relative_to(SAMPLES)), "samples", p.read_bytes())
        for p in sorted(SAMPLES.rglob("*.eml"))
    ]


def _headers(msg: EmailMessage, rnd: random.Random, sender: str, domain: str, n: int) -> None:
    auth = (
        f"mx.example.org; dkim=pass header.d={domain} header.s=s1 header.b=Ab12; "
        f"spf=pass smtp.mailfrom={sender}; dmarc=pass header.from={domain}"
    )
    msg["Authentication-Results"] = auth
    for hop in range(rnd.randint(2, 4)):
        msg["Received"] = (
            f"from mail{hop}.{domain} (mail{hop}.{domain} [192.0.2.{hop + 10}]) "
            f"by mx.example.org (Postfix) with ESMTPS id {rnd.getrandbits(40):X} "
            f"for <me@example.net>; {format_datetime(NOW)}"
        )
    msg["DKIM-Signature"] = (
        f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s1; "
        f"h=from:to:subject:date; bh={'A' * 44}; b={'B' * 340}"
    )
    msg["Date"] = format_datetime(NOW - timedelta(minutes=n * 7))
    msg["Message-ID"] = f"<gen-{n}-{rnd.getrandbits(64):x}@{domain}>"
    msg["To"] = "Me <me@example.net>"
    msg["MIME-Version"] = "1.0"


def _prose(rnd: random.Random, lang: str, sentences: int) -> str:
    lines = LANG_TEXT[lang]
    paragraphs = []
    while sentences > 0:
        k = min(sentences, rnd.randint(2, 5))
        paragraphs.append(" ".join(rnd.choice(lines) for _ in range(k)))
        sentences -= k
    return "\n\n".join(paragraphs)


def _html(rnd: random.Random, title: str, text: str, rows: int) -> str:
    cell = (
        '<tr><td style="font-family:Helvetica,Arial,sans-serif;font-size:16px;'
        'color:#1c1e21;padding:0 0 12px 0">{}</td></tr>'
    )
    body = "".join(cell.format(p) for p in text.split("\n\n"))
    body += "".join(
        cell.format(
            f'<a href="https://example.com/item/{rnd.getrandbits(32)}">'
            f"Item {i}</a> – {rnd.choice(LANG_TEXT['en'])}"
        )
        for i in range(rows)
    )
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>'
        '<style>td{font-size:16px}</style></head><body><table width="100%">'
        f"{body}</table></body></html>"
    )


def make_noise(rnd: random.Random, n: int) -> Mail:
    kind = rnd.choices(KINDS, WEIGHTS)[0]
    msg = EmailMessage()
    lang = rnd.choice(list(LANG_TEXT))
    name = rnd.choice(NAMES)
    if kind in ("meta_note", "lookalike"):
        display, sender, domain = rnd.choice(META_SENDERS)
        if kind == "lookalike":
            domain = rnd.choice(LOOKALIKES)
            sender = f"security@{domain}"
        subject, line = rnd.choice(META_NOTES)
        fill = {
            "name": name,
            "code": str(rnd.randint(100000, 999999)),
            "handle": name.split()[0].lower(),
        }
        subject, line = subject.format(**fill), line.format(**fill)
        msg["From"] = f"{display} <{sender}>"
        msg["Subject"] = subject
        _headers(msg, rnd, sender, domain, n)
        msg["X-Mailer"] = "ZuckMail [version 1.00]"
        msg["List-Unsubscribe"] = f"<https://www.facebook.com/o.php?k={rnd.getrandbits(48):x}>"
        footer = (
            "Meta Platforms Ireland Ltd., Merrion Road, Dublin 4, Ireland\n"
            "This message was sent to me@example.net. To help keep your account secure, "
            "please don't forward this email."
        )
        text = f"Hi,\n\n{line}\n\n{footer}"
        msg.set_content(text)
        msg.add_alternative(_html(rnd, subject, text, rnd.randint(2, 10)), subtype="html")
        group = "lookalike" if kind == "lookalike" else "Meta notif."
        return Mail(f"gen/{n:05d}-{kind}.eml", group, msg.as_bytes())
    domain = rnd.choice(["example.org", "example.com", "mail.example.net", "shop.example"])
    sender = f"{name.split()[0].lower()}@{domain}"
    msg["From"] = f"{name} <{sender}>"
    msg["Subject"] = rnd.choice(LANG_TEXT[lang])[:-1]
    _headers(msg, rnd, sender, domain, n)
    text = _prose(rnd, lang, rnd.randint(3, 40))
    if kind == "html_only":
        msg.set_content(_html(rnd, "Order", text, rnd.randint(10, 60)), subtype="html")
    else:
        msg.set_content(text)
    if kind == "newsletter":
        msg["List-Unsubscribe"] = f"<mailto:unsubscribe@{domain}>"
        msg.add_alternative(_html(rnd, "News", text, rnd.randint(10, 80)), subtype="html")
    elif kind == "attachment":
        blob = rnd.randbytes(rnd.randint(20_000, 200_000))
        msg.add_attachment(blob, maintype="application", subtype="pdf", filename="invoice.pdf")
    return Mail(f"gen/{n:05d}-{kind}.eml", "non-Meta", msg.as_bytes())


def generated(count: int, seed: int) -> list[Mail]:
    rnd = random.Random(seed)
    return [make_noise(rnd, n) for n in range(count)]


# ---------------------------------------------------------------------------------------------
# The three parsers of section 2 and what each one returns.


def parse_stdlib(data: bytes) -> int:
    """Baseline: stdlib email (compat32) and a decoded payload of every leaf part."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    total = 0
    for part in msg.walk():
        if not part.is_multipart():
            payload = part.get_payload(decode=True)
            total += len(payload) if isinstance(payload, bytes) else 0
    return total


def parse_mailparser(data: bytes) -> int:
    """Baseline: mail-parser as is, without our truncation, selection and HTML fallback."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return len(mailparser.parse_from_bytes(data).body)


def parse_ours(data: bytes) -> Message:
    return parse(RawMail(data=data, origin="bench"))


# ---------------------------------------------------------------------------------------------
# Sections 1 and 2: per-mail timings on samples + generated noise.


def time_mails(mails: Sequence[Mail], rules: RuleSet, reps: int) -> dict[str, list[list[int]]]:
    """Per variant, per mail, `reps` timings in ns. The variants are interleaved per mail and
    their order rotates, so that drift and cache effects hit all of them alike."""
    variants: dict[str, Callable[[bytes], object]] = {
        "stdlib": parse_stdlib,
        "mailparser": parse_mailparser,
        "parse": parse_ours,
        "parse+classify": lambda d: classify(parse_ours(d), rules),
    }
    names = list(variants)
    out: dict[str, list[list[int]]] = {k: [[] for _ in mails] for k in names}
    with no_gc():
        for rep in range(reps):
            for i, mail in enumerate(mails):
                for k in range(len(names)):
                    name = names[(i + rep + k) % len(names)]
                    out[name][i].append(timed(variants[name], mail.data))
    return out


def time_classify(messages: Sequence[Message], rules: RuleSet, reps: int) -> list[int]:
    """Pure rule-engine time: classify() on messages parsed once; median of `reps` per mail."""
    per_mail: list[list[int]] = [[] for _ in messages]
    with no_gc():
        for _ in range(reps):
            for i, message in enumerate(messages):
                per_mail[i].append(timed(classify, message, rules))
    return [int(statistics.median(t)) for t in per_mail]


def check_samples(
    mails: Sequence[Mail], messages: Sequence[Message], rules: RuleSet
) -> tuple[int, int, list[str]]:
    """(correct, total, wrong names) against samples/expected.toml: outcome and rule."""
    expected = tomllib.loads((SAMPLES / "expected.toml").read_text(encoding="utf-8"))
    ok, wrong = 0, []
    for mail, message in zip(mails, messages, strict=True):
        if mail.group != "samples" or mail.name not in expected:
            continue
        got = classify(message, rules)
        want = expected[mail.name]
        if (got.outcome.value if got.outcome else "none") == want.get("outcome") and (
            got.rule == want.get("rule")
        ):
            ok += 1
        else:
            wrong.append(mail.name)
    return ok, ok + len(wrong), wrong


def rules_tried(message: Message, rules: RuleSet) -> tuple[int, bool]:
    """How many rules classify() evaluates for this message (it stops at the first match),
    and whether one matched."""
    traces = explain(message, rules).traces
    for n, trace in enumerate(traces, 1):
        if trace.matched:
            return n, True
    return len(traces), False


def bench_mails(mails: Sequence[Mail], rules: RuleSet, prof: Profile) -> Json:
    log(f"[1-2] {len(mails)} mails x {prof.reps} reps, 4 variants each ...")
    small = mails[:: max(1, len(mails) // 40)]
    time_mails(small, rules, 1)  # warm-up: lazy imports (mailparser, bs4, authres), caches
    raw = time_mails(mails, rules, prof.reps)
    med = {k: [statistics.median(t) for t in v] for k, v in raw.items()}
    messages = [parse_ours(m.data) for m in mails]
    time_classify(messages[:40], rules, 1)
    pure = time_classify(messages, rules, prof.classify_reps)
    tried: dict[str, list[int]] = {"matched": [], "unmatched": []}
    for message in messages:
        n, matched = rules_tried(message, rules)
        if n:  # only Meta-domain (and lookalike) mails reach the rules
            tried["matched" if matched else "unmatched"].append(n)
    groups: dict[str, list[int]] = {"all": list(range(len(mails)))}
    for i, mail in enumerate(mails):
        groups.setdefault(mail.group, []).append(i)
    classify_rows, parser_rows = {}, {}
    for group, idx in groups.items():
        beyond = [med["parse+classify"][i] - med["parse"][i] for i in idx]
        tot = {k: sum(med[k][i] for i in idx) for k in med}
        classify_rows[group] = {
            "mails": len(idx),
            "parse_median_us": us(statistics.median(med["parse"][i] for i in idx)),
            "classify_beyond_parse_median_us": us(statistics.median(beyond)),
            "classify_beyond_parse_p95_us": us(pct(beyond, 95)),
            "classify_pure_median_us": us(statistics.median(pure[i] for i in idx)),
            "classify_pure_p95_us": us(pct([pure[i] for i in idx], 95)),
            "classify_pure_max_us": us(max(pure[i] for i in idx)),
            "ratio_parse_classify_over_parse": ratio(tot["parse+classify"], tot["parse"]),
        }
        parser_rows[group] = {
            "mails": len(idx),
            **{
                f"{k}_median_us": us(statistics.median(med[k][i] for i in idx))
                for k in ("parse", "stdlib", "mailparser")
            },
            **{
                f"{k}_mails_per_s": round(len(idx) / (tot[k] / 1e9))
                for k in ("parse", "stdlib", "mailparser")
            },
            "ratio_ours_over_stdlib": ratio(tot["parse"], tot["stdlib"]),
            "ratio_ours_over_mailparser": ratio(tot["parse"], tot["mailparser"]),
        }
    ok, total, wrong = check_samples(mails, messages, rules)
    slowest = sorted(range(len(mails)), key=lambda i: -pure[i])[:3]
    return {
        "classify": classify_rows,
        "parsers": parser_rows,
        "samples_correct": {"ok": ok, "total": total, "wrong": wrong},
        "rules_in_rule_set": len(rules.rules),
        "rules_tried_per_meta_mail": {
            k: {
                "mails": len(v),
                "median": statistics.median(v) if v else None,
                "max": max(v, default=None),
            }
            for k, v in tried.items()
        },
        "slowest_classify": [{"mail": mails[i].name, "us": us(pure[i])} for i in slowest],
        "hot_spots": bench_hot_spots(mails, sum(med["parse"]), sum(med["mailparser"])),
    }


def bench_hot_spots(
    mails: Sequence[Mail], parse_total_ns: float, mailparser_total_ns: float
) -> list[Json]:
    """Where parse() spends its time beyond mail-parser: the HTML-to-text fallback
    (BeautifulSoup), and for comparison the Authentication-Results parser, which parse() no
    longer runs (authenticity parses the headers only for matched mails)."""
    log("[2b] parse() hot spots ...")
    auth_values, htmls = [], []
    for mail in mails:
        parsed = mailparser.parse_from_bytes(mail.data)
        value = parsed.message.get("Authentication-Results")
        if value is not None:
            try:
                auth_values.append(str(make_header(decode_header(str(value)))))
            except (UnicodeError, LookupError, ValueError, HeaderParseError):
                auth_values.append(str(value))
        if not "\n".join(parsed.text_plain).strip() and parsed.text_html:
            htmls.append("\n".join(parsed.text_html))
    parse_auth_header(auth_values[0])
    html_to_text(htmls[0] if htmls else "<p>x</p>")
    with no_gc():
        auth = [timed(parse_auth_header, v) for v in auth_values]
        html = [timed(html_to_text, h) for h in htmls]
    rows = [
        ("mail-parser (parse_from_bytes, the baseline)", len(mails), [], mailparser_total_ns),
        ("Authentication-Results (rules.authresults, not in parse)", len(auth), auth, 0),
        ("HTML to text (BeautifulSoup), HTML-only mails", len(html), html, sum(html)),
    ]
    rest = parse_total_ns - sum(r[3] for r in rows)
    rows.append(("the rest (headers, addresses, Message build)", len(mails), [], rest))
    return [
        {
            "component": name,
            "calls": calls,
            "median_us": us(statistics.median(t)) if t else None,
            "total_ms": ms(total),
            "share_of_parse": round(total / parse_total_ns, 2),
        }
        for name, calls, t, total in rows
    ]


# ---------------------------------------------------------------------------------------------
# Section 1b: every rule and guard pattern, on typical texts and on a hostile one.


def all_patterns(rules: RuleSet) -> list[tuple[str, str, str, re.Pattern[str]]]:
    """(file, rule or guard id, field, pattern) for every compiled pattern, deduplicated."""
    seen: set[tuple[str, str]] = set()
    out = []
    for _pack, rule in iter_rules(rules):
        fields = [(c.field, p) for c in rule.conditions for p in c.patterns]
        fields += [("text", p) for p in rule.extract_code + rule.extract_reference]
        for field_name, pattern in fields:
            if (field_name, pattern.pattern) not in seen:
                seen.add((field_name, pattern.pattern))
                out.append((Path(rule.path).name, rule.id, field_name, pattern))
    for pack in rules.packs:
        files = _guard_files(Path(pack.path))
        for guard in pack.guards.values():
            for field_name, pattern, _needles in guard.patterns:
                if (field_name, pattern.pattern) not in seen:
                    seen.add((field_name, pattern.pattern))
                    where = files.get((guard.name, pattern.pattern), "?")
                    out.append((where, f"guard {guard.name}", field_name, pattern))
    return out


def _guard_files(pack_dir: Path) -> dict[tuple[str, str], str]:
    found = {}
    for path in sorted(pack_dir.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for name, spec in data.get("guards", {}).items():
            for field_name in ("subject", "body", "text"):
                sources = spec.get(field_name, {}).get("any", [])
                for source in [sources] if isinstance(sources, str) else sources:
                    found[(name, source)] = path.name
    return found


def word_soup(rules: RuleSet, chars: int, seed: int = 7) -> str:
    """Hostile text: the rules' own words in random order and no full stop, so every
    `[^.]{0,N}` window and alternation gets to work. Deterministic."""
    words = sorted(
        {w for *_, p in all_patterns(rules) for w in re.findall(r"[^\W\d_]{3,}", p.pattern)}
    )
    rnd = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < chars:
        word = rnd.choice(words) if rnd.random() < 0.9 else str(rnd.randint(10, 10**9))
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


def bench_patterns(mails: Sequence[Mail], rules: RuleSet, reps: int, top: int = 6) -> Json:
    log("[1b] every pattern on the sample texts and on a 128K word soup ...")
    texts = []
    stride = 1 if reps > 1 else 3  # --quick: every third sample
    for mail in [m for m in mails if m.group == "samples"][::stride]:
        if mail.group == "samples":
            message = parse_ours(mail.data)
            subject, body = normalise(message.subject), normalise(message.text)
            texts.append({"subject": subject, "body": body, "text": subject + "\n" + body})
    big = normalise(word_soup(rules, MAX_TEXT_CHARS))
    small = big[: MAX_TEXT_CHARS // 8]
    rows: list[tuple[Json, re.Pattern[str]]] = []
    with no_gc():
        for where, rule_id, field_name, pattern in all_patterns(rules):
            typical = sum(timed(pattern.search, t[field_name]) for t in texts)
            t_small = min(timed(pattern.search, small) for _ in range(reps + 1))
            t_big = min(timed(pattern.search, big) for _ in range(reps))
            rows.append(
                (
                    {
                        "file": where,
                        "id": rule_id,
                        "field": field_name,
                        "pattern": pattern.pattern,
                        "typical_us_per_mail": us(typical / len(texts)),
                        "soup_128k_ms": ms(t_big),
                        "growth_16k_to_128k": ratio(t_big, t_small),
                    },
                    pattern,
                )
            )
    rows.sort(key=lambda r: -r[0]["soup_128k_ms"])
    superlinear = []
    for row, pattern in rows:  # a linear pattern grows ~8x; confirm a suspect before naming it
        if (row["growth_16k_to_128k"] or 0) > 16:
            with no_gc():
                t_small = min(timed(pattern.search, small) for _ in range(7))
                t_big = min(timed(pattern.search, big) for _ in range(5))
            row["growth_16k_to_128k"] = ratio(t_big, t_small)
            if (row["growth_16k_to_128k"] or 0) > 16:
                superlinear.append(row)
    found = [row for row, _ in rows]
    return {
        "patterns": len(found),
        "soup_128k_all_patterns_ms": round(sum(r["soup_128k_ms"] for r in found), 1),
        "slowest_on_soup": found[:top],
        "slowest_typical": sorted(found, key=lambda r: -r["typical_us_per_mail"])[:top],
        "superlinear": superlinear,
    }


# ---------------------------------------------------------------------------------------------
# Section 3: hostile mails, each case and implementation in its own child process.

HEAD = (
    "From: {sender}\r\nTo: me@example.net\r\nSubject: {subject}\r\n"
    "Date: Tue, 01 Jul 2025 12:00:00 +0000\r\nMessage-ID: <{mid}@example.org>\r\n"
    "MIME-Version: 1.0\r\n"
)


def _head(subject: str, sender: str = "Someone <someone@example.org>") -> bytes:
    return HEAD.format(sender=sender, subject=subject, mid=subject.replace(" ", "-")).encode()


def hostile_text(rules: RuleSet) -> bytes:
    """20 MiB text/plain from a lookalike sender; the body is the rules' word soup repeated."""
    line = (word_soup(rules, MAX_TEXT_CHARS) + "\r\n").encode()
    body = line * (20 * MiB // len(line) + 1)
    head = _head("big text", "Meta Privacy <privacy@faceb00k-support.net>")
    return head + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body[: 20 * MiB]


def hostile_attachment() -> bytes:
    """A short text part and a 20 MiB attachment (27 MiB of base64 on the wire)."""
    blob = base64.encodebytes(random.Random(3).randbytes(20 * MiB))
    return (
        _head("big attachment") + b'Content-Type: multipart/mixed; boundary="BB"\r\n\r\n'
        b"--BB\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n"
        b"--BB\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="big.bin"\r\n\r\n' + blob + b"\r\n--BB--\r\n"
    )


def hostile_nested(depth: int = 2000, lines: int = 0) -> bytes:
    """`depth` nested multiparts; the innermost text part has `lines` short lines."""
    out = [_head("nested") + b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n']
    out += [
        b'--b%d\r\nContent-Type: multipart/mixed; boundary="b%d"\r\n\r\n' % (i - 1, i)
        for i in range(1, depth)
    ]
    out.append(
        b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep\r\n" % (depth - 1)
        + b"x\r\n" * lines
        + b"--b%d--\r\n" % (depth - 1)
    )
    out += [b"--b%d--\r\n" % i for i in range(depth - 2, -1, -1)]
    return b"".join(out)


def hostile_headers(count: int = 5000) -> bytes:
    extra = b"".join(b"X-Header-%d: value %d %s\r\n" % (i, i, b"x" * 20) for i in range(count))
    return _head("many headers") + extra + b"Content-Type: text/plain\r\n\r\nShort body.\r\n"


@dataclass(frozen=True)
class Case:
    description: str
    impls: tuple[str, ...]  # the first is the baseline
    traceable: bool = True  # tracemalloc is slow with deep stacks: 15 s instead of 0.7 s
    max_reps: int = 99
    in_quick: bool = True


HOSTILE = {
    "text-20MiB": Case(
        "20 MiB text/plain, lookalike sender", ("mailparser", "parse", "parse+classify")
    ),
    "attach-20MiB": Case("multipart, 20 MiB attachment as base64", ("mailparser", "parse")),
    "nested-2000": Case("2000-level nested multipart", ("mailparser", "parse"), traceable=False),
    # Below Python's recursion limit the stdlib feedparser parses it, testing every line against
    # every open boundary: time grows with depth x lines, and MAX_PARSE_BYTES does not bound it.
    "nested-900x20k": Case(
        "900-level nesting, 20,000 short lines inside",
        ("mailparser", "parse"),
        traceable=False,
        max_reps=1,
        in_quick=False,
    ),
    "headers-5000": Case("5000 header fields", ("mailparser", "parse")),
}


def _impl(name: str) -> Callable[[bytes], str]:
    """One implementation for a child: returns a short description of what it made of it."""
    rules = load_rule_set() if name == "parse+classify" else None

    def run(data: bytes) -> str:
        try:
            if name == "mailparser":
                return f"body {parse_mailparser(data)} chars"
            message = parse_ours(data)
            what = f"text {len(message.text)} chars, {len(message.defects)} defects"
            if rules is not None:
                result = classify(message, rules)
                what += f", outcome {result.outcome.value if result.outcome else None}"
            return what
        except Exception as exc:
            return f"raised {type(exc).__name__}"

    return run


def _status_kib(field: str) -> int | None:
    """A field of /proc/self/status (Linux) in KiB, e.g. VmRSS or VmHWM; None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0). ru_maxrss cannot be used: it survives
    fork+exec, so a child would inherit the (large) peak of the benchmark process."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def child(path: str, impl: str, reps: int, traced: bool) -> None:
    """Runs in its own process: warm up, time `reps` runs while watching the peak RSS, then
    (when `traced`) one more run under tracemalloc. Prints one JSON line."""
    data = Path(path).read_bytes()
    run = _impl(impl)
    run(_head("warm-up") + b"Content-Type: text/plain\r\n\r\nhello\r\n")
    gc.collect()
    proc = _reset_peak_rss()
    before = _status_kib("VmRSS") if proc else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, what = [], ""
    for _ in range(reps):  # the collector stays on: a real scan pays for it too
        t0 = time.perf_counter_ns()
        what = run(data)
        times.append(time.perf_counter_ns() - t0)
    after = _status_kib("VmHWM") if proc else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = None
    if traced:
        tracemalloc.start()
        run(data)
        peak = round(tracemalloc.get_traced_memory()[1] / MiB, 2)
        tracemalloc.stop()
    print(
        json.dumps(
            {
                "ms": ms(min(times)),
                "peak_rss_mib": round(((after or 0) - (before or 0)) / 1024, 1),
                "tracemalloc_peak_mib": peak,
                "result": what,
            }
        )
    )


def bench_hostile(rules: RuleSet, prof: Profile, workdir: Path) -> list[Json]:
    log("[3] hostile mails, one child process per case and implementation ...")
    makers: dict[str, Callable[[], bytes]] = {
        "text-20MiB": lambda: hostile_text(rules),
        "attach-20MiB": hostile_attachment,
        "nested-2000": hostile_nested,
        "headers-5000": hostile_headers,
        "nested-900x20k": lambda: hostile_nested(900, 20_000),
    }
    rows = []
    for name, case in HOSTILE.items():
        if prof.quick and not case.in_quick:
            log(f"      {name:13} skipped with --quick")
            continue
        path = workdir / f"{name}.eml"
        path.write_bytes(makers[name]())
        size = path.stat().st_size
        traced = prof.traced and case.traceable
        results: dict[str, Json] = {}
        for impl in case.impls:
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--child",
                str(path),
                impl,
                str(min(prof.hostile_reps, case.max_reps)),
                "traced" if traced else "untraced",
            ]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                results[impl] = {"error": " ".join(done.stderr.strip().splitlines()[-1:])}
                continue
            results[impl] = json.loads(done.stdout.strip().splitlines()[-1])
            log(f"      {name:13} {impl:15} {results[impl]}")
        base = results[case.impls[0]]
        for impl in case.impls:
            got = results[impl]
            rows.append(
                {
                    "case": name,
                    "description": case.description,
                    "bytes": size,
                    "impl": impl,
                    **got,
                    "ratio_time": ratio(got.get("ms") or 0, base.get("ms") or 0),
                    "ratio_rss": ratio(got.get("peak_rss_mib") or 0, base.get("peak_rss_mib") or 0),
                    "ratio_tracemalloc": ratio(
                        got.get("tracemalloc_peak_mib") or 0, base.get("tracemalloc_peak_mib") or 0
                    ),
                }
            )
        path.unlink()
    return rows


# ---------------------------------------------------------------------------------------------
# Section 4: `scan --source` over a folder of .eml files.


def _with_message_id(data: bytes, mid: str) -> bytes:
    new, n = re.subn(
        rb"(?im)^Message-ID:[^\r\n]*(\r?\n[ \t][^\r\n]*)*",
        b"Message-ID: " + mid.encode(),
        data,
        count=1,
    )
    return new if n else b"Message-ID: " + mid.encode() + b"\r\n" + data


def write_mailbox(folder: Path, count: int) -> tuple[int, int]:
    """`count` .eml files in subfolders of BATCH_SIZE: 10% Meta replies copied from samples/meta
    (unique Message-IDs), the rest generated noise. Returns (Meta replies, how many of them
    samples/expected.toml says match)."""
    expected = tomllib.loads((SAMPLES / "expected.toml").read_text(encoding="utf-8"))
    paths = sorted((SAMPLES / "meta").rglob("*.eml"))
    n_meta = count // 10
    copies = [paths[i % len(paths)] for i in range(n_meta)]
    should_match = sum(
        expected.get(str(p.relative_to(SAMPLES)), {}).get("outcome", "none") != "none"
        for p in copies
    )
    items = [
        _with_message_id(p.read_bytes(), f"<bench-{i}@www.facebook.com>")
        for i, p in enumerate(copies)
    ]
    items += [m.data for m in generated(count - n_meta, seed=23)]
    random.Random(11).shuffle(items)
    for i, data in enumerate(items):
        chunk = folder / f"c{i // BATCH_SIZE:03d}"
        chunk.mkdir(parents=True, exist_ok=True)
        (chunk / f"{i:05d}.eml").write_bytes(data)
    return n_meta, should_match


def _read_parse(folder: Path, rules: RuleSet | None) -> None:
    for path in sorted(folder.rglob("*.eml")):
        message = parse(RawMail(data=path.read_bytes(), origin=str(path)))
        if rules is not None:
            classify(message, rules)


def bench_scan(rules: RuleSet, prof: Profile, workdir: Path) -> Json:
    """The pipeline against reading+parsing the same files. The mailbox is a folder of
    subfolders of BATCH_SIZE files (LocalSource makes one batch of each); the variants run
    interleaved subfolder by subfolder, so that the machine's drift hits them alike."""
    folder = workdir / "mailbox"
    n_meta, should_match = write_mailbox(folder, prof.scan_mails)
    chunks = sorted(p for p in folder.iterdir() if p.is_dir())
    size = sum(p.stat().st_size for p in folder.rglob("*.eml"))
    log(
        f"[4] scan --source: {prof.scan_mails} files ({size / MiB:.1f} MiB), "
        f"{prof.scan_reps} reps ..."
    )
    # No warm-up pass: the code is warm from sections 1-3 and the files were just written, so
    # they are in the page cache for every variant alike.
    # The collector stays on, as in a real scan.
    per_chunk: dict[str, list[int]] = {}
    counts: Json = {}
    names = ["read+parse", "read+parse+classify", "pipeline"]
    gc.collect()
    for rep in range(prof.scan_reps):
        summary = ScanSummary()
        with Ledger(workdir / f"ledger-{rep}.sqlite") as ledger:  # a fresh ledger each time
            for c, chunk in enumerate(chunks):
                for k in range(len(names)):
                    name = names[(c + rep + k) % len(names)]
                    t0 = time.perf_counter_ns()
                    if name == "pipeline":
                        run_source(
                            LocalSource(chunk),
                            rules=rules,
                            ledger=ledger,
                            clock=lambda: NOW,
                            summary=summary,
                        )
                    else:
                        _read_parse(chunk, rules if name.endswith("classify") else None)
                    elapsed = time.perf_counter_ns() - t0
                    slot = per_chunk.setdefault(name, [elapsed] * len(chunks))
                    slot[c] = min(slot[c], elapsed)
        counts = {k: summary.total(k) for k in ("examined", "matched", "recorded", "errors")}
    best = {name: sum(per_chunk[name]) for name in names}
    rows = {
        name: {
            "seconds": round(t / 1e9, 2),
            "mails_per_s": round(prof.scan_mails / (t / 1e9)),
            "ratio_to_read_parse": ratio(t, best["read+parse"]),
        }
        for name, t in best.items()
    }
    return {
        "mails": prof.scan_mails,
        "meta_replies": n_meta,
        "meta_replies_that_should_match": should_match,
        "mib": round(size / MiB, 1),
        "rows": rows,
        "pipeline_counts": counts,
    }


# ---------------------------------------------------------------------------------------------
# Report.


def report(res: Json) -> str:
    m, s1 = res["machine"], res["mails"]
    out = [
        f"optout-mail benchmarks ({res['profile']}): Python {m['python']} "
        f"({m['implementation']}), {m['cpu_count']} CPUs, {m['platform']}, "
        f"mail-parser {m['mail_parser']}; load_rule_set() {res['load_rule_set_ms']} ms, "
        f"{s1['rules_in_rule_set']} rules",
        "",
        "1. classify() beyond parse(), per mail (µs; ratio = total (parse+classify)/parse)",
    ]
    c = s1["classify"]
    out.append(
        table(
            [
                "group",
                "mails",
                "parse med",
                "beyond med",
                "beyond p95",
                "pure med",
                "pure p95",
                "pure max",
                "ratio",
            ],
            [
                [
                    g,
                    r["mails"],
                    r["parse_median_us"],
                    r["classify_beyond_parse_median_us"],
                    r["classify_beyond_parse_p95_us"],
                    r["classify_pure_median_us"],
                    r["classify_pure_p95_us"],
                    r["classify_pure_max_us"],
                    r["ratio_parse_classify_over_parse"],
                ]
                for g, r in c.items()
            ],
        )
    )
    sc = s1["samples_correct"]
    tried = s1["rules_tried_per_meta_mail"]
    out.append(
        f"samples classified as expected: {sc['ok']}/{sc['total']}; rules evaluated per "
        f"Meta-domain mail: median {tried['matched']['median']} when one matches "
        f"({tried['matched']['mails']} mails), {tried['unmatched']['median']} when none "
        f"does ({tried['unmatched']['mails']} mails)"
    )
    p = res["patterns"]
    out += [
        "",
        f"1b. slowest of {p['patterns']} patterns on a 128K-char word soup of the rules' "
        f"own words (all patterns: {p['soup_128k_all_patterns_ms']} ms)",
    ]
    out.append(
        table(
            ["file", "id", "field", "128K ms", "growth 8x", "typical µs"],
            [
                [
                    r["file"],
                    r["id"],
                    r["field"],
                    r["soup_128k_ms"],
                    r["growth_16k_to_128k"],
                    r["typical_us_per_mail"],
                ]
                for r in p["slowest_on_soup"]
            ],
        )
    )
    out.append(
        "superlinear patterns (growth > 16 for 8x the text): "
        + (", ".join(f"{r['file']}:{r['id']}" for r in p["superlinear"]) or "none")
    )
    out += ["", "2. parse() against its baselines (per-mail median µs; ratio of totals)"]
    out.append(
        table(
            [
                "group",
                "mails",
                "ours",
                "stdlib",
                "mailparser",
                "ours/stdlib",
                "ours/mailparser",
                "ours mails/s",
            ],
            [
                [
                    g,
                    r["mails"],
                    r["parse_median_us"],
                    r["stdlib_median_us"],
                    r["mailparser_median_us"],
                    r["ratio_ours_over_stdlib"],
                    r["ratio_ours_over_mailparser"],
                    r["parse_mails_per_s"],
                ]
                for g, r in s1["parsers"].items()
            ],
        )
    )
    out += ["", "2b. where parse() spends its time (all mails of section 2)"]
    out.append(
        table(
            ["component", "calls", "median µs", "total ms", "share of parse()"],
            [
                [r["component"], r["calls"], r["median_us"], r["total_ms"], r["share_of_parse"]]
                for r in s1["hot_spots"]
            ],
        )
    )
    out += [
        "",
        "3. hostile mails: one child process each, best of runs; peak RSS above the "
        "RSS with the input loaded; ratios to mailparser",
    ]
    out.append(
        table(
            [
                "case",
                "MiB",
                "impl",
                "ms",
                "time ratio",
                "peak RSS MiB",
                "RSS ratio",
                "tracemalloc MiB",
                "result",
            ],
            [
                [
                    r["case"],
                    round(r["bytes"] / MiB, 1),
                    r["impl"],
                    r.get("ms"),
                    r["ratio_time"],
                    r.get("peak_rss_mib"),
                    r["ratio_rss"],
                    r.get("tracemalloc_peak_mib"),
                    r.get("result", r.get("error")),
                ]
                for r in res["hostile"]
            ],
        )
    )
    s4 = res["scan"]
    out += [
        "",
        f"4. scan --source: {s4['mails']} .eml files ({s4['mib']} MiB, "
        f"{s4['meta_replies']} Meta replies of which {s4['meta_replies_that_should_match']} "
        f"should match), per subfolder best of runs; pipeline: {s4['pipeline_counts']}",
    ]
    out.append(
        table(
            ["what", "seconds", "mails/s", "ratio to read+parse"],
            [
                [k, r["seconds"], r["mails_per_s"], r["ratio_to_read_parse"]]
                for k, r in s4["rows"].items()
            ],
        )
    )
    out.append(f"\ntotal run time {res['seconds']} s (sections: {res['section_seconds']})")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer mails and runs (~20 s)")
    ap.add_argument("--json", action="store_true", help="results as JSON on stdout")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.child[3] == "traced")
        return 0
    prof = QUICK if args.quick else FULL
    started = time.perf_counter_ns()
    t0 = time.perf_counter_ns()
    rules = load_rule_set()
    load_ms = ms(time.perf_counter_ns() - t0)
    mails = load_samples() + generated(prof.generated, seed=5)
    res: Json = {
        "profile": "quick" if args.quick else "full",
        "machine": machine(),
        "load_rule_set_ms": load_ms,
        "max_parse_bytes": MAX_PARSE_BYTES,
    }
    sections: dict[str, float] = {}

    def section(name: str, fn: Callable[[], object]) -> None:
        t = time.perf_counter_ns()
        res[name] = fn()
        sections[name] = round((time.perf_counter_ns() - t) / 1e9, 1)

    section("mails", lambda: bench_mails(mails, rules, prof))
    section("patterns", lambda: bench_patterns(mails, rules, prof.pattern_reps))
    with tempfile.TemporaryDirectory(prefix="optout-bench-") as tmp:
        section("hostile", lambda: bench_hostile(rules, prof, Path(tmp)))
        section("scan", lambda: bench_scan(rules, prof, Path(tmp)))
    res["section_seconds"] = sections
    res["seconds"] = round((time.perf_counter_ns() - started) / 1e9, 1)
    if args.json:
        log(report(res))
        print(json.dumps(res, indent=2, ensure_ascii=False))
    else:
        print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
