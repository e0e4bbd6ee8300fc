"""Verify a mail's DKIM signatures locally with dkimpy, the DNS lookup injected from the edge.

`verify_dkim` answers True (a valid signature aligned with the From domain), False (an aligned
signature whose key was found but which does not verify, or signed headers added on top), or
None (no aligned signature, key not found, DNS failure, revoked key: unverifiable, not forged).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from optout_mail.rules.trust import aligned

# The lookup takes a name like "s1._domainkey.example.com" and returns the TXT record, or None
# when there is none; it raises DnsUnavailable (or OSError) when DNS cannot answer.
DnsLookup = Callable[[str], bytes | str | None]


class DnsUnavailable(Exception):
    """DNS gave no answer in time: the key may exist."""


@dataclass(frozen=True)
class DkimOutcome:
    authentic: bool | None
    reasons: tuple[str, ...]


_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


def verify_dkim(raw: bytes, from_domain: str, lookup: DnsLookup) -> DkimOutcome:
    """Check every DKIM-Signature of `raw` whose d= aligns with `from_domain`."""
    import dkim  # dkimpy: only loaded when a mail has to be verified locally

    logging.getLogger("dkim").setLevel(logging.CRITICAL)
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    names = [m.group(1).lower() for m in _HEADER_NAME.finditer(head)]
    try:
        verifier = dkim.DKIM(raw, minkey=1024, timeout=5)
        signatures = [
            (index, dkim.util.parse_tag_value(value))
            for index, (name, value) in enumerate(
                (n, v) for n, v in verifier.headers if n.lower() == b"dkim-signature"
            )
        ]
    except Exception as exc:  # dkimpy raises its own and plain errors on malformed input
        return DkimOutcome(None, (f"DKIM: unreadable signature ({type(exc).__name__})",))
    reasons: list[str] = []
    failed = False
    for index, tags in signatures:
        domain = tags.get(b"d", b"").decode("ascii", "replace").lower()
        selector = tags.get(b"s", b"").decode("ascii", "replace")
        if not aligned(domain, from_domain):
            reasons.append(f"DKIM: signature by {domain or '(no d=)'} is not aligned")
            continue
        if b"l" in tags:
            reasons.append(f"DKIM: signature by {domain} covers only part of the body (l=)")
            continue
        signed = [h.strip().lower() for h in tags.get(b"h", b"").split(b":")]
        extra = [n for n in set(signed) if names.count(n) > signed.count(n)]
        if extra:
            reasons.append(f"DKIM: unsigned copies of signed header(s) {_names(extra)}")
            failed = True
            continue
        name = f"{selector}._domainkey.{domain}"
        try:
            record = lookup(name)
        except (DnsUnavailable, OSError) as exc:
            reasons.append(f"DKIM: key {name} unverifiable, DNS failed ({exc or 'timeout'})")
            continue
        if isinstance(record, str):
            record = record.encode()
        if not record or re.search(rb"(?:^|;)\s*p\s*=\s*(?:;|$)", record):
            reasons.append(f"DKIM: key {name} not found or revoked: unverifiable")
            continue
        try:
            ok = verifier.verify(idx=index, dnsfunc=lambda _n, timeout=5, r=record: r)
        except Exception as exc:
            ok = False
            reasons.append(f"DKIM: verification error ({type(exc).__name__})")
        if ok:
            return DkimOutcome(True, (*reasons, f"DKIM: valid signature by {domain} ({selector})"))
        reasons.append(f"DKIM: signature by {domain} ({selector}) does not verify")
        failed = True
    if not signatures:
        reasons.append("DKIM: the mail is not signed")
    return DkimOutcome(False if failed else None, tuple(reasons))


def _names(names: list[bytes]) -> str:
    return ", ".join(sorted(n.decode("ascii", "replace") for n in names))
