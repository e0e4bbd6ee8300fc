"""The pipeline sources built on an IMAP account: one folder of an open session (for a
watcher), and every folder of an account on a fresh session, each under its folder's lock (for
the reconciliation scan). They only pass through to `imap`'s session and source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optout_mail.model import Batch, Cursor
from optout_mail.rules import Trust

if TYPE_CHECKING:
    from optout_mail.sources.imap import FolderLock, IMAPSession, IMAPSource


@dataclass
class SessionFolder:
    """One folder on an open session, as a pipeline source."""

    session: IMAPSession
    folder: str

    @property
    def name(self) -> str:
        return self.session.source.name

    @property
    def address(self) -> str | None:
        return self.session.source.address

    @property
    def problems(self) -> list[str]:
        return self.session.source.problems

    @property
    def trust(self) -> Trust:
        return self.session.source.trust

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
        return self.session.folder_batches(self.folder, cursor_for(self.folder))


@dataclass
class LockedAccount:
    """Every folder of an account on a fresh session, each scanned under its folder lock."""

    source: IMAPSource
    lock_for: FolderLock

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def address(self) -> str | None:
        return self.source.address

    @property
    def problems(self) -> list[str]:
        return self.source.problems

    @property
    def trust(self) -> Trust:
        return self.source.trust

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
        return self.source.scan_folders(cursor_for, self.lock_for)
