"""Triage: a cheap first look that rules out the mails no rule can match, before `parse`.

A heavy Facebook user's mailbox holds thousands of notifications of 50-100 KB of HTML, of which
a few dozen matter. `could_match` decides with the standard library alone:

- the From header, read with `BytesHeaderParser`: a mail whose sender is neither a pack's
  sender domain nor a lookalike of one can match no rule (`rules.match` finds no pack for it);
- for the others, the text the rules read, taken from the text parts exactly as `parse` takes
  it (mail-parser walks the same stdlib MIME tree), run through the rules without the
  authenticity check. No rule matched there: none matches in the full path either.

Whenever the mail's structure is not one this module reproduces exactly (defects, attachments
that contain text, encoded file names, more than one sender domain, a cut mail ...), it says
True: the mail then takes the full path, which is only slower, never different.
"""

from __future__ import annotations

import email
import email.policy
import re
import warnings
from email.message import Message as StdMessage
from email.parser import BytesHeaderParser

from optout_mail.model import Message, RawMail
from optout_mail.parse import MAX_MIME_BOUNDARIES, MAX_PARSE_BYTES, MAX_TEXT_CHARS, header_text
from optout_mail.rules.compiled import RuleSet
from optout_mail.rules.match import classify, find_pack

_HEADERS = BytesHeaderParser(policy=email.policy.compat32)
_DOMAIN = re.compile(r"@([^\s<>,;:\"'()\[\]@\\]+)")


def could_match(raw: RawMail, rules: RuleSet) -> bool:
    """False only when no rule of `rules` can match `raw` in the full path (parse, classify)."""
    data = raw.data
    covered = [d for d in sender_domains(data) if find_pack(rules, d) is not None]
    if not covered:
        return False
    if len(data) > MAX_PARSE_BYTES or data.lower().count(b"boundary=") > MAX_MIME_BOUNDARIES:
        return True  # parse() reads such mails differently: leave them to it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            std = email.message_from_bytes(data, policy=email.policy.compat32)
            text = body_text(std)
            subject = _subject(std)
    except Exception:  # hostile input: the full path knows how to fail gracefully
        return True
    if text is None or not text.strip():
        # No text: the full path may read the HTML that a stand-in of the text parts (see
        # sources/imap_fetch) left out, or nothing at all; either way, let it decide.
        return True
    for domain in covered:
        message = Message(
            message_id="",
            from_address="triage@" + domain,
            from_name="",
            to=(),
            subject=subject,
            date=None,
            text=text,
        )
        if classify(message, rules).outcome is not None:
            return True
    return False


def sender_domains(data: bytes) -> set[str]:
    """Every domain the From header(s) could name, read raw and decoded, lower-case: the
    domain mail-parser takes is among them."""
    headers = _HEADERS.parsebytes(header_block(data), headersonly=True)
    values = [str(v) for v in headers.get_all("From", [])]
    found: set[str] = set()
    for value in values:
        for text in (value, header_text(value)):
            for match in _DOMAIN.finditer(text):
                domain = match.group(1).strip().strip(".").lower()
                if domain:
                    found.add(domain)
    return found


def header_block(data: bytes) -> bytes:
    """The header lines of a mail, up to the first empty line (the body is not needed)."""
    ends = [i for i in (data.find(b"\n\n"), data.find(b"\n\r\n")) if i >= 0]
    return data[: min(ends) + 1] if ends else data


def body_text(std: StdMessage) -> str | None:
    """The text `parse` would give the rules (plain parts, else the HTML as text), or None
    when the structure is one where mail-parser might decide otherwise than this function."""
    if std.defects:
        return None
    plain: list[str] = []
    html: list[str] = []
    for part in std.walk():
        if part.defects:
            return None
        disposition = part.get_content_disposition()
        if part.is_multipart():
            if disposition is not None or part.get_filename() is not None:
                return None
            continue
        subtype = part.get_content_subtype()
        if subtype not in ("plain", "html"):
            continue  # an attachment, or a part mail-parser does not treat as text
        if part.get_content_maintype() != "text" or disposition not in (None, "inline"):
            return None
        if part.get_filename() is not None or not _plain_ascii(part):
            return None
        payload = _decode(part, part.get_content_charset("utf-8"))
        if payload is None:
            return None
        if payload:
            (html if subtype == "html" else plain).append(payload)
    text = "\n".join(p for p in plain if p.strip())
    if not text.strip() and html:
        from optout_mail.htmltext import html_to_text

        text = html_to_text("\n".join(html)[: MAX_TEXT_CHARS * 2])
    return text[:MAX_TEXT_CHARS]


def _subject(std: StdMessage) -> str:
    """The subject as `parse` takes it: mail-parser's own decoding, first value, one line."""
    from mailparser.utils import decode_headers

    subject = decode_headers(std.get_all("Subject"))
    if isinstance(subject, list):
        subject = subject[0] if subject else ""
    return " ".join(str(subject or "").split())


def _plain_ascii(part: StdMessage) -> bool:
    """Whether the part's MIME headers are plain ASCII without encoded words: then
    mail-parser's sanitised view of them is the stdlib's."""
    for name in ("Content-Type", "Content-Disposition", "Content-Transfer-Encoding"):
        for value in part.get_all(name, []):
            text = str(value)
            if not text.isascii() or "=?" in text:
                return False
    return len(part.get_all("Content-Type", [])) <= 1


def _decode(part: StdMessage, charset: str) -> str | None:
    """The part's text as mail-parser decodes a body part; None where it would note a
    charset defect (it then decodes differently)."""
    payload = part.get_payload(decode=True)
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if not cte or cte in ("7bit", "8bit"):
        raw_text = part._payload  # type: ignore[attr-defined]  # what mail-parser reads too
        if isinstance(raw_text, str):
            try:
                raw_text.encode("utf-8")
            except UnicodeEncodeError:
                pass
            else:
                return raw_text
    if not payload:
        return ""
    if not isinstance(payload, bytes):
        return None
    try:
        text = payload.decode(charset)
        text.encode("utf-8")
    except (LookupError, UnicodeError):
        return None
    return text
