"""A tolerant reader for Authentication-Results header values (RFC 8601) as providers write them.

Copes with what real headers do: no authserv-id (Microsoft), trailing `;` (Yahoo), comments
anywhere, bare recipient-domain tokens, properties without a `ptype.`. It never raises: what
it cannot read becomes a warning on the result, never a silent pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Aliases some providers write for the registered results (RFC 8601, 8617 and the IANA registry).
_RESULT_ALIASES = {
    "perm_fail": "permerror",
    "permfail": "permerror",
    "temp_fail": "temperror",
    "tempfail": "temperror",
    "hardfail": "fail",
    "unknown": "none",
}
_PTYPES = ("header.", "smtp.", "policy.", "body.")
_PAIR = re.compile(r'\s*([A-Za-z0-9_.\-/]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s";]*)')
_BARE_TOKEN = re.compile(r"[A-Za-z0-9.\-]+")
_ID_VERSION = re.compile(r"^(\S+)(?:\s+(\d+))?$")


@dataclass(frozen=True)
class AuthResult:
    """One resinfo: e.g. dkim=pass with header.d=facebookmail.com."""

    method: str  # lower-case: dkim, dmarc, spf, arc, compauth, ...
    result: str  # lower-case, aliases folded: pass, fail, none, neutral, permerror, ...
    props: tuple[tuple[str, str], ...] = ()  # (lower-case key, value) in order

    def prop(self, *keys: str) -> str:
        """The first non-empty value among `keys`, or ""."""
        for key in keys:
            for name, value in self.props:
                if name == key and value:
                    return value
        return ""


@dataclass(frozen=True)
class AuthHeader:
    """One parsed Authentication-Results header."""

    authserv_id: str | None  # lower-case; None when the header has none (Microsoft)
    results: tuple[AuthResult, ...]
    warnings: tuple[str, ...] = ()


def parse_auth_header(value: str) -> AuthHeader:
    """Parse one header value. Never raises; problems are listed in `warnings`."""
    warnings: list[str] = []
    text = _strip_comments(" ".join(value.split()), warnings)
    segments = _split_semicolons(text, warnings)
    while segments and not segments[-1].strip():
        segments.pop()  # a trailing ";" (Yahoo, Amazon SES, Microsoft)
    if segments and re.fullmatch(r"\s*i\s*=\s*\d+\s*", segments[0]):
        segments.pop(0)  # the ARC instance tag of an ARC-Authentication-Results value
    if not segments:
        return AuthHeader(None, (), ("empty Authentication-Results header",))
    authserv_id: str | None = None
    first = segments[0].strip()
    if "=" not in first:
        segments.pop(0)
        found = _ID_VERSION.match(first)
        if found:
            authserv_id = found.group(1).lower()
        else:
            warnings.append(f"unreadable authserv-id {first[:60]!r}")
    results: list[AuthResult] = []
    for segment in segments:
        _read_segment(segment.strip(), results, warnings)
    if not results and not any(s.strip().lower() == "none" for s in segments):
        warnings.append("no authentication results in the header")
    return AuthHeader(authserv_id, tuple(results), tuple(warnings))


def _read_segment(segment: str, results: list[AuthResult], warnings: list[str]) -> None:
    if not segment or segment.lower() == "none":
        return
    if _BARE_TOKEN.fullmatch(segment):
        return  # a bare recipient-domain token (Microsoft 365): carries nothing
    pairs: list[tuple[str, str]] = []
    pos = 0
    while pos < len(segment):
        found = _PAIR.match(segment, pos)
        if found is None:
            rest = segment[pos:].strip()
            if rest:
                warnings.append(f"unreadable text {rest[:60]!r}")
            break
        key, raw = found.group(1).lower(), found.group(2)
        pairs.append((key, raw[1:-1] if raw.startswith('"') else raw))
        pos = found.end()
    if not pairs:
        return
    key, result = pairs[0]
    if key.startswith(_PTYPES):
        # Properties cut off from their result by a stray ";" (seen from Microsoft).
        if results:
            last = results[-1]
            results[-1] = AuthResult(last.method, last.result, last.props + tuple(pairs))
        else:
            warnings.append(f"properties without a result: {segment[:60]!r}")
        return
    method = key.partition("/")[0]
    result = result.lower()
    if not result:
        warnings.append(f"{method} without a result")
        return
    results.append(AuthResult(method, _RESULT_ALIASES.get(result, result), tuple(pairs[1:])))


def _strip_comments(text: str, warnings: list[str]) -> str:
    """`text` with every (nested) comment replaced by a space; quoted strings kept as they are."""
    out: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(char)
            continue
        if char == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                out.append(char)
            continue
        if depth == 0 and char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
            if depth == 1:
                out.append(" ")
            continue
        elif not quoted and char == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(char)
    if depth:
        warnings.append("unbalanced parenthesis in a comment")
    if quoted:
        warnings.append("unterminated quoted string")
    return "".join(out)


def _split_semicolons(text: str, warnings: list[str]) -> list[str]:
    """Split on ";" outside quoted strings."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts
