"""Matching a message against the rules: `classify` and `explain`.

Owns the per-message view of the text (Meta's own words, their sentences, memoised lexicon and
guard hits), the evaluation of conditions, clauses and guards, how competing rules resolve
(a conflict is `unclear`, never a guess), and the trace that `classify --explain` prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from optout_mail.model import Classification, Message, Outcome
from optout_mail.rules.compiled import Clause, Condition, Guard, Pack, Rule, RuleSet, TermSet
from optout_mail.rules.extract import extract_code, extract_reference
from optout_mail.rules.prefilter import any_in
from optout_mail.rules.text import (
    drop_quoted_spans,
    fold,
    normalise,
    sentences,
    split_own_words,
)

# Meta's answers say what they mean in the first few paragraphs; looking no further keeps a
# huge mail from a lookalike sender from costing the rules seconds.
RULE_TEXT_CHARS = 32 * 1024
ANSWERS = frozenset({Outcome.HONOURED, Outcome.REJECTED, Outcome.NEEDS_INFO, Outcome.CODE})
# Answers that cannot both be true of one request: when rules for both match, the mail is
# `unclear`. A refusal that mentions what evidence would help is still a refusal (priority).
CONFLICTS = frozenset(
    {
        frozenset({Outcome.HONOURED, Outcome.REJECTED}),
        frozenset({Outcome.HONOURED, Outcome.NEEDS_INFO}),
        frozenset({Outcome.CODE, Outcome.HONOURED}),
        frozenset({Outcome.CODE, Outcome.REJECTED}),
    }
)


@dataclass
class Texts:
    """One message as the rules see it, with everything computed at most once."""

    subject: str
    body: str  # Meta's own words (quoted replies and forwarded mails set aside), normalised
    html_body: str = ""
    _text: str | None = None
    _guards: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    _folded: dict[str, str] = field(default_factory=dict)
    _sentences: list[str] | None = None
    _set_hits: dict[tuple[str, str], dict[int, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Message) -> Texts:
        own, _quoted = split_own_words(message.text[:RULE_TEXT_CHARS])
        return cls(
            subject=drop_quoted_spans(message.subject[:1000]),
            body=drop_quoted_spans(own),
            html_body=message.html,
        )

    def folded(self, field_name: str) -> str:
        """The field case-folded, for the literal pre-check (memoised)."""
        if field_name not in self._folded:
            self._folded[field_name] = self.get(field_name).casefold()
        return self._folded[field_name]

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = normalise(self.subject) + "\n" + normalise(self.body)
        return self._text

    def get(self, field_name: str) -> str:
        """The field as regex conditions see it: normalised (one line)."""
        key = "norm:" + field_name
        if key not in self._folded:
            if field_name == "text":
                value = self.text
            else:
                value = normalise(self.subject if field_name == "subject" else self.body)
            self._folded[key] = value
        return self._folded[key]

    @property
    def sentences(self) -> list[str]:
        """Folded sentences: the subject first, then the body's."""
        if self._sentences is None:
            self._sentences = [fold(self.subject), *(fold(s) for s in sentences(self.body))]
        return self._sentences

    @property
    def lexical(self) -> str:
        if "lexical" not in self._folded:
            self._folded["lexical"] = "\n".join(self.sentences)
        return self._folded["lexical"]

    def hits(self, term_set: TermSet) -> dict[int, str]:
        """Sentence index -> the term found, for every sentence in which the set occurs."""
        key = (term_set.language, term_set.name)
        if key not in self._set_hits:
            found: dict[int, str] = {}
            if term_set.needles is None or any_in(term_set.needles, self.lexical):
                for index, sentence in enumerate(self.sentences):
                    match = term_set.pattern.search(sentence)
                    if match:
                        found[index] = match.group(0)
            self._set_hits[key] = found
        return self._set_hits[key]

    def guard_hit(self, guard: Guard) -> tuple[str, str] | None:
        """(field, matched text) of the first pattern of `guard` found, memoised per message."""
        if guard.name not in self._guards:
            hit = None
            for field_name, pattern, needles in guard.patterns:
                if needles is not None and not any_in(needles, self.folded(field_name)):
                    continue
                found = pattern.search(self.get(field_name))
                if found:
                    hit = (field_name, found.group(0))
                    break
            self._guards[guard.name] = hit
        return self._guards[guard.name]


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


@dataclass(frozen=True)
class Explanation:
    classification: Classification
    pack: str | None
    sender: str
    traces: tuple[RuleTrace, ...]


def classify(message: Message, rule_set: RuleSet) -> Classification:
    """What `message` means according to the rules; `NO_MATCH`-like when no rule applies."""
    return _run(message, rule_set, explain=False).classification


def explain(message: Message, rule_set: RuleSet) -> Explanation:
    """Like `classify`, and say for every rule of the sender's pack what held and what did not."""
    return _run(message, rule_set, explain=True)


def _find_pack(rule_set: RuleSet, domain: str) -> tuple[Pack, str, bool] | None:
    for pack in rule_set.packs:
        platform = pack.sender_platform(domain)
        if platform:
            return pack, platform, False
    for pack in rule_set.packs:
        platform = pack.lookalike_platform(domain)
        if platform:
            return pack, platform, True
    return None


@dataclass
class _Match:
    rule: Rule
    groups: dict[str, str]


def _run(message: Message, rule_set: RuleSet, *, explain: bool) -> Explanation:
    domain = message.from_domain
    found = _find_pack(rule_set, domain)
    if found is None:
        note = f"sender {domain or '(none)'} is not covered by any rule pack"
        return Explanation(Classification(outcome=None, notes=(note,)), None, domain, ())
    pack, platform, lookalike = found
    texts = Texts.of(message)
    traces: list[RuleTrace] = []
    matches: list[_Match] = []
    folded = texts.folded("text")
    languages = mail_languages(pack, texts)
    for rule in pack.rules:
        if rule.language not in languages:
            continue  # a rule of another language never reads the mail
        if not explain and (
            (rule.gate is not None and not any_in(rule.gate, folded))
            or (rule.lexicon_gate is not None and not any_in(rule.lexicon_gate, texts.lexical))
        ):
            continue
        trace, groups = _try_rule(rule, pack, domain, texts)
        traces.append(trace)
        if trace.matched:
            matches.append(_Match(rule, groups))
    result = _resolve(matches, pack, platform, lookalike, domain, message, texts)
    return Explanation(result, pack.id, domain, tuple(traces))


# A language is the mail's when its marker words count at least this share of the best one's.
LANGUAGE_SHARE = 0.5


def mail_languages(pack: Pack, texts: Texts) -> frozenset[str]:
    """The languages the mail is written in, by the distinct marker words of each (the
    `marker` lexicon set); every language of the pack when too few markers say anything."""
    scores = {}
    for language, sets in pack.lexicons.items():
        marker = sets.get("marker")
        if marker is None:
            continue
        scores[language] = len(
            {m.group(0) for sentence in texts.sentences for m in marker.pattern.finditer(sentence)}
        )
    best = max(scores.values(), default=0)
    if best < 3:
        return frozenset(pack.lexicons)
    return frozenset(
        lang for lang in pack.lexicons if scores.get(lang, best) >= best * LANGUAGE_SHARE
    )


def _resolve(
    matches: list[_Match],
    pack: Pack,
    platform: str,
    lookalike: bool,
    domain: str,
    message: Message,
    texts: Texts,
) -> Classification:
    if not matches:
        return Classification(
            outcome=None, lookalike=lookalike, notes=(f"no rule of pack {pack.id} matched",)
        )
    winner = matches[0]
    rule = winner.rule
    notes: list[str] = [f"sender {domain} only looks like {platform}"] if lookalike else []
    outcome = rule.outcome
    rivals = [m.rule for m in matches[1:] if frozenset({outcome, m.rule.outcome}) in CONFLICTS]
    if rivals:
        notes.append(
            f"competing answers: {rule.id} ({outcome}) and {rivals[0].id} ({rivals[0].outcome})"
        )
        outcome = Outcome.UNCLEAR
    doubt = _doubt(rule, pack, texts) if outcome is Outcome.RECEIVED else None
    if doubt:
        notes.append(doubt)
        outcome = Outcome.UNCLEAR
    code = winner.groups.get("code") or None
    if rule.outcome is Outcome.CODE:
        disagreement = _html_disagrees(rule, pack, texts, code)
        if disagreement:
            notes.append(disagreement)
            outcome = Outcome.UNCLEAR
    reference = winner.groups.get("reference") or _reference(rule, pack, texts)
    return Classification(
        outcome=outcome,
        platform=rule.platform or platform,
        kind=rule.kind,
        authentic=False if lookalike else None,  # else decided by rules.trusted
        code=code if outcome is Outcome.CODE else None,
        reference=reference,
        rule=rule.id,
        language=rule.language,
        extends_deadline=rule.extends_deadline and outcome is rule.outcome,
        lookalike=lookalike,
        notes=tuple(notes),
    )


# A mail that acknowledges a request but also refuses something or asks for something says
# more than "received": when no answer rule could read that part, it is `unclear`, not a
# receipt. Each signal counts only in a sentence without what takes its force away.
DOUBTS = (
    ("refuse", ("pending", "conditional", "question", "extension", "nothing_to_do")),
    ("ask", ("conditional", "extension", "negation")),
)


def _doubt(rule: Rule, pack: Pack, texts: Texts) -> str | None:
    lexicon = pack.lexicons.get(rule.language, {})
    for signal, softeners in DOUBTS:
        if signal not in lexicon:
            continue
        softened: set[int] = set()
        for name in softeners:
            if name in lexicon:
                softened.update(texts.hits(lexicon[name]))
        strong = [i for i in texts.hits(lexicon[signal]) if i not in softened]
        if strong:
            sentence = texts.sentences[strong[0]][:100]
            return f"it acknowledges the request, but also {signal}s: {sentence!r}"
    return None


def _html_disagrees(rule: Rule, pack: Pack, texts: Texts, code: str | None) -> str | None:
    """A note when the HTML part shows another code than the plain text: which one would the
    user type? Neither is shown then (the mail is `unclear`)."""
    near = pack.lexicons.get(rule.language, {}).get(rule.code_near or "")
    if code is None or not texts.html_body or near is None:
        return None
    from optout_mail.htmltext import html_to_text

    html = Texts(
        subject=texts.subject,
        body=drop_quoted_spans(split_own_words(html_to_text(texts.html_body))[0]),
    )
    other = extract_code(html.sentences, html.hits(near))
    if other is not None and other != code:
        return f"the text says code {code}, the HTML part {other}"
    return None


def _reference(rule: Rule, pack: Pack, texts: Texts) -> str | None:
    found = _regex_extract(rule.extract_reference, "reference", texts.text)
    near = pack.lexicons.get(rule.language, {}).get(rule.reference_near or "")
    if found is None and near is not None:
        found = extract_reference(texts.sentences, texts.hits(near))
    return found


def _try_rule(
    rule: Rule, pack: Pack, domain: str, texts: Texts
) -> tuple[RuleTrace, dict[str, str]]:
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
    code = _regex_extract(rule.extract_code, "code", texts.text)
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
    candidates = set(range(len(texts.sentences)))
    share = 0.0
    needed = len(clause.all) + bool(clause.any)
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
    """Whether `entry` occurs in the mail: one set anywhere, or "a+b" together in one
    sentence that is not conditional ("please reply so that we can continue" asks; "if you
    have more, please send it so that we can look again" does not)."""
    parts = entry.split("+")
    if len(parts) == 1:
        return bool(hits[entry])
    conditional = texts.hits(lexicon["conditional"]) if "conditional" in lexicon else {}
    common = set.intersection(*(set(hits[p]) for p in parts))
    return any(index not in conditional for index in common)


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


def _regex_extract(patterns: tuple[re.Pattern[str], ...], group: str, text: str) -> str | None:
    for pattern in patterns:
        found = pattern.search(text)
        if found and found.groupdict().get(group):
            return found.group(group)
    return None
