"""Lexicons: named sets of terms per language ("objection", "accept", "negation" …) that rules
use by name. Owns turning the terms of a set into one pattern over folded text, and finding
where a set occurs in the sentences of a mail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from optout_mail.rules.compiled import Clause, TermSet
from optout_mail.rules.prefilter import literal_of
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
    literals = []
    for term in folded:
        if "(?P<" in term:  # the set is one alternation: two terms' groups would collide
            problems.append(f"{where}: lexicon set {name!r}: term {term!r} names a group")
            return None
        try:
            literals.append(literal_of(term))  # parsing it also proves it a valid regex
        except re.error as exc:
            problems.append(f"{where}: lexicon set {name!r}: bad term {term!r}: {exc}")
            return None
    needles = None
    if all(literals):
        needles = tuple(dict.fromkeys(n for lit in literals if lit for n in lit))
    return TermSet(
        name=name, language=language, terms=folded, source=_alternation(folded), needles=needles
    )


def _alternation(terms: Sequence[str]) -> str:
    """The terms as one alternation, in their order. A term that starts with a letter or digit
    starts at a word start ("?" or "\\w+n't" do not). Runs of such terms share one look-behind:
    `(?<!\\w)(?:a|b)` fails at once inside a word, where `(?<!\\w)a|(?<!\\w)b` tries every
    term at every position -- the difference is most of the time spent on a mail."""
    groups: list[tuple[bool, list[str]]] = []
    for term in terms:
        at_word = _starts_a_word(term)
        if groups and groups[-1][0] == at_word:
            groups[-1][1].append(term)
        else:
            groups.append((at_word, [term]))
    return "|".join(
        ("(?<!\\w)" if at_word else "") + "(?:" + "|".join(f"(?:{t})" for t in run) + ")"
        for at_word, run in groups
    )


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
