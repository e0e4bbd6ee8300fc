"""Local mail: a Maildir (with its subfolders), an mbox file, a folder of .eml files, or one file.

For people who sync their mail with mbsync or offlineimap, export it from Thunderbird, or want
to try optout-mail without a server. Read-only: nothing here writes to the mail store.
"""

from __future__ import annotations

import logging
import mailbox
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from optout_mail.errors import SourceError
from optout_mail.model import Batch, Cursor, RawMail
from optout_mail.rules import Trust

BATCH_SIZE = 200  # mails per ledger transaction

log = logging.getLogger(__name__)


@dataclass
class LocalSource:
    """Mails below `path`; `problems` collects what could not be read (the scan goes on)."""

    path: Path
    problems: list[str] = field(default_factory=list)
    address: str | None = None  # requests are keyed by each mail's To address
    # Local mail has no account: trust what `--trust` names, else the receiving server's stamp.
    trust: Trust = field(default_factory=Trust)

    @property
    def name(self) -> str:
        return str(self.path)

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
        """Every mail, in batches per folder. Local stores have no cursor: the ledger's
        Message-ID check makes a second pass record nothing."""
        for folder, mails in self.folders():
            while chunk := list(islice(mails, BATCH_SIZE)):
                yield Batch(folder=folder, mails=chunk)

    def folders(self) -> Iterator[tuple[str, Iterator[RawMail]]]:
        """(folder name, its mails) for every folder, in a stable order."""
        path = self.path
        if not path.exists():
            raise SourceError(
                f"{path} does not exist",
                hint="give a Maildir, an mbox file, a folder of .eml files, or one .eml file",
            )
        if path.is_file():
            if _looks_like_mbox(path):
                yield path.name, self._mbox(path)
            else:
                yield path.parent.name or ".", self._files([path])
        elif _is_maildir(path):
            yield "INBOX", self._maildir(path)
            for sub in sorted(p for p in path.iterdir() if p.name.startswith(".")):
                if _is_maildir(sub):
                    yield sub.name[1:], self._maildir(sub)
        else:
            files = sorted(p for p in path.rglob("*.eml") if p.is_file())
            if not files:
                raise SourceError(
                    f"{path} holds no mail: it is not a Maildir and has no .eml files",
                    hint="give a Maildir (with cur/ and new/), an mbox file or .eml files",
                )
            by_folder: dict[str, list[Path]] = {}
            for file in files:
                by_folder.setdefault(str(file.parent.relative_to(path)), []).append(file)
            for folder, folder_files in by_folder.items():
                yield folder, self._files(folder_files)

    def _files(self, files: list[Path]) -> Iterator[RawMail]:
        for file in files:
            try:
                yield RawMail(data=file.read_bytes(), origin=str(file))
            except OSError as exc:
                self._problem(f"{file}: cannot be read: {exc.strerror or exc}")

    def _maildir(self, path: Path) -> Iterator[RawMail]:
        box = mailbox.Maildir(path, factory=None, create=False)
        for key in sorted(box.iterkeys()):
            try:
                yield RawMail(data=box.get_bytes(key), origin=f"{path}/{key}")
            except (OSError, KeyError) as exc:  # a file vanished or moved (cur/new) meanwhile
                self._problem(f"{path}: message {key} cannot be read: {exc}")

    def _mbox(self, path: Path) -> Iterator[RawMail]:
        box = mailbox.mbox(path, factory=None, create=False)
        try:
            for index, key in enumerate(box.iterkeys()):
                yield RawMail(data=box.get_bytes(key), origin=f"{path}#{index + 1}")
        except OSError as exc:
            self._problem(f"{path}: cannot be read: {exc.strerror or exc}")
        finally:
            box.close()

    def _problem(self, text: str) -> None:
        log.warning("%s", text)
        self.problems.append(text)


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


def _looks_like_mbox(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(5) == b"From "
    except OSError:
        return False
