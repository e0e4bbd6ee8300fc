"""The compiled, frozen form of the rule packs: what `load` builds and `match` runs.

Condition, TermSet, Clause, Guard, Rule, Pack and RuleSet hold compiled patterns and their
prefilter literals; a Pack also answers which platform a sender domain speaks for, or imitates.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from optout_mail.model import Kind, Outcome
from optout_mail.rules.authenticity import lookalike_word


@dataclass(frozen=True)
class Condition:
    field: str  # subject | body | text
    mode: str  # all | any | none
    patterns: tuple[re.Pattern[str], ...]
    # per pattern: strings of which a match must contain one (see `required_literal`)
    literals: tuple[tuple[str, ...] | None, ...] = ()


@dataclass(frozen=True)
class TermSet:
    """A named lexicon set of one language, e.g. "accept": honour, accept, approve, grant …"""

    name: str
    language: str
    terms: tuple[str, ...]
    source: str  # the regex of any term, at a word start, over folded text
    needles: tuple[str, ...] | None  # plain strings one of which every hit contains

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        """Compiled when first used: a scan reads a few languages' sets, a rescan none."""
        return re.compile(self.source)


@dataclass(frozen=True)
class Clause:
    """Lexicon sets that must meet (in one sentence, or anywhere in the mail)."""

    all: tuple[tuple[str, ...], ...] = ()  # each entry: one set, or alternatives joined by |
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()
    mail_none: tuple[str, ...] = ()  # sets that must occur nowhere in the mail

    @property
    def empty(self) -> bool:
        return not (self.all or self.any or self.none)

    def names(self) -> tuple[str, ...]:
        together = (n for entry in self.mail_none for n in entry.split("+"))
        return (*(n for alt in self.all for n in alt), *self.any, *self.none, *together)


@dataclass(frozen=True)
class Guard:
    name: str
    description: str
    patterns: tuple[tuple[str, re.Pattern[str], tuple[str, ...] | None], ...]  # field, re, needles


@dataclass(frozen=True)
class Rule:
    id: str
    description: str
    outcome: Outcome
    kind: Kind
    priority: int
    language: str
    source: str
    source_note: str
    platform: str | None
    senders: tuple[str, ...]
    unless: tuple[str, ...]
    requires: tuple[str, ...]
    extends_deadline: bool
    conditions: tuple[Condition, ...]
    extract_code: tuple[re.Pattern[str], ...]
    extract_reference: tuple[re.Pattern[str], ...]
    path: str
    # strings of which the mail must contain one for the rule to have any chance: a fast skip
    gate: tuple[str, ...] | None = None
    sentence: tuple[Clause, ...] = ()  # one of them must hold within one sentence
    mail: Clause = Clause()  # holds over all of Meta's own words
    code_near: str | None = None
    reference_near: str | None = None


_WORD_TERM = re.compile(r"[\w\[\]()?:|]+(?:\\b)?")


@dataclass(frozen=True)
class Pack:
    id: str
    description: str
    path: str
    senders: dict[str, str]  # domain -> platform
    lookalike_words: tuple[str, ...]
    guards: dict[str, Guard]
    rules: tuple[Rule, ...]  # sorted: highest priority first, then id
    lexicons: dict[str, dict[str, TermSet]] = field(default_factory=dict)  # language -> sets
    # What each word says of a mail's language: word -> ((language, marker found), ...), filled
    # as mails are read (see `rules.reading.mail_languages`); the same words recur in every mail.
    marker_words: dict[str, tuple[tuple[str, str], ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @cached_property
    def markers(self) -> dict[str, TermSet]:
        """The `marker` set of every language that has one."""
        return {lang: sets["marker"] for lang, sets in self.lexicons.items() if "marker" in sets}

    @cached_property
    def word_markers(self) -> frozenset[str]:
        """The languages whose marker terms all stay inside one word (letters, digits, groups
        and classes of them, an optional \\b at the end): a mail's markers of such a language
        are its words' markers."""
        return frozenset(
            lang
            for lang, markers in self.markers.items()
            if all(_WORD_TERM.fullmatch(t) for t in markers.terms)
        )

    def sender_platform(self, domain: str) -> str | None:
        """The platform of a sender domain when the pack covers it (longest suffix wins)."""
        best: tuple[int, str] | None = None
        for sender, platform in self.senders.items():
            if (domain == sender or domain.endswith("." + sender)) and (
                best is None or len(sender) > best[0]
            ):
                best = (len(sender), platform)
        return best[1] if best else None

    def lookalike_platform(self, domain: str) -> str | None:
        """The platform a non-Meta domain imitates, or None when it does not look like Meta."""
        if not domain or self.sender_platform(domain) is not None:
            return None
        word = lookalike_word(domain, self.lookalike_words)
        return None if word is None else self._platform_of_word(word)

    def _platform_of_word(self, word: str) -> str:
        for sender, platform in sorted(self.senders.items()):
            if word in sender.split("."):
                return platform
        for sender, platform in sorted(self.senders.items()):
            if word in sender:
                return platform
        return next(iter(self.senders.values()))


@dataclass(frozen=True)
class RuleSet:
    packs: tuple[Pack, ...]

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(rule for pack in self.packs for rule in pack.rules)

    def lookalike_words(self) -> tuple[str, ...]:
        return tuple(sorted({w for pack in self.packs for w in pack.lookalike_words}))

    def sender_domains(self) -> tuple[str, ...]:
        """Every pack's sender domains, sorted: the server-side search terms."""
        return tuple(sorted({d for pack in self.packs for d in pack.senders}))


def iter_rules(rule_set: RuleSet) -> Iterator[tuple[Pack, Rule]]:
    """Every rule of the set with its pack, in pack order and then rule order."""
    for pack in rule_set.packs:
        for rule in pack.rules:
            yield pack, rule
