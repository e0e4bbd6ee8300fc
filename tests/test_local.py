"""Local sources: Maildir (with subfolders), mbox, a folder of .eml files, one file."""

from __future__ import annotations

import json
import mailbox
from collections.abc import Callable
from pathlib import Path

from .conftest import Result

CLI = Callable[..., Result]


def test_maildir_with_junk_subfolder(cli: CLI, tmp_path: Path, mail: Callable[..., bytes]) -> None:
    root = mailbox.Maildir(tmp_path / "Mail", create=True)
    root.add(mail())
    root.add(mail(sender="News <news@example.com>", subject="weekly"))
    junk = root.add_folder("Junk")
    junk.add(mail(sender="Instagram <no-reply@mail.instagram.com>"))
    result = cli("scan", "--source", str(tmp_path / "Mail"), "--json")
    assert result.status == 0, result.err
    folders = {
        f["folder"]: (f["examined"], f["recorded"]) for f in json.loads(result.out)["folders"]
    }
    assert folders == {"INBOX": (2, 1), "Junk": (1, 1)}


def test_mbox_file(cli: CLI, tmp_path: Path, mail: Callable[..., bytes]) -> None:
    box = mailbox.mbox(tmp_path / "export.mbox", create=True)
    for _ in range(3):
        box.add(mail())
    box.close()
    summary = json.loads(cli("scan", "--source", str(tmp_path / "export.mbox"), "--json").out)
    assert (summary["examined"], summary["recorded"]) == (3, 3)


def test_single_eml_and_an_empty_folder(
    cli: CLI, eml_dir: Path, mail: Callable[..., bytes]
) -> None:
    empty = cli("scan", "--source", str(eml_dir))
    assert empty.status == 1
    assert "holds no mail" in empty.err
    one = eml_dir / "one.eml"
    one.write_bytes(mail())
    summary = json.loads(cli("scan", "--source", str(one), "--json").out)
    assert summary["recorded"] == 1


def test_broken_mails_are_counted_and_skipped(
    cli: CLI, eml_dir: Path, mail: Callable[..., bytes]
) -> None:
    (eml_dir / "empty.eml").write_bytes(b"")
    (eml_dir / "binary.eml").write_bytes(bytes(range(256)) * 50)
    (eml_dir / "good.eml").write_bytes(mail())
    result = cli("scan", "--source", str(eml_dir), "--json")
    assert result.status == 0, result.err
    summary = json.loads(result.out)
    assert summary["recorded"] == 1
    assert summary["examined"] == 3
