"""The literal prefilter: plain strings a pattern's every match must contain.

A substring test is far cheaper than a regex scan, so a pattern (and a whole rule, through its
gate) is only tried when one of its required strings is in the text. It may only save time:
whenever in doubt it requires nothing.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

from optout_mail.rules.compiled import Condition

# `re._parser` (formerly `sre_parse`) is a private module of the standard library: the only
# way to see the structure of a pattern without writing a regex parser. It is used in this
# module and nowhere else. If it ever disappears, or parses into a shape `_needles` does not
# expect, `required_literal` returns None: every pattern is then scanned in full, which is
# slower but never changes a result.
try:
    _sre_parser: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - present in every supported Python
    _sre_parser = None


def literal_of(term: str) -> tuple[str, ...] | None:
    """`required_literal` of a regex source, parsed once; raises re.error for a source that
    does not compile."""
    if _sre_parser is None:
        re.compile(term)
        return None
    try:
        parsed = _sre_parser.parse(term, 0)
    except re.error:
        raise
    except Exception:  # a private module of the standard library: never let it break matching
        re.compile(term)
        return None
    return _folded(_needles(list(parsed)))


def _folded(needles: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if not needles or min(len(n.strip()) for n in needles) < 3:
        return None
    return tuple(n.casefold() for n in needles)


def required_literal(pattern: re.Pattern[str]) -> tuple[str, ...] | None:
    """Plain strings of which every match must contain at least one, case-folded; None when
    there are none worth testing. A cheap pre-check before the regex scan (the classic
    prefilter of regex engines); when in doubt it returns None, which only costs speed."""
    if _sre_parser is None:
        return None
    try:
        needles = _needles(list(_sre_parser.parse(pattern.pattern, pattern.flags)))
    except Exception:  # a private module of the standard library: never let it break matching
        return None
    return _folded(needles)


def _needles(items: list[Any]) -> tuple[str, ...] | None:
    """The best requirement of a parsed sequence: a literal run, or one group's alternatives."""
    candidates: list[tuple[str, ...]] = []
    run: list[str] = []
    for op, argument in items:
        if op is _sre_parser.LITERAL:
            run.append(chr(argument))
            continue
        if run:
            candidates.append(("".join(run),))
            run = []
        if op is _sre_parser.SUBPATTERN:
            inner = _needles(list(argument[-1]))
        elif op is _sre_parser.BRANCH:
            branches = [_needles(list(branch)) for branch in argument[1]]
            inner = (
                None
                if any(b is None for b in branches)
                else tuple(n for b in branches if b for n in b)
            )
        else:
            inner = None
        if inner:
            candidates.append(inner)
    if run:
        candidates.append(("".join(run),))
    # The most selective requirement: the one whose shortest alternative is longest.
    return max(candidates, key=lambda c: (min(map(len, c)), -len(c)), default=None)


def gate(conditions: Iterable[Condition]) -> tuple[str, ...] | None:
    """The most selective requirement among the rule's `all` and `any` conditions."""
    options: list[tuple[str, ...]] = []
    for cond in conditions:
        if cond.mode == "all":
            options.extend(n for n in cond.literals if n)
        elif cond.mode == "any" and cond.literals and all(cond.literals):
            options.append(tuple(n for needles in cond.literals if needles for n in needles))
    return max(options, key=lambda o: (min(map(len, o)), -len(o)), default=None)


def any_in(needles: tuple[str, ...], haystack: str) -> bool:
    """True when one of `needles` occurs in `haystack` (both already case-folded)."""
    return any(map(haystack.__contains__, needles))  # no generator frame: a hot path
