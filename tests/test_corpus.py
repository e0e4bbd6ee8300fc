"""The rule packs on mails written by people who had not seen them (tests/corpus/README.md).

Floors, not targets: a change that makes the packs read these mails worse fails here. The
hard lines hold everywhere: no spoof and no stranger's text ever moves a request.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from optout_mail.rules import RuleSet

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"


def _scorer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "score_corpus", ROOT / "benchmarks/score_corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["score_corpus"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("folder", "halves", "floor"),
    [
        pytest.param("paraphrase", {"dev"}, 0.95, id="round 1 dev"),
        pytest.param("paraphrase", {"holdout"}, 0.95, id="round 1 holdout"),
        pytest.param("blind2", {"holdout"}, 0.85, id="round 2"),
        pytest.param("blind3", {"holdout"}, 0.95, id="round 3"),
        pytest.param("blind4", {"dev"}, 0.95, id="round 4 dev"),
        pytest.param("blind4", {"holdout"}, 0.95, id="round 4 holdout"),
        pytest.param("blind5", {"holdout"}, 0.95, id="round 5"),
        pytest.param("blind6", {"holdout"}, 0.92, id="round 6"),
        pytest.param("blind7", {"holdout"}, 0.95, id="round 7"),
        pytest.param("blind8", {"holdout"}, 0.94, id="round 8"),
        pytest.param("blind9", {"holdout"}, 0.95, id="round 9"),
        pytest.param("blind10", {"holdout"}, 0.93, id="round 10"),
        pytest.param("blind11", {"holdout"}, 0.97, id="round 11"),
    ],
)
def test_the_packs_read_the_blind_corpora(
    folder: str, halves: set[str], floor: float, rule_set: RuleSet
) -> None:
    scored = _scorer().score(CORPUS / folder, rule_set, halves)
    assert len(scored) >= 50
    harmful = [
        f"{r.language}/{r.name}: {r.why}"
        for r in scored
        if r.verdict == "wrong" and ("would move" in r.why or r.expected.startswith("spoof"))
    ]
    assert harmful == [], "a spoof or a stranger's text would move a request"
    misread = [
        f"{r.language}/{r.name}: expected {r.expected}, got {r.got}"
        for r in scored
        if r.verdict == "wrong" and r.got not in ("none", "unclear") and "read as" in r.why
    ]
    exact = sum(r.verdict == "exact" for r in scored) / len(scored)
    assert exact >= floor, f"{exact:.1%} exact; misread: {misread}"


def test_metas_everyday_notifications_are_never_an_answer(rule_set: RuleSet) -> None:
    """Comments, friend requests, memories, log-in alerts as a heavy user gets thousands of
    them (the benchmark mailboxes' generator): none may be read as an answer or a code."""
    import random
    from datetime import UTC, datetime

    from optout_mail.model import RawMail
    from optout_mail.parse import parse
    from optout_mail.rules import classify

    sys.path.insert(0, str(ROOT))
    from benchmarks.mailboxes import meta_notification

    rnd = random.Random(7)
    read = []
    for n in range(300):
        _subject, data = meta_notification(rnd, datetime(2025, 5, 1, tzinfo=UTC), n)
        result = classify(parse(RawMail(data, f"n{n}")), rule_set)
        if result.outcome is not None:
            read.append(f"{n}: {result.outcome} by {result.rule}")
    assert read == []
