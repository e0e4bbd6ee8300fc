"""The forged-mail corpus (tests/corpus/attacks): no attack is authentic with an answer, every
genuine control is authentic. Each mail is classified three ways: with the authserv-id its
expected.toml names, with only the provider as a hint, and with nothing (recognised or learned).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from optout_mail.lifecycle import changes_ledger
from optout_mail.model import Outcome, RawMail
from optout_mail.parse import parse
from optout_mail.rules import RuleSet, Trust, authenticity, classify

CORPUS = Path(__file__).parent / "corpus" / "attacks"
EXPECTED: dict[str, dict[str, object]] = tomllib.loads(
    (CORPUS / "expected.toml").read_text(encoding="utf-8")
)
# Authentic by their headers: a stranger's words in a real notification (a14), a stale or
# replayed real mail (a16), a conditional announcement (a19). Stopping them is the job of the
# rules and the lifecycle, not of authenticity: only their verdict is asserted here.
OTHER_LAYERS = {name for name, e in EXPECTED.items() if e.get("authentic_headers")}
ANSWERS = {o for o in Outcome if o is not Outcome.NOTICE}


def trusts(entry: dict[str, object]) -> dict[str, Trust]:
    provider = str(entry["provider"])
    return {
        "configured": Trust((str(entry["trusted_authserv_id"]),), provider=provider),
        "provider hint": Trust(provider=provider),
        "recognised": Trust(),
    }


def test_the_corpus_is_complete() -> None:
    on_disk = {p.name for p in CORPUS.glob("*.eml")}
    assert on_disk == set(EXPECTED)
    assert len(on_disk) == 71
    assert {
        "a14a-gmail-authentic-group-post-quoting-honour.eml",
        "a16c-gmail-dkim-replay-honoured-after-refusal.eml",
        "a19-gmail-authentic-ai-notification-conditional-honoured.eml",
    } <= OTHER_LAYERS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_attack_mail(name: str, rule_set: RuleSet) -> None:
    entry = EXPECTED[name]
    message = parse(RawMail((CORPUS / name).read_bytes(), origin=name))
    for how, trust in trusts(entry).items():
        result = classify(message, rule_set, trust)
        verdict = authenticity(message, trust)
        where = f"{name} ({how}): {result.outcome} {verdict}"
        if entry.get("genuine"):
            assert result.authentic is True, where
            assert result.outcome in ANSWERS, where
            assert changes_ledger(result.outcome, result.authentic), where
        elif name in OTHER_LAYERS:
            # Authentic headers (see OTHER_LAYERS): only the authenticity part is theirs.
            assert verdict.authentic is True, where
        else:
            # Neither moves a request nor pops up a code: both need an authentic answer.
            assert not (result.authentic is True and result.outcome in ANSWERS), where
            assert not changes_ledger(result.outcome, result.authentic), where
            if result.outcome is not None and result.platform is not None:
                assert verdict.authentic is not True or result.lookalike, where


FAIL_CLOSED = {
    # Each of these is recognised as Meta's answer by the rules, so authenticity alone must
    # stop it, and must say False (a warning to the user), not merely "unverified".
    "a04-gmail-arc-fail-nonaligned-dkim-pass.eml",
    "a06b-m365-forged-pass-below-real-fail.eml",
    "a08a-postfix-two-from-headers.eml",
    "a08c-gmail-from-cve-2023-27043.eml",
    "a08g-gmail-from-angle-addr-then-at-attacker.eml",
    "a09a-gmail-forged-pass-below-real-fail.eml",
    "a09c-gmail-same-authserv-id-disagree-pass-above-fail-code.eml",
    "a09d-postfix-forged-own-authserv-id-below-real.eml",
    "a10b-gmail-lookalike-authserv-ids-code.eml",
    "a10c-gmail-forged-arc-authentication-results.eml",
}


@pytest.mark.parametrize("name", sorted(FAIL_CLOSED))
def test_forgeries_read_as_meta_are_flagged_false(name: str, rule_set: RuleSet) -> None:
    message = parse(RawMail((CORPUS / name).read_bytes(), origin=name))
    for trust in trusts(EXPECTED[name]).values():
        result = classify(message, rule_set, trust)
        assert result.outcome in ANSWERS
        assert result.authentic is False, (name, result.notes)
