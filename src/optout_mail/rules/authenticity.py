"""Is a mail really from its sender? Pure functions, no rules involved.

`authenticity` reads the DKIM/DMARC verdict and its alignment with the From domain; the
lookalike helpers fold homoglyphs and find a word one typo away inside a domain.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from optout_mail.model import Message


def authenticity(message: Message) -> bool | None:
    """True when the topmost Authentication-Results shows DKIM or DMARC pass aligned with the
    From domain, False when it shows them failing, None when there is no verdict to read."""
    auth = message.auth
    domain = message.from_domain
    if auth is None or not domain:
        return None
    if any(_aligned(d, domain) for d in auth.passed("dkim") + auth.passed("dmarc")):
        return True
    if auth.failed("dkim") or auth.failed("dmarc"):
        return False
    if auth.passed("dkim"):
        return False  # signed, but by somebody else's domain: not Meta's signature
    return None


def _aligned(signer: str, from_domain: str) -> bool:
    # Relaxed alignment (RFC 7489 3.1.1), close enough for Meta's domains, which all sit
    # directly below a one-label public suffix (.com, .net).
    return (
        signer == from_domain
        or from_domain.endswith("." + signer)
        or (signer.endswith("." + from_domain))
    )


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
