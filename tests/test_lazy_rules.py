"""The rule packs are loaded only when a mail is read or a SEARCH sent: a pass with nothing
new compiles no rule."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from optout_mail.ledger import Ledger
from optout_mail.model import Batch, Cursor
from optout_mail.pipeline import run_source
from optout_mail.rules import RuleSet
from optout_mail.sources.local import LocalSource
from optout_mail.wiring import imap_source

from .conftest import make_mail


def _clock() -> datetime:
    return datetime(2025, 6, 1, tzinfo=UTC)


def test_nothing_to_read_loads_no_rules(tmp_path: Path) -> None:
    calls: list[int] = []

    def rules() -> RuleSet:
        calls.append(1)
        raise AssertionError("the rules were loaded")

    class NothingNew(LocalSource):
        def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
            return iter(())  # as an IMAP folder whose UIDNEXT says nothing is new

    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        summary = run_source(NothingNew(tmp_path), rules=rules, ledger=ledger, clock=_clock)
    assert summary.total("examined") == 0 and not calls


def test_rules_are_loaded_for_the_first_mail(tmp_path: Path, rule_set: RuleSet) -> None:
    calls: list[int] = []

    def rules() -> RuleSet:
        calls.append(1)
        return rule_set

    (tmp_path / "mail").mkdir()
    (tmp_path / "mail" / "a.eml").write_bytes(make_mail())
    with Ledger(tmp_path / "ledger.sqlite3") as ledger:
        summary = run_source(
            LocalSource(tmp_path / "mail"), rules=rules, ledger=ledger, clock=_clock
        )
    assert summary.total("recorded") == 1 and calls


def test_imap_search_terms_come_from_the_rules_when_asked(rule_set: RuleSet) -> None:
    from optout_mail.config import Account

    account = Account(host="imap.example.org", username="alice", password="pw")
    source = imap_source("a", account, lambda: rule_set)
    assert source.sender_domains == () and source.search_terms is not None
    terms = source.search_terms()
    assert set(rule_set.sender_domains()) <= set(terms)
    assert set(rule_set.lookalike_words()) <= set(terms)
