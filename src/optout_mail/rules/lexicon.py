"""Lexicons: named sets of terms per language ("objection", "accept", "negation" …) that rules
use by name. Owns turning the terms of a set into one pattern over folded text, and finding
where a set occurs in the sentences of a mail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from optout_mail.rules.compiled import Clause, TermSet
from optout_mail.rules.prefilter import required_literal
from optout_mail.rules.text import fold


def fold_pattern(term: str) -> str:
    """Fold the literal characters of a regex term the way `fold` folds text; escapes such as
    `\\b` or `\\d` and everything after a backslash stay as written."""
    out: list[str] = []
    escaped = False
    for char in term:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            out.append(char)
            escaped = True
        elif char.isalpha():
            out.append(fold(char) or char)
        else:
            out.append(char)
    return "".join(out)


def compile_set(
    name: str, language: str, terms: Iterable[str], where: str, problems: list[str]
) -> TermSet | None:
    """One pattern for all terms of a set: each term matches at a word start, so that a stem
    ("honou?r", "widersprech") covers its inflections; end a term with \\b to pin it."""
    folded = tuple(dict.fromkeys(fold_pattern(t.strip()) for t in terms if t.strip()))
    if not folded:
        problems.append(f"{where}: lexicon set {name!r} has no terms")
        return None
    for term in folded:
        try:
            re.compile(term)
        except re.error as exc:
            problems.append(f"{where}: lexicon set {name!r}: bad term {term!r}: {exc}")
            return None
    # A term that starts with a letter or digit starts at a word start; "?" or "\\w+n't" do not.
    alternatives = (f"(?<!\\w)(?:{t})" if _starts_a_word(t) else f"(?:{t})" for t in folded)
    pattern = re.compile("|".join(alternatives))
    literals = [required_literal(re.compile(t)) for t in folded]
    needles = None
    if all(literals):
        needles = tuple(dict.fromkeys(n for lit in literals if lit for n in lit))
    return TermSet(name=name, language=language, terms=folded, pattern=pattern, needles=needles)


def _starts_a_word(term: str) -> bool:
    """Whether a term starts with a word (a letter, a digit, a group, `\\w`): then it must
    match at a word start; "?", "^" or punctuation match where they are."""
    return term[:1].isalnum() or term[:1] in "([" or term.startswith("\\w")


def compile_lexicon(
    language: str, layers: Iterable[Mapping[str, list[str]]], where: str, problems: list[str]
) -> dict[str, TermSet]:
    """The sets of one language: the pack's shared sets, extended by the language's files."""
    merged: dict[str, list[str]] = {}
    for layer in layers:
        for name, terms in layer.items():
            merged.setdefault(name, []).extend(terms)
    sets = {}
    for name, terms in merged.items():
        compiled = compile_set(name, language, terms, where, problems)
        if compiled is not None:
            sets[name] = compiled
    return sets


def clause_from(
    entries_all: list[str],
    entries_any: list[str],
    entries_none: list[str],
    entries_mail_none: Sequence[str] = (),
) -> Clause:
    def names(entries: Sequence[str]) -> tuple[str, ...]:
        return tuple(n.strip() for entry in entries for n in entry.split("|"))

    return Clause(
        all=tuple(tuple(p.strip() for p in entry.split("|")) for entry in entries_all),
        any=names(entries_any),
        none=names(entries_none),
        mail_none=names(entries_mail_none),
    )


def clause_gate(
    clauses: Iterable[Clause], lexicon: Mapping[str, TermSet]
) -> tuple[str, ...] | None:
    """Plain strings one of which the mail must contain for any clause to hold; None when
    some clause has no such requirement."""
    needles: list[str] = []
    for clause in clauses:
        best: tuple[str, ...] | None = None
        for alternatives in clause.all:
            sets = [lexicon.get(name) for name in alternatives]
            if all(s is not None and s.needles for s in sets):
                found = tuple(n for s in sets if s and s.needles for n in s.needles)
                if best is None or len(found) < len(best):
                    best = found
        if best is None:
            return None
        needles.extend(best)
    return tuple(dict.fromkeys(needles)) or None
