"""Score the rule packs on a labelled corpus of mails: how many are exactly right, per language
and expected outcome, and which mistakes would change a request.

    python benchmarks/score_corpus.py tests/corpus/paraphrase [--half dev|holdout|all] [--json]
    python benchmarks/score_corpus.py tests/corpus/paraphrase --half dev --list   # each mail

A corpus folder holds one folder per language with `dev/` and `holdout/` halves and an
`expected.toml` (see tests/corpus/README.md). Verdicts:
  exact    the outcome (and kind, code) is right and the mail moves a request only if genuine
  unclear  a genuine reply came back `unclear`: shown to the user, moves nothing
  missed   a genuine reply or notice came back with no outcome
  wrong    a wrong answer outcome, a spoof or a stranger's text that would move a request,
           or a trap flagged as `unclear`
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from optout_mail import lifecycle
from optout_mail.model import Classification, RawMail
from optout_mail.parse import parse
from optout_mail.rules import RuleSet, Trust, classify, load_rule_set
from optout_mail.rules.trust import PROVIDERS

KNOWN_PROVIDERS = {p.key for p in PROVIDERS} | {"webde", "aol"}

ANSWERS = {"code", "received", "honoured", "rejected", "needs_info"}


@dataclass(frozen=True)
class Scored:
    language: str
    half: str
    name: str
    expected: str
    got: str
    verdict: str
    why: str


def moves(result: Classification) -> bool:
    return lifecycle.changes_ledger(result.outcome, result.authentic) and (
        result.outcome is not None and result.outcome.value in ANSWERS
    )


def verdict(expect: dict[str, object], result: Classification) -> tuple[str, str]:  # noqa: C901
    want = str(expect.get("outcome", "none"))
    got = result.outcome.value if result.outcome else "none"
    genuine = bool(expect.get("genuine", False))
    if not genuine or want == "none":
        if moves(result):
            return "wrong", f"would move a request ({got}, authentic={result.authentic})"
        if want == "none" and got == "unclear" and genuine:
            return "wrong", "a trap flagged as unclear"
        if want in ANSWERS and not genuine:
            return "exact", "spoof kept out"
        return "exact", ""
    if want == "notice":
        if got == "notice":
            return "exact", ""
        if got == "none":
            return "missed", "notice not recognised"
        return "wrong", f"a notice read as {got}"
    # a genuine reply
    if got == "unclear":
        return "unclear", ""
    if got == "none":
        return "missed", "; ".join(result.notes) or "no rule matched"
    if got != want:
        return "wrong", f"read as {got}"
    if expect.get("kind") and result.kind and result.kind.value != expect["kind"]:
        return "wrong", f"kind {result.kind.value}"
    if expect.get("code") and result.code != expect["code"]:
        return "wrong", f"code {result.code!r}, expected {expect['code']!r}"
    if result.authentic is not True:
        return "wrong", f"authentic={result.authentic}: a genuine reply would not move"
    return "exact", ""


def score(root: Path, rule_set: RuleSet, halves: set[str]) -> list[Scored]:
    out = []
    for lang_dir in sorted(p for p in root.iterdir() if (p / "expected.toml").is_file()):
        expected = tomllib.loads((lang_dir / "expected.toml").read_text("utf-8"))
        for name, expect in sorted(expected.items()):
            half = name.split("/", 1)[0]
            if half not in halves:
                continue
            data = (lang_dir / name).read_bytes()
            # As a user's account would see it: the provider is known from the IMAP host;
            # self-hosted servers are learned from the mail's own hops.
            provider = str(expect.get("provider", ""))
            provider = {"aol": "yahoo"}.get(provider, provider)
            trust = Trust((), provider=provider if provider in KNOWN_PROVIDERS else None)
            result = classify(parse(RawMail(data=data, origin=name)), rule_set, trust)
            v, why = verdict(expect, result)
            want = str(expect.get("outcome", "none"))
            label = want if expect.get("genuine") else f"spoof:{want}" if want != "none" else "none"
            got = result.outcome.value if result.outcome else "none"
            out.append(Scored(lang_dir.name, half, name, label, got, v, why))
    return out


def table(rows: list[Scored]) -> str:
    by_lang: dict[str, Counter[str]] = defaultdict(Counter)
    by_outcome: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        by_lang[row.language][row.verdict] += 1
        by_outcome[row.expected.split(":")[0] if ":" not in row.expected else "spoof"][
            row.verdict
        ] += 1
    lines = []
    for title, groups in (("language", by_lang), ("expected outcome", by_outcome)):
        lines.append(f"| {title} | mails | exact | unclear | missed | wrong |")
        lines.append("|---|---|---|---|---|---|")
        for key, c in sorted(groups.items()):
            n = sum(c.values())
            lines.append(
                f"| {key} | {n} | {c['exact']} ({100 * c['exact'] / n:.0f} %) | {c['unclear']} "
                f"| {c['missed']} | {c['wrong']} |"
            )
        lines.append("")
    total = Counter(r.verdict for r in rows)
    n = len(rows)
    lines.append(
        f"all: {n} mails, {total['exact']} exact ({100 * total['exact'] / max(n, 1):.1f} %), "
        f"{total['unclear']} unclear, {total['missed']} missed, {total['wrong']} wrong"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--half", choices=["dev", "holdout", "all"], default="dev")
    parser.add_argument("--list", action="store_true", help="one line per mail")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    halves = {"dev", "holdout"} if args.half == "all" else {args.half}
    rows = score(args.corpus, load_rule_set(), halves)
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=1))
        return 0
    if args.list:
        for r in rows:
            print(
                f"{r.verdict:8} {r.language}/{r.name}: expected {r.expected}, got {r.got}"
                + (f" -- {r.why}" if r.why else "")
            )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
