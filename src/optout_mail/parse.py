"""Bytes to `Message`: mail-parser does the MIME work, this module picks what the rules need.

HTML-only mails become readable text; Received hops, Authentication-Results and From headers
are kept raw for the authenticity check, which reads them only for mails a rule matched.
Whatever the input, `parse` returns a `Message`: problems end up in `defects`.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import logging
import re
import warnings
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message as StdMessage
from typing import Any

from optout_mail.htmltext import html_to_text
from optout_mail.model import Message, RawMail, TraceHeader

log = logging.getLogger(__name__)

# Meta's replies are a few kilobytes. Larger mails are cut before parsing so that a 20 MB
# attachment costs neither seconds nor hundreds of megabytes; the text we need comes first.
MAX_PARSE_BYTES = 1 << 20
MAX_TEXT_CHARS = 128 * 1024
# The stdlib MIME parser checks every line against every open boundary: time grows with depth
# times lines. Meta's mails have two or three parts; a mail with hundreds is not one of them.
MAX_MIME_BOUNDARIES = 64

# mail-parser logs raw header text (personal data) at ERROR and chats at WARNING.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)


_HEADER_LINE = re.compile(rb"^[!-9;-~]+[ \t]*:")  # RFC 5322 field name (any ASCII but ":")
_MAIL_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"received", b"return-path")


def looks_like_mail(data: bytes) -> bool:
    """Whether `data` starts like an e-mail: a header block (an mbox "From " line may come
    first) naming at least one of From, To, Subject, Date, Message-ID, Received. A text file,
    an image or a PDF does not; `classify` says "not a mail" for those instead of "no match"."""
    head = data[:65536].lstrip(b"\r\n")
    if head.startswith(b"From "):
        head = head.partition(b"\n")[2]
    block = re.split(rb"\r?\n\r?\n", head, maxsplit=1)[0]
    if not block or b"\0" in block:
        return False
    lines = block.splitlines()
    if not _HEADER_LINE.match(lines[0]):
        return False
    names = {line.split(b":", 1)[0].strip().lower() for line in lines if _HEADER_LINE.match(line)}
    return any(name in names for name in _MAIL_HEADERS)


def parse(raw: RawMail) -> Message:
    """Parse one mail. Never raises: unusable parts are reported in `Message.defects`."""
    data = raw.data
    defects: list[str] = []
    if len(data) > MAX_PARSE_BYTES:
        data = data[:MAX_PARSE_BYTES]
        defects.append(f"truncated: only the first {MAX_PARSE_BYTES} bytes were parsed")
    if data.lower().count(b"boundary=") > MAX_MIME_BOUNDARIES:
        defects.append(f"more than {MAX_MIME_BOUNDARIES} MIME boundaries; headers only")
        return _parse_headers_only(data, defects, raw.data)
    try:
        return _parse_with_mailparser(data, defects, raw.data)
    except Exception as exc:  # mail-parser raises many types on hostile input
        defects.append(f"unparseable MIME structure ({type(exc).__name__}); headers only")
        return _parse_headers_only(data, defects, raw.data)


def _parse_with_mailparser(data: bytes, defects: list[str], raw: bytes) -> Message:
    import mailparser  # imported here: it costs ~40 ms and most commands do not parse mail

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mail = mailparser.parse_from_bytes(data)
    std: StdMessage = mail.message
    defects.extend(sorted(str(d) for d in mail.defects_categories))
    subject = mail.subject
    if isinstance(subject, list):  # mail-parser returns a list when the header repeats
        subject = subject[0] if subject else ""
    from_name, from_address = _first_address(mail.from_, std.get("From"))
    text = "\n".join(part for part in mail.text_plain if part.strip())
    html = "\n".join(mail.text_html)[: MAX_TEXT_CHARS * 2] if mail.text_html else ""
    if not text.strip() and html:
        text, html = html_to_text(html), ""
    return Message(
        message_id=_message_id(std.get("Message-ID"), data),
        from_address=from_address,
        from_name=from_name,
        to=tuple(addr.lower() for _name, addr in mail.to if addr),
        subject=_one_line(str(subject or "")),
        date=_utc(mail.date),
        text=text[:MAX_TEXT_CHARS],
        html=html,
        in_reply_to=header_text(std.get("In-Reply-To")).strip(),
        references=tuple(header_text(std.get("References")).split()),
        trace=trace_headers(std),
        from_headers=_raw_values(std, "from"),
        defects=tuple(defects),
        raw=raw,
    )


def _parse_headers_only(data: bytes, defects: list[str], raw: bytes) -> Message:
    header_block = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    std = email.message_from_bytes(header_block + b"\n\n", policy=email.policy.compat32)
    from_name, from_address = _first_address([], std.get("From"))
    to = [addr.lower() for _n, addr in email.utils.getaddresses(std.get_all("To", [])) if addr]
    date: datetime | None
    try:
        date = _utc(email.utils.parsedate_to_datetime(header_text(std.get("Date"))))
    except (TypeError, ValueError, IndexError):
        date = None
    return Message(
        message_id=_message_id(std.get("Message-ID"), data),
        from_address=from_address,
        from_name=from_name,
        to=tuple(to),
        subject=_one_line(header_text(std.get("Subject"))),
        date=date,
        text="",
        in_reply_to=header_text(std.get("In-Reply-To")).strip(),
        references=tuple(header_text(std.get("References")).split()),
        trace=trace_headers(std),
        from_headers=_raw_values(std, "from"),
        defects=tuple(defects),
        raw=raw,
    )


_COMMENT = re.compile(r"\([^()]*\)")
_BY_HOST = re.compile(r"(?:^|\s)by\s+([^\s;()]+)", re.IGNORECASE)


def trace_headers(std: StdMessage) -> tuple[TraceHeader, ...]:
    """Received hops (their `by` host) and Authentication-Results values, top to bottom."""
    trace: list[TraceHeader] = []
    for name, value in std.raw_items():
        lower = name.lower()
        if lower == "received":
            trace.append(TraceHeader("received", received_by(_text(value))))
        elif lower == "authentication-results":
            trace.append(TraceHeader("auth", _one_line(_text(value))))
    return tuple(trace)


def received_by(value: str) -> str:
    """The host named in the `by` clause of a Received value, lower-case ("" for none)."""
    text = " ".join(value.split())
    while True:  # comments may nest, and may say "by" themselves
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    found = _BY_HOST.search(text.partition(";")[0])
    return found.group(1).lower().rstrip(".") if found else ""


def _raw_values(std: StdMessage, header: str) -> tuple[str, ...]:
    return tuple(_text(v) for n, v in std.raw_items() if n.lower() == header)


def _text(value: object) -> str:
    """A raw header value as text: undecoded, raw UTF-8 (RFC 6532) read as such."""
    text = str(value)
    try:
        return text.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text


def _first_address(parsed: list[Any], raw_header: object) -> tuple[str, str]:
    for name, address in parsed:
        if address and "@" in address:
            return str(name or "").strip(), str(address).strip().lower()
    # mail-parser drops addresses it finds ambiguous; the raw header may still name one.
    name, address = email.utils.parseaddr(header_text(raw_header))
    if "@" in address:
        return name.strip(), address.strip().lower()
    return name.strip(), ""


def _message_id(value: object, data: bytes) -> str:
    text = header_text(value).strip()
    if text:
        return text.split()[0]
    # Without a Message-ID the content itself identifies the mail, so a rescan still dedupes.
    return "<sha256:" + hashlib.sha256(data).hexdigest() + "@optout-mail.invalid>"


def header_text(value: object) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
