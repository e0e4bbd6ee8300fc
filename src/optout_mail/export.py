"""The ledger as files: a CSV table (one row per mail), the JSON array, and the evidence
bundle of one request (its original mails, a manifest with their SHA-256, the HTML report).

Building is pure (views and bytes in, text or bytes out); `write_new` is the one file write,
atomic and 0600: these files hold the user's mail.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from optout_mail.errors import OptoutError, UsageError
from optout_mail.mailstore import sha256_hex
from optout_mail.model import EventView, RequestView, request_label
from optout_mail.report import render_report

REQUEST_COLUMNS = (
    "request_id",
    "platform",
    "account",
    "kind",
    "state",
    "overdue",
    "filed_at",
    "due_at",
    "extended",
    "request_reference",
)
EVENT_COLUMNS = (
    "event_id",
    "received_at",
    "outcome",
    "authentic",
    "sender",
    "subject",
    "rule",
    "language",
    "code",
    "reference",
    "state_before",
    "state_after",
    "note",
    "message_id",
    "source",
    "folder",
    "uid",
    "raw_sha256",
)
CSV_COLUMNS = REQUEST_COLUMNS + EVENT_COLUMNS
# A cell starting like this is run as a formula by spreadsheets; subjects come from strangers.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NOT_KEPT = "original not kept"
MISSING = "original missing or damaged"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _request_cells(r: RequestView | None) -> list[object]:
    if r is None:
        return [None] * len(REQUEST_COLUMNS)
    return [
        r.id,
        r.platform,
        r.account,
        r.kind.value,
        r.state.value,
        r.overdue,
        r.filed_at,
        r.due_at,
        r.extended,
        r.reference,
    ]


def _event_cells(e: EventView | None) -> list[object]:
    if e is None:
        return [None] * len(EVENT_COLUMNS)
    return [
        e.id,
        e.received_at,
        e.outcome.value,
        e.authentic,
        e.sender,
        e.subject,
        e.rule,
        e.language,
        e.code,
        e.reference,
        e.state_before and e.state_before.value,
        e.state_after and e.state_after.value,
        e.note,
        e.message_id,
        e.source,
        e.folder,
        e.uid,
        e.raw_sha256,
    ]


def ledger_csv(requests: Sequence[RequestView], unattached: Sequence[EventView] = ()) -> str:
    """One row per mail with its request's columns; a request without mail gets one row with
    empty mail columns, a mail that belongs to no request one with empty request columns.
    Cells a spreadsheet would run as a formula start with an apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    rows: list[tuple[RequestView | None, EventView | None]] = []
    for r in requests:
        rows.extend((r, e) for e in r.events or (None,))
    rows.extend((None, e) for e in unattached)
    for request, event in rows:
        writer.writerow(_cell(v) for v in _request_cells(request) + _event_cells(event))
    return out.getvalue()


def ledger_json(requests: Sequence[RequestView]) -> str:
    """The array `requests list --json` prints."""
    return json.dumps([r.as_json() for r in requests], ensure_ascii=False, indent=2) + "\n"


@dataclass(frozen=True)
class Bundle:
    """The evidence of one request: files by their path inside `folder`, and the mails whose
    original could not be included."""

    folder: str
    files: tuple[tuple[str, bytes], ...]
    not_kept: tuple[EventView, ...]
    missing: tuple[EventView, ...]


def _mail_name(index: int, event: EventView) -> str:
    return f"mails/{index:02d}-{(event.received_at or '')[:10]}-{event.outcome.value}.eml"


def build_bundle(
    request: RequestView,
    *,
    original: Callable[[str], bytes | None],
    now: datetime,
    generator: str,
) -> Bundle:
    """Everything `evidence` puts in the zip. `original(sha256)` reads a kept mail (None when
    it is gone or damaged). MANIFEST.sha256 covers every other file, sha256sum-style."""
    files: list[tuple[str, bytes]] = []
    events: list[dict[str, object]] = []
    not_kept: list[EventView] = []
    missing: list[EventView] = []
    for index, event in enumerate(request.events, start=1):
        data = original(event.raw_sha256) if event.raw_sha256 else None
        entry = {"id": event.id, **event.as_json(), "file": None, "original": "kept"}
        if data is not None:
            entry["file"] = _mail_name(index, event)
            files.append((_mail_name(index, event), data))
        elif event.raw_sha256 is None:
            entry["original"] = NOT_KEPT
            not_kept.append(event)
        else:
            entry["original"] = MISSING
            missing.append(event)
        events.append(entry)
    title = f"Request #{request.id}: {request_label(request.platform, request.kind)}"
    files.append(("report.html", render_report([request], now=now, title=title).encode()))
    described = {k: v for k, v in request.as_json().items() if k != "events"}
    manifest = {
        "format": "optout-mail evidence 1",
        "generator": generator,
        "generated_at": now.isoformat(timespec="seconds"),
        "request": described,
        "events": events,
        "files": [{"path": p, "sha256": sha256_hex(d), "bytes": len(d)} for p, d in files],
        "verify": "sha256sum -c MANIFEST.sha256 (in this folder)",
    }
    files.append(
        ("manifest.json", (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode())
    )
    sums = "".join(f"{sha256_hex(d)}  {p}\n" for p, d in files)
    files.append(("MANIFEST.sha256", sums.encode()))
    return Bundle(f"request-{request.id}", tuple(files), tuple(not_kept), tuple(missing))


def bundle_zip(bundle: Bundle, now: datetime) -> bytes:
    """The bundle as a zip whose entries sit in one folder, so unzipping makes no mess."""
    out = io.BytesIO()
    stamp = now.timetuple()[:6]
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in bundle.files:
            info = zipfile.ZipInfo(f"{bundle.folder}/{path}", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o600 << 16
            archive.writestr(info, data)
    return out.getvalue()


def write_new(path: Path, data: bytes, *, force: bool) -> None:
    """Write `path` atomically, 0600. Raises UsageError when it exists and not `force`,
    OptoutError when it cannot be written."""
    if path.exists() and not force:
        raise UsageError(f"{path} exists already", hint="choose another --output, or --force")
    try:
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OptoutError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        raise OptoutError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
