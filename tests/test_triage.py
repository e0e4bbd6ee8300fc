"""The triage never drops a mail the full path (parse + classify) would classify.

Both paths run over every sample, every corpus mail, generated mailbox mail (the benchmark's
Meta notifications and ordinary mail), and each matching sample re-encoded in the ways mail
arrives: base64, quoted-printable, HTML only, odd charsets, nested multiparts, attachments,
encoded subjects and senders.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from benchmarks import mailboxes

from optout_mail.model import Classification, RawMail
from optout_mail.parse import parse
from optout_mail.rules import RuleSet
from optout_mail.rules.match import classify
from optout_mail.triage import could_match, header_block, sender_domains

ROOT = Path(__file__).resolve().parents[1]
CORPUS = sorted([*ROOT.glob("samples/**/*.eml"), *ROOT.glob("tests/corpus/**/*.eml")], key=str)
WHEN = datetime(2025, 5, 20, 9, 30, tzinfo=UTC)
STRIDE = 5  # every 5th matching mail in every shape: about 1000 mails


def full(data: bytes, rules: RuleSet) -> Classification:
    return classify(parse(RawMail(data, "test")), rules)


def assert_same(data: bytes, rules: RuleSet, where: str) -> tuple[Classification, bool]:
    """The full path's classification, and whether the triage let the mail through; fails
    when the triage would drop a mail the full path classifies (the scan runs the full path
    on exactly the mails the triage lets through, so the results are then identical)."""
    expected = full(data, rules)
    passed = could_match(RawMail(data, "test"), rules)
    assert passed or expected.outcome is None, f"{where}: dropped a {expected.outcome} mail"
    return expected, passed


def test_corpus_is_there() -> None:
    assert len(CORPUS) > 300


def test_every_corpus_mail(rule_set: RuleSet) -> None:
    matched = 0
    for path in CORPUS:
        result, _ = assert_same(path.read_bytes(), rule_set, str(path.relative_to(ROOT)))
        matched += result.outcome is not None
    assert matched > 100  # the comparison is about mails that do match


def _variants(data: bytes, rules: RuleSet) -> Iterator[tuple[str, bytes]]:
    """The same words as `data`, delivered in other MIME shapes."""
    message = parse(RawMail(data, "variant"))
    text, subject, sender = message.text, message.subject, message.from_address
    if not text.strip() or not sender:
        return
    html = "<html><body><table><tr><td>" + "".join(
        f"<p>{' '.join(f'<span>{w}</span>' for w in line.split())}</p>"
        for line in text.splitlines()
    )
    html += '<div style="display:none">we will honour your objection</div></td></tr></table>'

    def base(subject_: str = subject, sender_: str = sender) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = f"Facebook <{sender_}>"
        msg["To"] = "alice@example.org"
        msg["Subject"] = subject_
        msg["Date"] = format_datetime(WHEN)
        msg["Message-ID"] = "<variant@example.org>"
        return msg

    for cte in ("base64", "quoted-printable", "8bit"):
        msg = base()
        msg.set_content(text, cte=cte)
        yield f"plain {cte}", msg.as_bytes()
    for charset in ("iso-8859-1", "windows-1252", "utf-16", "koi8-r"):
        try:
            encoded = text.encode(charset)
        except UnicodeEncodeError:
            continue
        msg = base()
        msg.set_content(encoded, "text", "plain", cte="base64", params={"charset": charset})
        yield f"charset {charset}", msg.as_bytes()
    msg = base()
    msg.set_content(html, subtype="html", cte="quoted-printable")
    yield "html only", msg.as_bytes()
    msg = base()
    msg.set_content(html, subtype="html", cte="base64")
    yield "html only base64", msg.as_bytes()
    msg = base()
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG" + bytes(300), "image", "png", cid="<logo>")
    msg.add_attachment(b"%PDF-1.4" + bytes(500), "application", "pdf", filename="a.pdf")
    yield "nested multipart", msg.as_bytes()
    msg = base()
    msg.set_content("")
    msg.add_alternative(html, subtype="html")
    yield "empty plain, html", msg.as_bytes()
    msg = base()
    msg.set_content("See the attachment.")
    msg.add_attachment(text, filename="answer.txt")
    yield "text as attachment", msg.as_bytes()
    msg = base()
    msg.set_content(text)
    msg.add_attachment(text, disposition="inline")
    yield "two plain parts", msg.as_bytes()
    yield "encoded subject", base(subject_=subject + " ✓").as_bytes() + b""
    msg = base(subject_=subject + " — Réponse ✓")
    msg.set_content(text)
    yield "encoded subject with body", msg.as_bytes()
    msg = base(sender_=sender.replace("facebook", "faceb00k"))
    msg.set_content(text)
    yield "lookalike sender", msg.as_bytes()
    raw = (
        base()
        .as_bytes()
        .replace(
            b"From: Facebook <" + sender.encode() + b">",
            b"From: =?utf-8?b?RmFjZWJvb2s=?= <" + sender.encode() + b">",
        )
    )
    yield "encoded from name", raw + text.encode()


def test_every_matching_sample_in_other_shapes(rule_set: RuleSet) -> None:
    matching = [p for p in CORPUS if full(p.read_bytes(), rule_set).outcome is not None]
    checked = 0
    for path in matching[::STRIDE]:  # a stride through languages, outcomes and senders
        for name, variant in _variants(path.read_bytes(), rule_set):
            assert_same(variant, rule_set, f"{path.name}: {name}")
            checked += 1
    assert checked > 600


def test_generated_mailbox_mail(rule_set: RuleSet) -> None:
    rnd = random.Random(10)
    unmatched = dropped = 0
    for n in range(240):
        if n % 2:
            _kind, data = mailboxes.meta_notification(rnd, WHEN, n)
        else:
            _kind, data = mailboxes.ordinary(rnd, WHEN, n)
        result, passed = assert_same(data, rule_set, f"generated {n}")
        unmatched += result.outcome is None
        dropped += not passed
    # The notifications no rule matches are never parsed: the triage drops every one.
    assert dropped == unmatched > 200


@pytest.mark.parametrize(
    ("header", "domains"),
    [
        (b"From: Facebook <notification@facebookmail.com>\n", {"facebookmail.com"}),
        (b"From: =?utf-8?q?x?= <a@Mail.Instagram.com.>\n", {"mail.instagram.com"}),
        (b'From: "a@b" <c@evil.example>\n', {"b", "evil.example"}),
        (b"From: a@x.org\nFrom: b@y.org\n", {"x.org", "y.org"}),
        (b"Subject: no sender\n", set()),
    ],
)
def test_sender_domains(header: bytes, domains: set[str]) -> None:
    assert sender_domains(header + b"\nbody from: x@z.org\n") == domains


def test_header_block() -> None:
    assert header_block(b"A: 1\r\nB: 2\r\n\r\nbody") == b"A: 1\r\nB: 2\r\n"
    assert header_block(b"A: 1\n\nbody\n\n") == b"A: 1\n"
    assert header_block(b"A: 1") == b"A: 1"


def test_other_senders_are_never_parsed(rule_set: RuleSet) -> None:
    from tests.conftest import make_mail

    assert not could_match(RawMail(make_mail(sender="x@example.org"), "t"), rule_set)
    assert could_match(RawMail(make_mail(), "t"), rule_set)
    huge = make_mail(body="x" * (2 << 20))
    assert could_match(RawMail(huge, "t"), rule_set)  # a mail parse() cuts: the full path
    assert not could_match(RawMail(huge.replace(b"facebookmail", b"example"), "t"), rule_set)


def test_skipping_rules_is_exact(rule_set: RuleSet) -> None:
    """`classify` skips a rule whose lexicon sets do not occur (together in one sentence, where
    it asks for that); `explain` tries every rule. Both must come to the same result."""
    from optout_mail.rules.match import explain

    compared = 0
    for path in CORPUS:
        message = parse(RawMail(path.read_bytes(), "test"))
        fast = classify(message, rule_set)
        assert fast == explain(message, rule_set).classification, path
        compared += fast.outcome is not None
    assert compared > 100


def test_language_markers_read_word_by_word_are_exact(rule_set: RuleSet) -> None:
    """The markers of a mail, looked up word by word (and remembered per pack), are the ones
    each language's marker alternation finds over the whole text."""
    from optout_mail.rules.reading import Texts, _markers_found

    pack = rule_set.packs[0]
    assert len(pack.word_markers) >= 8  # the fast path is the one being compared
    for path in CORPUS:
        texts = Texts.of(parse(RawMail(path.read_bytes(), "test")))
        expected = {
            language: {m.group(0) for m in marker.pattern.finditer(texts.lexical)}
            for language, marker in pack.markers.items()
        }
        assert _markers_found(pack, texts) == expected, path
