"""Is a mail really from its sender? Pure: the DNS lookup for DKIM comes in from the edge.

Trust policy (fails closed: only True moves a request or shows a code):

1. Strict From. Exactly one From header naming exactly one mailbox, read by our own strict
   parser (see `fromaddr`); its domain must be the one the rules saw. Otherwise False.
2. The provider's block. Received hops and Authentication-Results (AR) are read top to bottom;
   the block is everything above the first Received hop whose `by` host lies outside the
   provider's domains (hosts without a dot, IP literals and `.internal`-style names are the
   provider's internal hops). The block must hold a hop of the provider's own domains, or no
   AR counts (a forged AR as the first header of a mail the provider never delivered). For
   self-hosted servers and Microsoft the AR must also sit above the provider's lowest hop,
   the one where it took the mail in: milters and Exchange stamp there, Gmail, Yahoo and
   Fastmail below.
3. Trusted authserv-ids: (a) the account's `trusted_authserv_ids` / `--trust`, exact or
   `*.suffix`; else (b) the built-in table of providers (`trust.PROVIDERS`), chosen by the
   provider hint (the IMAP host) or the topmost named Received hop (Microsoft's AR has no id
   and counts only with Microsoft hops); else (c) learned for self-hosted mail: an id equal
   to, or in the registrable domain of, the `by` host of the topmost named Received hop.
4. Verdict from the trusted ARs. Any dkim fail for the From's domain (or with no domain),
   any dmarc fail, a Microsoft compauth fail, or two trusted headers of one id giving the
   same method different results: False (a fail wins over any pass). Else a dkim pass whose
   header.d/header.i aligns with the From domain (relaxed: same registrable domain on the
   Public Suffix List), or a dmarc pass whose header.from is the From domain: True. Anything
   else (none, neutral, temperror, permerror, policy, spf only, arc only, unreadable): None.
5. No trusted AR at all: the DKIM signatures are verified locally (`dkimcheck`) when the edge
   gave a DNS lookup: valid and aligned True, failing False, key or DNS missing None.

Lookalike helpers fold homoglyphs and find a word one typo away inside a domain.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from optout_mail.model import Message
from optout_mail.rules.authresults import AuthHeader, AuthResult
from optout_mail.rules.dkimcheck import DnsLookup, verify_dkim
from optout_mail.rules.fromaddr import FromError, strict_from
from optout_mail.rules.trust import Trust, aligned, provider_headers

_FAILS = frozenset({"fail", "softfail"})
# Sources fetch at most this much of a mail; a body cut there cannot match its DKIM hash.
MAY_BE_CUT_AT = 1 << 20
_JUDGED = ("dkim", "dmarc", "compauth")


@dataclass(frozen=True)
class Verdict:
    """Whether a mail is authentic (True / False / None = unverified), and why."""

    authentic: bool | None
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # headers that could not be read (never a silent pass)


def authenticity(
    message: Message, trust: Trust | None = None, *, dkim_dns: DnsLookup | None = None
) -> Verdict:
    """The verdict on `message` under `trust` (see the policy above). Never raises."""
    try:
        address = strict_from(message.from_headers)
    except FromError as exc:
        return Verdict(False, (str(exc),))
    domain = address.rpartition("@")[2]
    if domain != message.from_domain:
        return Verdict(
            False,
            (f"From is ambiguous: {domain} strictly, {message.from_domain} as read for the rules",),
        )
    block = provider_headers(message.trace, trust or Trust())
    if block.headers:
        verdict, why = judge(block.headers, domain)
        return Verdict(verdict, (*block.reasons, *why), block.warnings)
    reasons = [*block.reasons, "no trusted Authentication-Results"]
    if dkim_dns is None or not message.raw:
        return Verdict(
            None, (*reasons, "DKIM not verified locally (no DNS lookup given)"), block.warnings
        )
    outcome = verify_dkim(message.raw, domain, dkim_dns)
    if outcome.authentic is False and len(message.raw) >= MAY_BE_CUT_AT:
        reasons.append("the mail may have been cut short when fetched: unverifiable")
        return Verdict(None, (*reasons, *outcome.reasons), block.warnings)
    return Verdict(outcome.authentic, (*reasons, *outcome.reasons), block.warnings)


def judge(headers: tuple[AuthHeader, ...], from_domain: str) -> tuple[bool | None, list[str]]:
    """The verdict of trusted headers on a mail from `from_domain`, and the reasons."""
    fails: list[str] = []
    passes: list[str] = []
    # (authserv-id, method) -> {header index: its results}: headers of one id must agree.
    seen: dict[tuple[str | None, str], dict[int, frozenset[str]]] = {}
    for index, header in enumerate(headers):
        for result in header.results:
            if result.method not in _JUDGED:
                continue
            signer = _signer(result)
            relevant = result.method != "dkim" or not signer or aligned(signer, from_domain)
            if relevant:
                per_header = seen.setdefault((header.authserv_id, result.method), {})
                per_header[index] = per_header.get(index, frozenset()) | {result.result}
            what = f"{result.method}={result.result}" + (f" ({signer})" if signer else "")
            if result.result in _FAILS and relevant:
                fails.append(what)
            elif result.result == "pass" and _passes_for(result, signer, from_domain):
                passes.append(what)
    if fails:
        return False, [f"failed: {', '.join(fails)}"]
    for (authserv_id, method), by_header in seen.items():
        if len(set(by_header.values())) > 1:
            results = sorted({r for rs in by_header.values() for r in rs})
            who = authserv_id or "(no authserv-id)"
            return False, [f"trusted headers of {who} disagree on {method}: {', '.join(results)}"]
    if passes:
        return True, [f"passed, aligned with {from_domain}: {', '.join(passes)}"]
    return None, [f"no aligned dkim or dmarc pass for {from_domain}"]


def _signer(result: AuthResult) -> str:
    if result.method == "dkim":
        value = result.prop("header.d", "header.i")
    elif result.method == "dmarc":
        value = result.prop("header.from")
    else:
        return ""
    value = value.strip().strip("<>").rpartition("@")[2].lower().rstrip(".")
    return "" if value == "none" else value


def _passes_for(result: AuthResult, signer: str, from_domain: str) -> bool:
    if result.method == "dkim":
        return bool(signer) and aligned(signer, from_domain)
    if result.method == "dmarc":
        return signer == from_domain
    return False


def lookalike_word(domain: str, words: Iterable[str]) -> str | None:
    """The first of `words` that `domain` imitates (after folding homoglyphs), else None."""
    folded = fold_homoglyphs(domain)
    for token in re.split(r"[^a-z]+", folded):
        for word in words:
            if word in token or (len(word) >= 6 and within_one_edit(token, word)):
                return word
    return None


_HOMOGLYPHS = str.maketrans({"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t"})


def fold_homoglyphs(domain: str) -> str:
    """`domain` lower-cased, without accents, digits read as letters, rn as m and vv as w."""
    folded = unicodedata.normalize("NFKD", domain.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).translate(_HOMOGLYPHS)
    return folded.replace("rn", "m").replace("vv", "w")


def within_one_edit(a: str, b: str) -> bool:
    """True when `a` contains a substring at most one edit (insert/delete/replace) from `b`."""
    n = len(b)
    for size in (n - 1, n, n + 1):
        for start in range(0, max(len(a) - size, -1) + 1):
            if _one_edit(a[start : start + size], b):
                return True
    return False


def _one_edit(x: str, y: str) -> bool:
    if abs(len(x) - len(y)) > 1:
        return False
    if len(x) == len(y):
        return sum(p != q for p, q in zip(x, y, strict=True)) <= 1
    short, long_ = (x, y) if len(x) < len(y) else (y, x)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))
