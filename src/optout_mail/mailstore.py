"""The original bytes of every recorded mail, as evidence: DATA_DIR/mails/<sha256>.eml.

Content-addressed and written (fsync, atomic rename) before the ledger commits the event that
names it, so a crash leaves at most an orphan file, never an event whose original is missing.
Files are 0600 and the folder 0700: they are the user's mail.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class MailStore:
    """A folder of mails named by the SHA-256 of their bytes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def beside(cls, ledger_path: Path | str) -> MailStore | None:
        """The store of the ledger at `ledger_path` (its folder's `mails/`); None for a
        ledger in memory, which keeps nothing on disk."""
        if not isinstance(ledger_path, Path):
            return None
        return cls(ledger_path.parent / "mails")

    def path(self, sha256: str) -> Path:
        """Where the mail with this digest lives. Raises ValueError for anything that is not a
        SHA-256 in hex, so a damaged ledger row can never name a file outside the store."""
        if not SHA256.fullmatch(sha256):
            raise ValueError(f"not a SHA-256 digest: {sha256!r}")
        return self.folder / f"{sha256}.eml"

    def put(self, data: bytes) -> str:
        """Keep `data` (once: the same bytes are the same file) and return its SHA-256.
        Raises OSError when the file cannot be written."""
        digest = sha256_hex(data)
        target = self.path(digest)
        if target.is_file() and target.stat().st_size == len(data):
            return digest
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        handle, temp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(handle, "wb") as out:  # mkstemp makes it 0600
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.folder)
        return digest

    def get(self, sha256: str) -> bytes | None:
        """The bytes kept under `sha256`; None when there is no such file or its content no
        longer matches its name (a damaged copy is no evidence)."""
        try:
            data = self.path(sha256).read_bytes()
        except (OSError, ValueError):
            return None
        return data if sha256_hex(data) == sha256 else None


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable before the ledger names the file."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
