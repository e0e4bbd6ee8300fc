"""The contract every mail source keeps, checked against each kind of source.

`LocalSource` reads a Maildir built from samples/; `IMAPSource` reads the private Dovecot of
tests/imapserver.py. Both must yield batches per folder with each mail once, make a second pass
cheap through cursors (IMAP: nothing again; local: only mails the ledger already knows), record
what they cannot read in `problems` while reading the rest, and raise `SourceError` when they
cannot be read at all.
"""

from __future__ import annotations

import contextlib
import itertools
import mailbox
import os
import socket
from collections.abc import Callable, Iterator
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Protocol

import pytest
from tests.conftest import SAMPLES
from tests.imapserver import Dovecot, dovecot_available

from optout_mail.config import Account
from optout_mail.errors import SourceError
from optout_mail.model import Batch, Cursor
from optout_mail.pipeline import Source
from optout_mail.rules import RuleSet
from optout_mail.sources.imap import IMAPSource
from optout_mail.sources.local import LocalSource

INBOX_MAILS = ("meta/en/code.eml", "meta/en/received.eml", "meta/en/honoured-uk.eml")
JUNK_MAILS = ("meta/en/tp-rejected.eml",)
LATE_MAIL = "meta/en/tp-needs-info.eml"
_users = (f"contract{i}" for i in itertools.count())


class Mailbox(Protocol):
    """A mail store of one kind, and the sources that read it."""

    incremental: bool  # True: cursors keep known mails out of the next pass

    def add(self, folder: str, name: str) -> None: ...

    def source(self) -> Source: ...

    def source_with_an_unreadable_item(self) -> tuple[Source, str]:
        """A source over this store plus something it cannot read; and a word naming that."""
        ...

    def unreachable(self) -> Source: ...


class MaildirBox:
    incremental = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inbox = mailbox.Maildir(root, create=True)
        self.inbox.add_folder("Junk")

    def add(self, folder: str, name: str) -> None:
        box = self.inbox if folder == "INBOX" else self.inbox.get_folder(folder)
        box.add((SAMPLES / name).read_bytes())

    def source(self) -> Source:
        return LocalSource(self.root)

    def source_with_an_unreadable_item(self) -> tuple[Source, str]:
        # A message file that points nowhere: unreadable even for root.
        (self.root / "cur" / "1700000000.broken.host:2,").symlink_to(self.root / "gone")
        return LocalSource(self.root), "broken"

    def unreachable(self) -> Source:
        return LocalSource(self.root / "no-such-maildir")


class IMAPBox:
    incremental = True

    def __init__(self, server: Dovecot, rules: RuleSet) -> None:
        self.server = server
        self.rules = rules
        self.user = next(_users)
        self.password = f"pw-{self.user}"
        server.add_user(self.user, self.password)

    def add(self, folder: str, name: str) -> None:
        self.server.append(self.user, folder, (SAMPLES / name).read_bytes())

    def _source(self, **account: object) -> IMAPSource:
        settings: dict[str, object] = {
            "host": self.server.host,
            "port": self.server.port,
            "security": "plain",
            "username": self.user,
            "password": self.password,
            "timeout": 5,
        }
        return IMAPSource(
            "home",
            Account.model_validate(settings | account),
            sender_domains=self.rules.sender_domains(),
            search_words=self.rules.lookalike_words(),
        )

    def source(self) -> Source:
        return self._source()

    def source_with_an_unreadable_item(self) -> tuple[Source, str]:
        return self._source(folders=["INBOX", "Junk", "Does/Not/Exist"]), "Does/Not/Exist"

    def unreachable(self) -> Source:
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return self._source(port=port)


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    if not dovecot_available():
        if os.environ.get("CI"):
            raise RuntimeError("CI must run the IMAP tests: install dovecot-imapd (see .ci/run)")
        pytest.skip("needs Debian dovecot-imapd and openssl")
    with Dovecot() as server:
        yield server


@pytest.fixture(params=["local", pytest.param("imap", marks=pytest.mark.imap)])
def store(request: pytest.FixtureRequest, tmp_path: Path, rule_set: RuleSet) -> Mailbox:
    if request.param == "local":
        return MaildirBox(tmp_path / "Mail")
    return IMAPBox(request.getfixturevalue("dovecot"), rule_set)


@pytest.fixture
def filled(store: Mailbox) -> Mailbox:
    for name in INBOX_MAILS:
        store.add("INBOX", name)
    for name in JUNK_MAILS:
        store.add("Junk", name)
    return store


def drain(
    source: Source, cursor_for: Callable[[str], Cursor | None] = lambda folder: None
) -> tuple[list[Batch], SourceError | None]:
    """Every batch the source yields, and the SourceError it ended with (if any)."""
    batches: list[Batch] = []
    try:
        batches.extend(source.batches(cursor_for))
    except SourceError as exc:
        return batches, exc
    return batches, None


def message_ids(batches: list[Batch], folder: str | None = None) -> list[str]:
    parser = BytesHeaderParser()
    return [
        str(parser.parsebytes(mail.data)["Message-ID"])
        for batch in batches
        if folder is None or batch.folder == folder
        for mail in batch.mails
    ]


def sample_ids(*names: str) -> list[str]:
    parser = BytesHeaderParser()
    return [str(parser.parsebytes((SAMPLES / name).read_bytes())["Message-ID"]) for name in names]


def last_cursors(batches: list[Batch]) -> dict[str, Cursor]:
    """What the ledger keeps after recording the batches: the last cursor of each folder."""
    return {b.folder: b.cursor for b in batches if b.cursor is not None}


def test_batches_come_per_folder_and_hold_each_mail_once(filled: Mailbox) -> None:
    batches, error = drain(filled.source())
    assert error is None
    folders = [b.folder for b in batches]
    assert set(folders) == {"INBOX", "Junk"}
    # One folder after the other: its batches are never interleaved with another's.
    assert folders == sorted(folders, key=folders.index)
    assert sorted(message_ids(batches, "INBOX")) == sorted(sample_ids(*INBOX_MAILS))
    assert sorted(message_ids(batches, "Junk")) == sorted(sample_ids(*JUNK_MAILS))
    origins = [mail.origin for batch in batches for mail in batch.mails]
    assert len(set(origins)) == len(origins) == len(INBOX_MAILS) + len(JUNK_MAILS)


def test_a_source_names_itself_and_its_address(filled: Mailbox) -> None:
    source = filled.source()
    assert source.name
    assert source.address is None or source.address == source.address.lower()
    assert source.problems == []


def test_cursors_keep_the_next_pass_to_what_is_new(filled: Mailbox) -> None:
    first, _ = drain(filled.source())
    cursors = last_cursors(first)
    second, error = drain(filled.source(), cursors.get)
    assert error is None
    if filled.incremental:
        assert set(cursors) == {"INBOX", "Junk"}
        assert message_ids(second) == []
    else:  # no cursors: the ledger's Message-ID check makes the repeat record nothing
        assert sorted(message_ids(second)) == sorted(message_ids(first))

    filled.add("INBOX", LATE_MAIL)
    third, error = drain(filled.source(), (cursors | last_cursors(second)).get)
    assert error is None
    new = sample_ids(LATE_MAIL)
    if filled.incremental:
        assert message_ids(third) == new
    else:
        assert sorted(message_ids(third)) == sorted(message_ids(first) + new)


def test_what_cannot_be_read_is_a_problem_and_the_rest_is_read(filled: Mailbox) -> None:
    source, what = filled.source_with_an_unreadable_item()
    batches, error = drain(source)
    assert sorted(message_ids(batches)) == sorted(sample_ids(*INBOX_MAILS, *JUNK_MAILS))
    assert len(source.problems) == 1 and what in source.problems[0]
    if error is not None:  # a source may end with an error, after yielding all it could
        assert what in error.message


def test_a_source_that_cannot_be_read_at_all_raises_source_error(store: Mailbox) -> None:
    source = store.unreachable()
    with pytest.raises(SourceError) as caught, contextlib.suppress(StopIteration):
        next(iter(source.batches(lambda folder: None)))
    assert caught.value.hint
