"""Partial fetches on a real Dovecot (sources/imap_fetch): a stand-in made of a mail's header
and text parts reads to the rules exactly as the whole mail does, and a scan downloads whole
only the mails a rule could match -- with the same results as reading every mail whole.
"""

from __future__ import annotations

import itertools
import os
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from benchmarks import mailboxes
from tests.imapserver import Dovecot, dovecot_available
from tests.test_triage import CORPUS, _variants, full

from optout_mail.config import Account
from optout_mail.ledger import Ledger
from optout_mail.model import RawMail
from optout_mail.parse import parse
from optout_mail.pipeline import Source, run_source
from optout_mail.rules import RuleSet
from optout_mail.sources import triage_pool
from optout_mail.sources.imap_fetch import PARTIAL_MIN_BYTES, MailFetcher, text_parts
from optout_mail.sources.local import LocalSource
from optout_mail.triage import could_match
from optout_mail.wiring import imap_source

pytestmark = pytest.mark.imap

if not dovecot_available():
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the IMAP tests: install dovecot-imapd (see .ci/run)")
    pytest.skip("needs Debian dovecot-imapd and openssl", allow_module_level=True)

WHEN = datetime(2025, 5, 20, 9, 30, tzinfo=UTC)
_users = (f"fetch{i}" for i in itertools.count())


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with Dovecot() as srv:
        yield srv


def _user(server: Dovecot) -> str:
    name = next(_users)
    server.add_user(name, f"pw-{name}")
    return name


def _shapes(rules: RuleSet) -> list[tuple[str, bytes]]:
    """Matching samples in every MIME shape test_triage knows, and generated mailbox mail
    (Meta's notifications of 60-120 KB with images, newsletters, attachments)."""
    matching = [p for p in CORPUS if full(p.read_bytes(), rules).outcome is not None]
    mails = [
        (f"{path.name}: {name}", data)
        for path in matching[::40]
        for name, data in _variants(path.read_bytes(), rules)
    ]
    rnd = random.Random(7)
    for n in range(30):
        make = mailboxes.meta_notification if n % 3 else mailboxes.ordinary
        mails.append((f"generated {n}", make(rnd, WHEN, n)[1]))
    return mails


def test_a_stand_in_reads_to_the_rules_as_the_whole_mail(
    server: Dovecot, rule_set: RuleSet
) -> None:
    user = _user(server)
    mails = _shapes(rule_set)
    uids = {server.append(user, "INBOX", data): (name, data) for name, data in mails}
    stand_ins: dict[int, bytes] = {}

    def triage(mail: RawMail) -> bool:  # records what it is shown; lets nothing through
        assert mail.uid is not None
        stand_ins[mail.uid] = mail.data
        return False

    client = server.client(user)
    try:
        client.select_folder("INBOX", readonly=True)
        fetcher = MailFetcher(client, "home", triage, partial_min=0)
        whole, ruled_out = fetcher.fetch("INBOX", 1, sorted(uids))
        # The whole mails as the server serves them (CRLF line ends): what the full path reads.
        structures = client.fetch(sorted(uids), ["BODYSTRUCTURE", "RFC822.SIZE", "BODY.PEEK[]"])
    finally:
        client.logout()
    assert ruled_out == len(stand_ins) and len(whole) + ruled_out == len(uids)
    for uid, data in stand_ins.items():
        name = uids[uid][0]
        original = structures[uid][b"BODY[]"]
        small, big = parse(RawMail(data, "stand-in")), parse(RawMail(original, "whole"))
        if not small.text.strip():
            # Blank text parts: the whole mail may read its HTML instead. The triage sends
            # every mail without text down the full path.
            assert could_match(RawMail(data, "stand-in"), rule_set), name
            continue
        assert (small.text, small.subject, small.from_address) == (
            big.text,
            big.subject,
            big.from_address,
        ), name
        assert len(data) <= len(original), name
    shown = {uids[uid][0] for uid in stand_ins}
    # Multipart mails with text parts get a stand-in; single parts, attached text and
    # forwarded mails are fetched whole, as the full path must read them.
    assert any(name.endswith("nested multipart") for name in shown)
    assert not any(name.endswith("html only") for name in shown)
    # Attached text shows only in the part's own MIME header (BODY has no dispositions): the
    # stand-in carries that header, and the triage sends such a mail down the full path.
    for uid in stand_ins:
        if uids[uid][0].endswith("text as attachment"):
            assert could_match(RawMail(stand_ins[uid], "stand-in"), rule_set)
    assert sum(name.startswith("generated") for name in shown) >= 20
    for uid, item in structures.items():
        name = uids[uid][0]
        if name.endswith(("plain base64", "html only", "text as attachment")):
            assert text_parts(item[b"BODYSTRUCTURE"], item[b"RFC822.SIZE"], 0) is None, name


@pytest.mark.parametrize("parallel", [False, True], ids=["one core", "two cores"])
def test_a_scan_downloads_whole_only_what_a_rule_could_match(
    server: Dovecot,
    rule_set: RuleSet,
    tmp_path: Path,
    parallel: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if parallel:
        if not triage_pool.usable(triage_pool.PARALLEL_MIN):
            pytest.skip("one core only")  # CI machines have two: this runs there
        monkeypatch.setattr(triage_pool, "PARALLEL_MIN", 1)
    user = _user(server)
    mails = _shapes(rule_set)
    local = tmp_path / "local"
    local.mkdir()
    names: dict[int, str] = {}
    for i, (name, data) in enumerate(mails):
        data = mailboxes.with_message_id(data, f"<shape-{i}@example.org>")
        names[server.append(user, "INBOX", data, internaldate=WHEN)] = name
        (local / f"{i:04d}.eml").write_bytes(data)
    account = Account.model_validate(
        {
            "host": server.host,
            "port": server.port,
            "security": "plain",
            "username": user,
            "password": f"pw-{user}",
            "since": "2020-01-01",
            "folders": ["INBOX"],
            "timeout": 5,
        }
    )
    server.clear_commands(user)

    def events(path: Path, source: Source) -> set[tuple[str, str, str, bool | None]]:
        with Ledger(path) as ledger:
            summary = run_source(source, rules=rule_set, ledger=ledger, clock=lambda: WHEN)
        assert not summary.total("errors")
        return {
            (c.event.message_id, c.event.outcome, c.event.rule, c.event.authentic)
            for c in summary.changes
        }

    source = imap_source("home", account, rule_set, parallel=parallel)
    over_imap = events(tmp_path / "imap.sqlite3", source)
    read_whole = events(tmp_path / "local.sqlite3", LocalSource(local))
    assert over_imap == read_whole and len(over_imap) > 5

    whole_uids: set[int] = set()
    for line in server.commands(user):
        if "BODY.PEEK[]" in line:
            found = re.search(r"FETCH ([\d,:]+)", line)
            assert found is not None, line
            whole_uids |= {int(u) for u in found.group(1).split(",")}
    notifications = {uid for uid, name in names.items() if name.startswith("generated")}
    heavy = {uid for uid in notifications if len(mails[uid - 1][1]) > PARTIAL_MIN_BYTES}
    assert heavy and not heavy & whole_uids  # Meta's everyday mail: never downloaded whole


def test_the_second_core_judges_in_order_and_its_death_loses_nothing(rule_set: RuleSet) -> None:
    mails = [RawMail(data, name) for name, data in _shapes(rule_set)]
    here = [could_match(mail, rule_set) for mail in mails]
    assert any(here) and not all(here)

    def triage(mail: RawMail) -> bool:
        return could_match(mail, rule_set)

    with triage_pool.TriagePool(triage, workers=2) as pool:
        halves = [pool.submit(mails[:40]), pool.submit(mails[40:])]
        assert [v for pending in halves for v in pool.judge(pending)] == here
        # A worker killed mid-scan (out of memory, say): the chunk is judged here instead.
        pending = pool.submit(mails)
        for process in list(pool._pool._processes.values()):  # type: ignore[union-attr]
            process.kill()
        assert pool.judge(pending) == here
        assert pool.judge(pool.submit(mails[:5])) == here[:5]  # and so is the rest
