"""What a scan downloads of a mail: the header and the text parts the rules read, then the whole
mail only when the triage says a rule could match it.

A heavy Facebook user's Meta mails are 60-120 KB of layout HTML and images around a few hundred
bytes of plain text. The structure (IMAP BODY) tells which parts are text; a stand-in mail of
the header and those parts reads the same to the rules. A structure this module does not fully
understand (a single part, forwarded mails, deep nesting, huge mails) is fetched whole, as
before: slower, never different.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optout_mail.errors import ConnectionLost
from optout_mail.model import RawMail
from optout_mail.parse import MAX_MIME_BOUNDARIES, MAX_PARSE_BYTES
from optout_mail.sources.imap_connect import clean

if TYPE_CHECKING:
    from imapclient import IMAPClient

log = logging.getLogger(__name__)

MAX_FETCH_BYTES = MAX_PARSE_BYTES  # parse() reads no further; a partial fetch bounds huge mails
WHOLE_ITEM = f"BODY.PEEK[]<0.{MAX_FETCH_BYTES}>"
# Below this size the round trips of a partial fetch cost more than the bytes they save.
PARTIAL_MIN_BYTES = 16 * 1024

Triage = Callable[[RawMail], bool]  # False: no rule can match this mail


@dataclass(frozen=True)
class TextParts:
    """The text parts of a multipart mail, as IMAP part numbers ("1", "2.1")."""

    specs: tuple[str, ...]


def text_parts(structure: Any, size: int, min_bytes: int = PARTIAL_MIN_BYTES) -> TextParts | None:
    """The parts the rules read -- the plain ones, or the HTML ones when there is no plain
    part -- or None when the mail (of `size` bytes) is to be fetched whole. `structure` is a
    BODY or BODYSTRUCTURE response; what only BODYSTRUCTURE tells (dispositions) the triage
    also reads from the parts' own MIME headers in the stand-in."""
    if size < min_bytes or size > MAX_FETCH_BYTES or not _is_multipart(structure):
        return None
    plain: list[str] = []
    html: list[str] = []
    multiparts = 0
    stack: list[tuple[Any, str]] = [(structure, "")]
    while stack:
        node, spec = stack.pop()
        if _is_multipart(node):
            multiparts += 1
            if multiparts > MAX_MIME_BOUNDARIES or _disposition(node, 3) is not None:
                return None
            children = [
                (child, f"{spec}.{i}" if spec else str(i))
                for i, child in enumerate(node[0], start=1)
            ]
            stack.extend(reversed(children))
            continue
        kind = _lower(node[0]), _lower(node[1])
        if kind[0] == "message":
            return None  # a forwarded mail: mail-parser reads inside it
        if kind[0] != "text" or kind[1] not in ("plain", "html"):
            continue  # images, attachments, calendars: the rules never read them
        # A text part's disposition follows md5 in its extension data (RFC 3501 7.4.2).
        if _disposition(node, 9) not in (None, "inline") or _named(node[2], b"name"):
            return None  # attached text: let the full path decide what it is
        (plain if kind[1] == "plain" else html).append(spec)
    chosen = plain or html
    if not chosen:
        return None
    return TextParts(tuple(chosen))


# The stand-in's own top boundary: one string for every mail, so the standard library's parser
# compiles its boundary pattern once (it compiles one per distinct boundary), and one that text
# parts do not contain ("=_" is not quoted-printable, "_" not base64).
STAND_IN_BOUNDARY = b"=_optout-mail_stand-in_="
_CONTENT_TYPE = re.compile(rb"(?im)^content-type:(?:[^\r\n]|\r?\n[ \t])*(?:\r?\n|$)")


def stand_in(header: bytes, parts: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A mail of `header` (its Content-Type replaced) and the given (MIME header, body) parts."""
    head = _CONTENT_TYPE.sub(b"", header).rstrip(b"\r\n")
    content_type = b'Content-Type: multipart/mixed; boundary="' + STAND_IN_BOUNDARY + b'"'
    out = [head, b"\r\n", content_type, b"\r\n\r\n"]
    for mime, body in parts:
        out += [b"--", STAND_IN_BOUNDARY, b"\r\n", mime, body, b"\r\n"]
    out += [b"--", STAND_IN_BOUNDARY, b"--\r\n"]
    return b"".join(out)


@dataclass(frozen=True)
class Planned:
    """One chunk between its structure and its whole fetch: the UIDs to fetch whole anyway,
    and the stand-ins of the others, which wait for the triage."""

    folder: str
    uidvalidity: int
    whole: list[int]
    stand_ins: list[RawMail]


class MailFetcher:
    """Downloads one chunk of UIDs of the selected folder as `RawMail`s, text parts first."""

    def __init__(
        self,
        client: IMAPClient,
        account: str,
        triage: Triage | None,
        partial_min: int = PARTIAL_MIN_BYTES,
    ) -> None:
        self._client = client
        self._account = account
        self._triage = triage
        self._partial_min = partial_min

    def fetch(self, folder: str, uidvalidity: int, uids: list[int]) -> tuple[list[RawMail], int]:
        """The mails of `uids` a rule could match, in UID order, and how many were ruled out
        by the triage on their text parts (never downloaded whole)."""
        planned = self.plan(folder, uidvalidity, uids)
        triage = self._triage
        return self.finish(planned, [triage(m) for m in planned.stand_ins] if triage else [])

    def plan(self, folder: str, uidvalidity: int, uids: list[int]) -> Planned:
        """Ask for the structure of `uids` and download the stand-ins of the mails that have
        one; the triage of those may then run anywhere (see `finish`)."""
        if self._triage is None:
            return Planned(folder, uidvalidity, list(uids), [])
        # BODY, not BODYSTRUCTURE: half the tokens for imapclient to parse, all this needs.
        response = self._command(uids, ["RFC822.SIZE", "BODY"])
        partial: dict[int, TextParts] = {}
        for uid in uids:
            parts = _plan(response.get(uid) or {}, self._partial_min)
            if parts is not None:
                partial[uid] = parts
        found = self._stand_ins(partial)
        # A stand-in that could not be read (the mail vanished meanwhile) is asked for whole:
        # the whole fetch then says what happened.
        whole = [uid for uid in uids if uid not in found]
        stand_ins = [
            _raw(data, self._account, folder, uid, uidvalidity)
            for uid, data in sorted(found.items())
        ]
        return Planned(folder, uidvalidity, whole, stand_ins)

    def finish(self, planned: Planned, could_match: Sequence[bool]) -> tuple[list[RawMail], int]:
        """Download whole the mails without a stand-in and those whose stand-in could match
        (`could_match`, one verdict per stand-in); returns them in UID order, and how many
        were ruled out."""
        folder, uidvalidity = planned.folder, planned.uidvalidity
        whole = set(planned.whole)
        whole.update(
            m.uid
            for m, ok in zip(planned.stand_ins, could_match, strict=True)
            if ok and m.uid is not None
        )
        ruled_out = len(planned.stand_ins) - (len(whole) - len(planned.whole))
        found: dict[int, bytes] = {}
        if whole:
            response = self._command(sorted(whole), [WHOLE_ITEM])
            for uid, item in response.items():
                body = _item(item, b"BODY[]")
                if body is not None:
                    found[uid] = body
        mails = []
        for uid in sorted(whole):
            if uid not in found:
                # Deleted by another client between SEARCH and FETCH: nothing to record.
                log.info(
                    "%s/%s: UID %d vanished before it could be read", self._account, folder, uid
                )
                continue
            mails.append(_raw(found[uid], self._account, folder, uid, uidvalidity))
        return mails, ruled_out

    def _stand_ins(self, partial: dict[int, TextParts]) -> dict[int, bytes]:
        """Header and text parts of each mail in `partial`, one FETCH per set of part numbers."""
        groups: dict[tuple[str, ...], list[int]] = {}
        for uid, parts in partial.items():
            groups.setdefault(parts.specs, []).append(uid)
        out: dict[int, bytes] = {}
        for specs, uids in groups.items():
            items = ["BODY.PEEK[HEADER]"]
            for spec in specs:
                items += [f"BODY.PEEK[{spec}.MIME]", f"BODY.PEEK[{spec}]"]
            response = self._command(uids, items)
            for uid in uids:
                item = response.get(uid) or {}
                header = _item(item, b"BODY[HEADER]")
                bodies = [
                    (_item(item, f"BODY[{s}.MIME]".encode()), _item(item, f"BODY[{s}]".encode()))
                    for s in specs
                ]
                if header is None or any(m is None or b is None for m, b in bodies):
                    continue  # vanished meanwhile; the whole fetch will say so
                out[uid] = stand_in(header, bodies)  # type: ignore[arg-type]
        return out

    def _command(self, uids: list[int], items: list[str]) -> dict[int, dict[bytes, Any]]:
        from imapclient.exceptions import IMAPClientError

        try:
            # A list of ints, never a range string: imapclient 4.1 breaks on "1:*" in fetch.
            response = self._client.fetch(uids, items)
        except IMAPClientError as exc:
            raise ConnectionLost(f"account {self._account}: FETCH failed ({clean(exc)})") from None
        return {int(uid): item for uid, item in response.items()}


def _plan(item: dict[bytes, Any], min_bytes: int) -> TextParts | None:
    structure = item.get(b"BODY", item.get(b"BODYSTRUCTURE"))
    size = item.get(b"RFC822.SIZE")
    if structure is None or not isinstance(size, int):
        return None
    try:
        return text_parts(structure, size, min_bytes)
    except (IndexError, TypeError, ValueError):  # a server's odd BODYSTRUCTURE: fetch whole
        return None


def _raw(data: bytes, account: str, folder: str, uid: int, uidvalidity: int) -> RawMail:
    return RawMail(
        data=data,
        origin=f"{account}/{folder}/{uid}",
        folder=folder,
        uid=uid,
        uidvalidity=uidvalidity,
    )


def _item(item: dict[bytes, Any], name: bytes) -> bytes | None:
    """A FETCH data item by name: the key drops ".PEEK" and may carry a partial's origin
    (b"BODY[]<0>"); NIL comes back as None."""
    for key, value in item.items():
        if isinstance(key, bytes) and (key == name or key.startswith(name + b"<")):
            return value if isinstance(value, bytes) else None
    return None


def _is_multipart(node: Any) -> bool:
    return isinstance(node, tuple) and len(node) > 0 and isinstance(node[0], list)


def _lower(value: Any) -> str:
    return value.decode("ascii", "replace").lower() if isinstance(value, bytes) else ""


def _named(params: Any, prefix: bytes) -> bool:
    """Whether a parameter list has a key starting with `prefix` (RFC 2231 splits long names
    into "filename*0*", "filename*1" ...)."""
    if not isinstance(params, tuple):
        return False
    return any(isinstance(k, bytes) and k.lower().startswith(prefix) for k in params[::2])


def _disposition(node: Any, index: int) -> str | None:
    """The disposition type of a part ("attachment", "inline") at its place in the
    BODYSTRUCTURE, or None; a filename makes any disposition count as an attachment."""
    if len(node) <= index or not isinstance(node[index], tuple) or not node[index]:
        return None
    kind, params = node[index][0], node[index][1] if len(node[index]) > 1 else None
    if _named(params, b"filename"):
        return "attachment"
    return _lower(kind) or None
