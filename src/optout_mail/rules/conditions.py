"""How one rule fares against one message: its regex conditions, its lexicon clauses (in one
sentence, or anywhere in the mail), its guards, and the code it must find; the trace of what
held and what failed, for `classify --explain`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from optout_mail.model import Outcome
from optout_mail.rules.compiled import Clause, Condition, Pack, Rule, TermSet
from optout_mail.rules.extract import extract_code
from optout_mail.rules.prefilter import any_in
from optout_mail.rules.reading import Texts


@dataclass(frozen=True)
class RuleTrace:
    """How one rule fared against a message: for `classify --explain`."""

    rule: Rule
    matched: bool
    reasons: tuple[str, ...]  # what held, or the first thing that failed
    blocked_by: str | None = None  # the guard that blocked an otherwise matching rule
    closeness: float = 0.0  # share of its conditions that held: 1.0 when it matched

    @property
    def came_close(self) -> bool:
        return self.matched or self.blocked_by is not None or self.closeness >= 0.5


def try_rule(rule: Rule, pack: Pack, domain: str, texts: Texts) -> tuple[RuleTrace, dict[str, str]]:
    if rule.senders and not any(domain == s or domain.endswith("." + s) for s in rule.senders):
        return RuleTrace(rule, False, (f"sender {domain} is not one of {list(rule.senders)}",)), {}
    reasons: list[str] = []
    groups: dict[str, str] = {}
    total = max(1, len(rule.conditions) + bool(rule.sentence) + (not rule.mail.empty))
    held = 0
    for cond in rule.conditions:
        failure = _check_condition(cond, texts, reasons, groups)
        if failure:
            return RuleTrace(rule, False, (*reasons, failure), closeness=held / total), {}
        held += 1
    lexicon = pack.lexicons.get(rule.language, {})
    if rule.sentence:
        failure, partial = _check_sentences(rule.sentence, lexicon, texts, reasons)
        if failure:
            closeness = (held + partial) / total
            return RuleTrace(rule, False, (*reasons, failure), closeness=closeness), {}
        held += 1
    if not rule.mail.empty:
        failure = _check_mail(rule.mail, lexicon, texts, reasons)
        if failure:
            return RuleTrace(rule, False, (*reasons, failure), closeness=held / total), {}
    blocked = _check_guards(rule, pack, texts, reasons)
    if blocked is not None:
        why, guard = blocked
        closeness = 1.0 if guard else held / total
        return RuleTrace(rule, False, (*reasons, why), blocked_by=guard, closeness=closeness), {}
    if rule.outcome is Outcome.CODE and not groups.get("code"):
        # A code rule speaks only when there is a code to show: digits near the code word.
        code = _plain_code(rule, lexicon, texts)
        if code is None:
            why = f"no code of 6 to 8 digits near {rule.code_near or 'the pattern'}"
            return RuleTrace(rule, False, (*reasons, why), closeness=(held + 0.5) / total), {}
        groups["code"] = code
    return RuleTrace(rule, True, tuple(reasons), closeness=1.0), groups


def lexically_possible(rule: Rule, lexicon: dict[str, TermSet], texts: Texts) -> bool:
    """False when the rule's lexicon clauses cannot hold: a set the mail clause needs occurs
    nowhere, or no sentence clause has all its sets in one sentence. Exact (`try_rule` would
    fail too) and cheap: set hits are memoised and reused when the rule is tried."""

    def where(names: tuple[str, ...]) -> set[int]:
        return set().union(*(texts.hits(lexicon[n]).keys() for n in names))

    mail = rule.mail
    if any(not where(alt) for alt in mail.all) or (mail.any and not where(mail.any)):
        return False
    if not rule.sentence:
        return True
    for clause in rule.sentence:
        needed = [*clause.all, *([clause.any] if clause.any else [])]
        together: set[int] | None = None
        for alternatives in needed:
            found = where(alternatives)
            together = found if together is None else together & found
            if not together:
                break
        if together is None or together:
            return True
    return False


def _check_guards(
    rule: Rule, pack: Pack, texts: Texts, reasons: list[str]
) -> tuple[str, str | None] | None:
    """None when the rule's guards let it through; else why not, and the blocking guard."""
    for name in rule.requires:
        hit = texts.guard_hit(pack.guards[name])
        if hit is None:
            return f"requires guard {name}: not found", None
        reasons.append(f"guard {name} found in {hit[0]}: {hit[1]!r}")
    for name in rule.unless:
        hit = texts.guard_hit(pack.guards[name])
        if hit is not None:
            return f"blocked by guard {name}: {hit[1]!r} in {hit[0]}", name
    return None


def _plain_code(rule: Rule, lexicon: dict[str, TermSet], texts: Texts) -> str | None:
    code = regex_extract(rule.extract_code, "code", texts.text)
    near = lexicon.get(rule.code_near) if rule.code_near else None
    if code is None and near is not None:
        code = extract_code(texts.sentences, texts.hits(near))
    return code


def _check_sentences(
    clauses: tuple[Clause, ...], lexicon: dict[str, TermSet], texts: Texts, reasons: list[str]
) -> tuple[str | None, float]:
    """None when one clause holds in one sentence (adding what held to `reasons`); else why
    not, and the best share of a clause's sets that met in one sentence."""
    best = 0.0
    for clause in clauses:
        held, share = _clause_in_one_sentence(clause, lexicon, texts)
        if held is not None:
            reasons.append(held)
            return None, 1.0
        best = max(best, share)
    wanted = " | ".join("+".join("/".join(alt) for alt in c.all) or "(any)" for c in clauses)
    return f"sentence: no sentence has {wanted} (without what excludes it)", best


def _clause_in_one_sentence(
    clause: Clause, lexicon: dict[str, TermSet], texts: Texts
) -> tuple[str | None, float]:
    hits = {name: texts.hits(lexicon[name]) for name in clause.names()}
    if any(_anywhere(entry, hits, lexicon, texts) for entry in clause.mail_none):
        return None, 0.0
    share = 0.0
    needed = len(clause.all) + bool(clause.any)
    # Only a sentence in which some set occurs can hold (or come close to holding) the clause.
    candidates = (
        set().union(*(found.keys() for found in hits.values()))
        if needed
        else range(len(texts.sentences))
    )
    for index in sorted(candidates):
        got = sum(any(index in hits[n] for n in alt) for alt in clause.all)
        got += bool(clause.any) and any(index in hits[n] for n in clause.any)
        share = max(share, got / max(needed, 1))
        if got < needed:
            continue
        excluded = [n for n in clause.none if index in hits[n]]
        if excluded:
            continue
        terms = [
            f"{n}:{hits[n][index]!r}" for alt in clause.all for n in alt if index in hits[n]
        ] + [f"{n}:{hits[n][index]!r}" for n in clause.any if index in hits[n]][:1]
        absent = f"; none of {', '.join(clause.none)}" if clause.none else ""
        return (
            f"sentence {index}: {' + '.join(terms)}{absent} -- {texts.sentences[index][:120]!r}",
            1.0,
        )
    return None, share


def _anywhere(
    entry: str, hits: dict[str, dict[int, str]], lexicon: dict[str, TermSet], texts: Texts
) -> bool:
    """Whether `entry` occurs in the mail: one set, or "a+b" together, in one sentence that is
    neither conditional nor about the person's other rights ("please reply so that we can
    continue" asks; "if you have more, please send it so that we can look again" does not, nor
    does "if we refuse a request, you may complain to ...")."""
    aside: set[int] = set()
    for name in ("conditional", "rights"):
        if name in lexicon:
            aside.update(texts.hits(lexicon[name]))
    common = set.intersection(*(set(hits[p]) for p in entry.split("+")))
    return any(index not in aside for index in common)


def _check_mail(
    clause: Clause, lexicon: dict[str, TermSet], texts: Texts, reasons: list[str]
) -> str | None:
    for alternatives in clause.all:
        found = [(n, texts.hits(lexicon[n])) for n in alternatives]
        found = [(n, h) for n, h in found if h]
        if not found:
            return f"mail.all: no {'/'.join(alternatives)} anywhere"
        name, hits = found[0]
        reasons.append(f"mail: {name}:{next(iter(hits.values()))!r}")
    if clause.any and not any(texts.hits(lexicon[n]) for n in clause.any):
        return f"mail.any: none of {', '.join(clause.any)}"
    for name in clause.none:
        hits = texts.hits(lexicon[name])
        if hits:
            return f"mail.none: {name}:{next(iter(hits.values()))!r} found"
    return None


def _check_condition(
    cond: Condition, texts: Texts, reasons: list[str], groups: dict[str, str]
) -> str | None:
    """None when `cond` holds (adding what held to `reasons`), else why it does not."""
    hits: list[re.Match[str]] = []
    for index, pattern in enumerate(cond.patterns):
        found = _search(cond, index, texts)
        if found:
            hits.append(found)
            if cond.mode != "all":
                break
        elif cond.mode == "all":
            return f"{cond.field}.all: {pattern.pattern!r} not found"
    if cond.mode == "none":
        if hits:
            return f"{cond.field}.none: {hits[0].re.pattern!r} found ({hits[0].group(0)!r})"
        reasons.append(f"{cond.field}.none: none of {len(cond.patterns)} found")
        return None
    if not hits:
        return f"{cond.field}.any: none found"
    for hit in hits:
        reasons.append(f"{cond.field}.{cond.mode}: {hit.group(0)!r}")
        for name, value in hit.groupdict().items():
            if value and name not in groups:
                groups[name] = value
    return None


def _search(cond: Condition, index: int, texts: Texts) -> re.Match[str] | None:
    needles = cond.literals[index] if cond.literals else None
    if needles is not None and not any_in(needles, texts.folded(cond.field)):
        return None  # plain substring tests are far cheaper than a regex scan
    return cond.patterns[index].search(texts.get(cond.field))


def regex_extract(patterns: tuple[re.Pattern[str], ...], group: str, text: str) -> str | None:
    for pattern in patterns:
        found = pattern.search(text)
        if found and found.groupdict().get(group):
            return found.group(group)
    return None
