"""Matching a message against the rules: `classify` and `explain`.

Owns the text the patterns see (`normalise`, a per-message cache of fields and guard hits),
the evaluation of conditions and guards, the extraction of codes and references, and the
trace that `classify --explain` prints.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from optout_mail.model import Classification, Message
from optout_mail.rules.compiled import Condition, Guard, Pack, Rule, RuleSet
from optout_mail.rules.prefilter import any_in

# Meta's answers say what they mean in the first few paragraphs; looking no further keeps a
# huge mail from a lookalike sender from costing the rules seconds.
RULE_TEXT_CHARS = 32 * 1024

_TYPOGRAPHY = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u02bc": "'", "\u00b4": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u00ab": '"', "\u00bb": '"',
        "\u00ad": None, "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None,
    }
)  # fmt: skip


def normalise(text: str) -> str:
    """The text the patterns see: NFC, plain quotes, one space for any run of whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).translate(_TYPOGRAPHY).split())


@dataclass
class _Texts:
    subject: str
    body: str
    _text: str | None = None
    _guards: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    _folded: dict[str, str] = field(default_factory=dict)

    def folded(self, field_name: str) -> str:
        """The field case-folded, for the literal pre-check (memoised)."""
        if field_name not in self._folded:
            self._folded[field_name] = self.get(field_name).casefold()
        return self._folded[field_name]

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.subject + "\n" + self.body
        return self._text

    def get(self, field_name: str) -> str:
        if field_name == "text":
            return self.text
        return self.subject if field_name == "subject" else self.body

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


def _run(message: Message, rule_set: RuleSet, *, explain: bool) -> Explanation:
    domain = message.from_domain
    found = _find_pack(rule_set, domain)
    if found is None:
        note = f"sender {domain or '(none)'} is not covered by any rule pack"
        return Explanation(Classification(outcome=None, notes=(note,)), None, domain, ())
    pack, platform, lookalike = found
    texts = _Texts(
        subject=normalise(message.subject[:1000]), body=normalise(message.text[:RULE_TEXT_CHARS])
    )
    traces: list[RuleTrace] = []
    winner: tuple[Rule, dict[str, str]] | None = None
    folded = texts.folded("text")
    for rule in pack.rules:
        if winner is not None and not explain:
            break
        if not explain and rule.gate is not None and not any_in(rule.gate, folded):
            continue
        trace, groups = _try_rule(rule, pack, domain, texts)
        traces.append(trace)
        if trace.matched and winner is None:
            winner = (rule, groups)
    if winner is None:
        result = Classification(
            outcome=None, lookalike=lookalike, notes=(f"no rule of pack {pack.id} matched",)
        )
    else:
        rule, groups = winner
        result = Classification(
            outcome=rule.outcome,
            platform=rule.platform or platform,
            kind=rule.kind,
            authentic=False if lookalike else None,  # else decided by rules.trusted
            code=groups.get("code") or _extract(rule.extract_code, "code", texts),
            reference=groups.get("reference")
            or _extract(rule.extract_reference, "reference", texts),
            rule=rule.id,
            language=rule.language,
            extends_deadline=rule.extends_deadline,
            lookalike=lookalike,
            notes=(f"sender {domain} only looks like {platform}",) if lookalike else (),
        )
    return Explanation(result, pack.id, domain, tuple(traces))


def _try_rule(
    rule: Rule, pack: Pack, domain: str, texts: _Texts
) -> tuple[RuleTrace, dict[str, str]]:
    if rule.senders and not any(domain == s or domain.endswith("." + s) for s in rule.senders):
        return RuleTrace(rule, False, (f"sender {domain} is not one of {list(rule.senders)}",)), {}
    reasons: list[str] = []
    groups: dict[str, str] = {}
    for cond in rule.conditions:
        failure = _check_condition(cond, texts, reasons, groups)
        if failure:
            return RuleTrace(rule, False, (*reasons, failure)), {}
    for name in rule.requires:
        hit = texts.guard_hit(pack.guards[name])
        if hit is None:
            return RuleTrace(rule, False, (*reasons, f"requires guard {name}: not found")), {}
        reasons.append(f"guard {name} found in {hit[0]}: {hit[1]!r}")
    for name in rule.unless:
        hit = texts.guard_hit(pack.guards[name])
        if hit is not None:
            why = f"blocked by guard {name}: {hit[1]!r} in {hit[0]}"
            return RuleTrace(rule, False, (*reasons, why), blocked_by=name), {}
    return RuleTrace(rule, True, tuple(reasons)), groups


def _check_condition(
    cond: Condition, texts: _Texts, reasons: list[str], groups: dict[str, str]
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


def _search(cond: Condition, index: int, texts: _Texts) -> re.Match[str] | None:
    needles = cond.literals[index] if cond.literals else None
    if needles is not None and not any_in(needles, texts.folded(cond.field)):
        return None  # plain substring tests are far cheaper than a regex scan
    return cond.patterns[index].search(texts.get(cond.field))


def _extract(patterns: tuple[re.Pattern[str], ...], group: str, texts: _Texts) -> str | None:
    for pattern in patterns:
        found = pattern.search(texts.text)
        if found and found.groupdict().get(group):
            return found.group(group)
    return None
