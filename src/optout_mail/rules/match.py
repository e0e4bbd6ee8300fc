"""Matching a message against the rules: `classify` and `explain`.

Owns the pass over a pack's rules (in the mail's own language, gated by cheap literal checks)
and how the rules that matched resolve: the highest priority wins, two answers that cannot
both be true are `unclear` (never a guess), and so is a receipt that also refuses or asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from optout_mail.model import Classification, Message, Outcome
from optout_mail.rules.compiled import Pack, Rule, RuleSet
from optout_mail.rules.conditions import RuleTrace, lexically_possible, regex_extract, try_rule
from optout_mail.rules.extract import extract_code, extract_reference
from optout_mail.rules.prefilter import any_in
from optout_mail.rules.reading import Texts, mail_languages
from optout_mail.rules.text import drop_links, drop_quoted_spans, split_own_words

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


def find_pack(rule_set: RuleSet, domain: str) -> tuple[Pack, str, bool] | None:
    """(pack, platform, lookalike) for a sender domain; None when no pack covers it."""
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
    found = find_pack(rule_set, domain)
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
            or not lexically_possible(rule, pack.lexicons.get(rule.language, {}), texts)
        ):
            continue
        trace, groups = try_rule(rule, pack, domain, texts)
        traces.append(trace)
        if trace.matched:
            matches.append(_Match(rule, groups))
    result = _resolve(matches, pack, platform, lookalike, domain, message, texts)
    return Explanation(result, pack.id, domain, tuple(traces))


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
    (
        "refuse",
        ("pending", "conditional", "question", "extension", "nothing_to_do", "noreply", "rights"),
    ),
    ("ask", ("conditional", "extension", "negation", "rights", "please_note")),
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
        body=drop_links(drop_quoted_spans(split_own_words(html_to_text(texts.html_body))[0])),
    )
    other = extract_code(html.sentences, html.hits(near))
    if other is not None and other != code:
        return f"the text says code {code}, the HTML part {other}"
    return None


def _reference(rule: Rule, pack: Pack, texts: Texts) -> str | None:
    found = regex_extract(rule.extract_reference, "reference", texts.text)
    near = pack.lexicons.get(rule.language, {}).get(rule.reference_near or "")
    if found is None and near is not None:
        found = extract_reference(texts.sentences, texts.hits(near))
    return found
