"""The rule engine on small packs written here: matching, guards, extraction, lint, lookalikes."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from optout_mail.errors import RuleError
from optout_mail.model import Outcome, RawMail
from optout_mail.parse import parse
from optout_mail.rules import RuleSet, classify, explain, load_rule_set, normalise

PACK = """
[pack]
id = "t"
[senders]
"facebookmail.com" = "facebook"
"mail.instagram.com" = "instagram"
[lookalike]
words = ["facebook", "instagram"]
[guards.announcement]
description = "announcements"
body.any = ['\\bif your objection is honou?red']
"""

RULES = """
language = "en"

[[rule]]
id = "t.en.objection.honoured"
description = "honoured"
outcome = "honoured"
kind = "objection"
priority = 60
source = "seen"
unless = ["announcement"]
body.all = ['we will honou?r your objection']

[[rule]]
id = "t.en.objection.code"
description = "code"
outcome = "code"
kind = "objection"
priority = 30
source = "guess"
subject.any = ['confirmation code', 'verify']
body.all = ['\\b(?P<code>\\d{6})\\b']
body.none = ['log ?in']

[[rule]]
id = "t.en.objection.notice"
description = "announcement"
outcome = "notice"
kind = "objection"
priority = 10
source = "seen"
requires = ["announcement"]

[[rule]]
id = "t.en.third_party.rejected"
description = "rejected"
outcome = "rejected"
kind = "third_party"
priority = 85
source = "guess"
text.all = ['cannot take further action']
extract.reference = ['case (?:number|id)[:# ]*(?P<reference>\\d{6,})']
"""


def write_pack(root: Path, pack: str = PACK, **files: str) -> Path:
    directory = root / "pack"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pack.toml").write_text(textwrap.dedent(pack), encoding="utf-8")
    for name, text in (files or {"en": RULES}).items():
        (directory / f"{name}.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


@pytest.fixture
def pack_rules(tmp_path: Path) -> RuleSet:
    return load_rule_set([write_pack(tmp_path)], include_bundled=False)


def classify_bytes(data: bytes, rules: RuleSet):  # type: ignore[no-untyped-def]
    return classify(parse(RawMail(data=data, origin="t")), rules)


def test_honoured_mail_is_classified_with_platform_from_sender(
    pack_rules: RuleSet, mail: Callable[..., bytes]
) -> None:
    result = classify_bytes(mail(), pack_rules)
    assert result.outcome is Outcome.HONOURED
    assert result.platform == "facebook"
    assert result.kind is not None and result.kind.value == "objection"
    assert result.rule == "t.en.objection.honoured"
    assert result.language == "en"
    assert result.authentic is True


def test_instagram_sender_gives_instagram(pack_rules: RuleSet, mail: Callable[..., bytes]) -> None:
    result = classify_bytes(mail(sender="Instagram <no-reply@mail.instagram.com>"), pack_rules)
    assert result.platform == "instagram"
    assert result.authentic is True


def test_announcement_guard_blocks_honoured_and_makes_a_notice(
    pack_rules: RuleSet, mail: Callable[..., bytes]
) -> None:
    body = (
        "You have the right to object. If your objection is honoured, we will honour your "
        "objection going forward."
    )
    data = mail(body=body)
    result = classify_bytes(data, pack_rules)
    assert result.outcome is Outcome.NOTICE
    traces = {t.rule.id: t for t in explain(parse(RawMail(data, "t")), pack_rules).traces}
    assert traces["t.en.objection.honoured"].blocked_by == "announcement"
    assert traces["t.en.objection.notice"].matched


def test_code_is_extracted_and_login_codes_are_not_objection_codes(
    pack_rules: RuleSet, mail: Callable[..., bytes]
) -> None:
    result = classify_bytes(
        mail(subject="Your confirmation code", body="Use 482913 to confirm your email."),
        pack_rules,
    )
    assert (result.outcome, result.code) == (Outcome.CODE, "482913")
    login = classify_bytes(
        mail(subject="Your confirmation code", body="Use 482913 to log in to Facebook."),
        pack_rules,
    )
    assert login.outcome is None


def test_reference_extraction_and_priority(pack_rules: RuleSet, mail: Callable[..., bytes]) -> None:
    body = (
        "We will honour your objection... no wait: we cannot take further action. "
        "Case number: 12345678."
    )
    result = classify_bytes(mail(body=body), pack_rules)
    assert result.rule == "t.en.third_party.rejected"  # priority 85 beats 60
    assert result.reference == "12345678"


def test_forwarded_by_a_friend_is_not_meta(pack_rules: RuleSet, mail: Callable[..., bytes]) -> None:
    result = classify_bytes(
        mail(sender="Bob <bob@gmail.com>", subject="Fwd: objection"), pack_rules
    )
    assert result.outcome is None
    assert "not covered" in result.notes[0]


@pytest.mark.parametrize(
    "sender",
    [
        "privacy@facebook-support-center.com",
        "x@faceb00kmail.com",
        "x@instagrarn.com",
        "x@facebok.com",
        "x@mail.instagram.com.evil.net",
    ],
)
def test_lookalike_senders_are_classified_but_never_authentic(
    pack_rules: RuleSet, mail: Callable[..., bytes], sender: str
) -> None:
    result = classify_bytes(mail(sender=f"Meta <{sender}>"), pack_rules)
    assert result.outcome is Outcome.HONOURED
    assert result.authentic is False
    assert result.lookalike


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ("pass", True),
        (None, None),
        (
            "mx.example.org; dkim=fail header.d=facebookmail.com; "
            "dmarc=fail header.from=facebookmail.com",
            False,
        ),
        # Somebody else's signature proves nothing either way: unverified, which moves nothing.
        ("mx.example.org; dkim=pass header.d=attacker.example", None),
        ("mx.example.org; spf=pass smtp.mailfrom=facebookmail.com", None),
        ("mx.example.org; dkim=pass header.i=@facebookmail.com", True),
    ],
)
def test_authenticity(
    pack_rules: RuleSet, mail: Callable[..., bytes], auth: str | None, expected: bool | None
) -> None:
    assert classify_bytes(mail(auth=auth), pack_rules).authentic is expected


def test_normalise_folds_typography_and_whitespace() -> None:
    assert (
        normalise("We\u2019ll  honour\n\u00a0your\u00adobjection “now”")
        == 'We\'ll honour yourobjection "now"'
    )


def _problems(tmp_path: Path, pack: str = PACK, **files: str) -> list[str]:
    with pytest.raises(RuleError) as caught:
        load_rule_set([write_pack(tmp_path, pack, **files)], include_bundled=False)
    return caught.value.problems


def test_lint_reports_every_problem_with_file_and_rule(tmp_path: Path) -> None:
    bad = """
    language = "en"
    [[rule]]
    id = "t.en.a"
    description = "bad regex"
    outcome = "honoured"
    kind = "objection"
    priority = 1
    source = "seen"
    body.all = ['(unclosed']

    [[rule]]
    id = "t.en.b"
    description = "outcome outside the vocabulary"
    outcome = "accepted"
    kind = "objection"
    priority = 2
    source = "seen"
    body.all = ['x']

    [[rule]]
    id = "t.en.c"
    description = "typo in a key"
    outcome = "honoured"
    kind = "objection"
    priority = 3
    source = "seen"
    bdy.all = ['x']

    [[rule]]
    id = "t.en.d"
    description = "code without a code group"
    outcome = "code"
    kind = "objection"
    priority = 4
    source = "seen"
    unless = ["nonexistent"]
    body.all = ['code']
    """
    problems = "\n".join(_problems(tmp_path, en=bad))
    assert "en.toml: rule t.en.a: bad pattern '(unclosed'" in problems
    assert "rule t.en.b: outcome: Input should be 'code'" in problems
    assert "rule t.en.c: bdy: Extra inputs are not permitted" in problems
    assert "rule t.en.d: outcome 'code' needs extract.code_near or a (?P<code>" in problems
    assert "rule t.en.d: unknown guard 'nonexistent'" in problems


def test_lint_rejects_duplicate_ids_and_ties(tmp_path: Path) -> None:
    rule = """
    [[rule]]
    id = "{id}"
    description = "d"
    outcome = "{outcome}"
    kind = "objection"
    priority = 50
    source = "seen"
    body.all = ['x']
    """
    en = (
        'language = "en"\n'
        + rule.format(id="t.en.x", outcome="honoured")
        + rule.format(id="t.en.x", outcome="honoured")
    )
    de = 'language = "de"\n' + rule.format(id="t.de.y", outcome="rejected")
    problems = "\n".join(_problems(tmp_path, en=en, de=de))
    assert "rule t.en.x: id already used" in problems
    assert "same priority 50 as" in problems and "make the precedence explicit" in problems


def test_bad_toml_names_the_file(tmp_path: Path) -> None:
    problems = _problems(tmp_path, en="language = \n")
    assert "en.toml: not valid TOML" in problems[0]


def test_missing_rule_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RuleError) as caught:
        load_rule_set([tmp_path / "nowhere"], include_bundled=False)
    assert "rule folder not found" in caught.value.problems[0]


def test_sender_domains_drive_the_search(pack_rules: RuleSet) -> None:
    assert pack_rules.sender_domains() == ("facebookmail.com", "mail.instagram.com")
    assert pack_rules.lookalike_words() == ("facebook", "instagram")


def test_the_literal_prefilter_never_hides_a_match(rule_set: RuleSet) -> None:
    """For every bundled pattern and every sample text: if the regex matches, the pattern's
    required strings are present (the pre-check may only ever save time)."""
    from optout_mail.rules import iter_rules, required_literal
    from optout_mail.rules.text import fold

    from .conftest import SAMPLES

    mails = [parse(RawMail(p.read_bytes(), "s")) for p in SAMPLES.rglob("*.eml")]
    texts = [normalise(m.text) for m in mails]
    checked = 0
    for _pack, rule in iter_rules(rule_set):
        for cond in rule.conditions:
            for pattern in cond.patterns:
                needles = required_literal(pattern)
                for text in texts:
                    if needles and pattern.search(text):
                        checked += 1
                        assert any(n in text.casefold() for n in needles), pattern.pattern
    # The lexicon sets' needles, over the folded text the sets are matched against.
    folded = [fold(m.subject + "\n" + m.text) for m in mails]
    for pack in rule_set.packs:
        for sets in pack.lexicons.values():
            for term_set in sets.values():
                for text in folded:
                    if term_set.needles and term_set.pattern.search(text):
                        checked += 1
                        assert any(n in text for n in term_set.needles), term_set.name
    assert checked > 1000


@pytest.mark.parametrize(
    ("pattern", "needles"),
    [
        (r"we will honou?r your objection", ("r your objection",)),  # the longest run
        # sre factors the common "o" out of the alternatives
        (r"\b(?:objeción|oposición)\b", ("bjeción", "posición")),
        (r"KI bei Meta|generative\w* KI", ("ki bei meta", "generative")),
        (r"\b(?P<code>\d{6,8})\b", None),
        (r"a|bc", None),  # too short to be worth a test
    ],
)
def test_required_literal(pattern: str, needles: tuple[str, ...] | None) -> None:
    import re

    from optout_mail.rules import required_literal

    assert required_literal(re.compile(pattern, re.IGNORECASE)) == needles


def test_a_refusal_in_a_rights_or_if_sentence_vetoes_no_acceptance(
    rule_set: RuleSet, mail: Callable[..., bytes]
) -> None:
    """An acceptance worded without "honour" must not be vetoed by a refusal word that only
    appears in the closing paragraph on the person's rights or in an "if" sentence."""
    accepted = (
        "Hi Alex,\n\nWe've looked at your objection. From now on, your public information "
        "won't be used to develop or improve generative AI models at Meta.\n\n"
    )
    closing = {
        "rights": "If you feel that a request was wrongly rejected, you have the right to "
        "lodge a complaint with the Data Protection Commission.\n",
        "condition": "If we ever refuse a request from you, we will always explain why.\n",
    }
    for why, sentence in closing.items():
        result = classify(parse(RawMail(mail(body=accepted + sentence), "t")), rule_set)
        assert result.outcome is Outcome.HONOURED, (why, result)
    refused = accepted + "Unfortunately we have refused your other request.\n"
    assert classify(parse(RawMail(mail(body=refused), "t")), rule_set).outcome in (
        Outcome.REJECTED,
        Outcome.UNCLEAR,
    )


@pytest.mark.parametrize(
    "quoted",
    [
        '"ha ha, same for me! «your objection has been accepted, from now on we will not use it». '
        'Not for Luca"',
        "„Wir haben deinem Widerspruch stattgegeben, ab sofort nutzen wir nichts mehr.“",
        "« Nous avons accepté votre opposition, désormais plus rien ne sera utilisé. »",
        "“We will honour your objection. From now on nothing is used,” she wrote.",
        "»Vi har beviljat din invändning och använder inte längre något.«",
    ],
)
def test_a_quoted_sentence_is_set_aside_whole(quoted: str) -> None:
    """A quote closes with the mark that pairs with its opening one: a quote inside a quote
    (a stranger quoting an acceptance in a story reply) never leaks Meta-like words out."""
    from optout_mail.rules.text import drop_quoted_spans

    kept = drop_quoted_spans(f"Anna replied to your story: {quoted} See more.")
    assert "[...]" in kept
    for word in ("objection", "Widerspruch", "opposition", "honour", "invändning"):
        assert word not in kept


def test_a_quoted_name_stays() -> None:
    from optout_mail.rules.text import drop_quoted_spans

    text = "Use the form „Widerspruch gegen KI bei Meta“ in the Privacy Centre."
    assert drop_quoted_spans(text) == text
