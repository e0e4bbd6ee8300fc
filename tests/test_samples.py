"""Every sample mail gives its expected result; every rule has a sample; no sample is orphaned.

The expectations live in samples/expected.toml, beside the mails (the fail2ban idea: a rule
without a sample is an untested rule).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from optout_mail.model import RawMail
from optout_mail.parse import parse
from optout_mail.rules import RuleSet, classify

from .conftest import SAMPLES

EXPECTED: dict[str, dict[str, object]] = tomllib.loads(
    (SAMPLES / "expected.toml").read_text(encoding="utf-8")
)
FIELDS = ("outcome", "platform", "kind", "authentic", "rule", "language", "code", "reference")


def _actual(path: Path, rule_set: RuleSet) -> dict[str, object]:
    result = classify(parse(RawMail(data=path.read_bytes(), origin=str(path))), rule_set)
    if result.outcome is None:
        return {"outcome": "none"}
    found = result.as_json()
    return {key: found[key] for key in FIELDS if found[key] is not None}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_gives_its_expected_result(name: str, rule_set: RuleSet) -> None:
    path = SAMPLES / name
    assert path.is_file(), f"samples/expected.toml lists {name}, which does not exist"
    assert _actual(path, rule_set) == EXPECTED[name]


def test_every_sample_is_listed() -> None:
    on_disk = {str(p.relative_to(SAMPLES)) for p in SAMPLES.rglob("*.eml")}
    assert sorted(on_disk - set(EXPECTED)) == [], "samples without an expected result"


def test_every_rule_has_a_sample(rule_set: RuleSet) -> None:
    covered = {str(e.get("rule")) for e in EXPECTED.values()}
    missing = [r.id for r in rule_set.rules if r.id not in covered]
    assert missing == [], "rules without a sample"


def test_samples_cover_every_language_and_outcome(rule_set: RuleSet) -> None:
    languages = {str(e["language"]) for e in EXPECTED.values() if "language" in e}
    assert {"en", "de", "fr", "es", "it", "nl", "pl", "pt", "sv"} <= languages
    outcomes = {(str(e["kind"]), str(e["outcome"])) for e in EXPECTED.values() if "kind" in e}
    for kind, outcome in [
        ("objection", o)
        for o in ("code", "received", "honoured", "rejected", "needs_info", "notice")
    ] + [("third_party", o) for o in ("received", "needs_info", "rejected")]:
        assert (kind, outcome) in outcomes
