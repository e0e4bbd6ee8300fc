"""Whose Authentication-Results count: the user's provider, found from config, a table, the hops.

`provider_headers` cuts the provider's block off the top of a mail's trace (see the policy in
`optout_mail.rules.authenticity`) and returns the Authentication-Results inside it whose
authserv-id is trusted; `registrable` and `aligned` compare domains on the Public Suffix List.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from optout_mail.model import TraceHeader
from optout_mail.rules.authresults import AuthHeader, parse_auth_header

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

NO_ID = ""  # stands for "the header has no authserv-id" (Microsoft 365 / Outlook.com)


@dataclass(frozen=True)
class Trust:
    """What the user told us: authserv-ids to trust (exact, or `*.suffix`), and a provider
    hint (a provider key of `PROVIDERS`, or the account's IMAP host name)."""

    authserv_ids: tuple[str, ...] = ()
    provider: str | None = None


@dataclass(frozen=True)
class Provider:
    key: str
    hops: tuple[str, ...]  # domains of the provider's own Received hops
    ids: tuple[str, ...]  # trusted authserv-ids: exact, `*.suffix`, or NO_ID
    imap: tuple[str, ...] = ()  # domains of its IMAP hosts, for the hint


PROVIDERS = (
    Provider("gmail", ("google.com",), ("mx.google.com",), ("gmail.com", "googlemail.com")),
    Provider("microsoft", ("outlook.com", "office365.com", "microsoft.com"), (NO_ID,)),
    Provider("yahoo", ("yahoo.com", "aol.com"), ("*.yahoo.com",), ("yahoo.com", "aol.com")),
    Provider("icloud", ("icloud.com", "me.com", "apple.com"), ("*.icloud.com",)),
    Provider("gmx", ("gmx.net", "gmx.de", "gmx.com"), ("gmx.net", "gmx.de", "gmx.com")),
    Provider("webde", ("web.de",), ("web.de",)),
    Provider("fastmail", ("messagingengine.com", "fastmail.com"), ("*.messagingengine.com",)),
    Provider("proton", ("protonmail.ch", "proton.me"), ("protonmail.ch", "*.protonmail.ch")),
    Provider("posteo", ("posteo.de",), ("posteo.de",)),
    Provider("mailbox.org", ("mailbox.org",), ("mailbox.org", "*.mailbox.org")),
    Provider("zoho", ("zoho.com", "zohomail.com", "zoho.eu"), ("*.zohomail.com", "*.zoho.com")),
)
# Host names that never leave a provider's own network.
_INTERNAL_SUFFIXES = (".internal", ".local", ".localdomain", ".lan", ".home.arpa", ".localhost")


@dataclass(frozen=True)
class Block:
    """The provider's part of the trace and the Authentication-Results it trusts there."""

    provider: str  # a key of PROVIDERS, "configured" or "self-hosted"
    headers: tuple[AuthHeader, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]


def provider_headers(trace: tuple[TraceHeader, ...], trust: Trust) -> Block:
    """The trusted Authentication-Results of the provider's block, parsed, top to bottom."""
    hops = [t.value for t in trace if t.kind == "received"]
    provider = _provider_for(trust.provider, hops)
    domains: set[str] = set(provider.hops) if provider else set()
    ids: tuple[str, ...] = trust.authserv_ids or (provider.ids if provider else ())
    for pattern in trust.authserv_ids:
        if pattern != NO_ID and (reg := registrable(pattern.removeprefix("*."))):
            domains.add(reg)
    name = "configured" if trust.authserv_ids else provider.key if provider else "self-hosted"
    if not domains:  # self-hosted: learn the provider from the topmost named hop
        top = next((h for h in hops if _is_named(h)), None)
        if top is None:
            return Block(name, (), ("no Received hop names the receiving server",), ())
        org = registrable(top) or top
        domains = {org}
        ids = (top, org, f"*.{org}")
    inside, provider_hop_at = _block(trace, domains)
    cut: list[TraceHeader] = []  # the trace below the inbound hop, when it is set aside
    own_hops = any(entry.kind == "received" for entry in inside)
    # Yahoo and iCloud name their own hops only by internal names or IP literals; a table
    # provider needs some hop of its own above the mail, a self-hosted one a named hop.
    table_provider = provider is not None and provider.key != "microsoft"
    if provider_hop_at is None and not (table_provider and own_hops):
        why = f"no Received hop of the provider ({', '.join(sorted(domains))}) above the mail"
        return Block(name, (), (why,), ())
    if (
        (provider is None or provider.key == "microsoft")
        and provider_hop_at is not None
        and not trust.authserv_ids
    ):
        # Only a result above the hop where the server took the mail in is surely its own
        # (RFC 8601); below it a sender can have written one. A user who names the ids
        # (trusted_authserv_ids) vouches for a server that writes below it (OpenDKIM 2.11,
        # OpenDMARC 1.4, rspamd behind Postfix) and strips forged copies.
        inside, cut = inside[:provider_hop_at], inside[provider_hop_at:]
    headers: list[AuthHeader] = []
    warnings: list[str] = []
    ignored: list[str] = []
    for entry in inside:
        if entry.kind != "auth":
            continue
        header = parse_auth_header(entry.value)
        if not _id_trusted(header.authserv_id, ids):
            ignored.append(header.authserv_id or "(no authserv-id)")
            continue
        headers.append(header)
        warnings.extend(
            f"{header.authserv_id or 'Authentication-Results'}: {w}" for w in header.warnings
        )
    reasons = [f"provider {name}: {len(headers)} trusted Authentication-Results header(s)"]
    # Read only when nothing above counts: OpenDKIM 2.11 and OpenDMARC 1.4 write there, and so
    # can any sender. Say how to decide.
    below = _ids_below(cut, ids) if not headers else []
    if below:
        reasons.append(
            f"Authentication-Results of {below[0]} stand below its own Received hop, where the "
            "sender could have written them; if that server removes forged copies, trust it: "
            f'trusted_authserv_ids = ["{below[0]}"]'
        )
    if ignored:
        reasons.append(f"ignored untrusted authserv-id(s): {', '.join(sorted(set(ignored)))}")
    return Block(name, tuple(headers), tuple(reasons), tuple(warnings))


def _ids_below(entries: list[TraceHeader], ids: tuple[str, ...]) -> list[str]:
    """The trusted authserv-ids of the Authentication-Results among `entries`, in order."""
    found = (parse_auth_header(e.value).authserv_id for e in entries if e.kind == "auth")
    return list(dict.fromkeys(i for i in found if i and _id_trusted(i, ids)))


def _block(
    trace: tuple[TraceHeader, ...], domains: set[str]
) -> tuple[list[TraceHeader], int | None]:
    """The trace above the first foreign hop, and the index of the lowest provider hop in it
    (None when the block holds no hop of the provider's own domains)."""
    inside: list[TraceHeader] = []
    lowest: int | None = None
    for entry in trace:
        if entry.kind == "received":
            host = entry.value
            if not _is_named(host):
                pass  # an internal hop (or one that names no server: a local re-injection)
            elif _in_domains(host, domains):
                lowest = len(inside)
            else:
                break
        inside.append(entry)
    return inside, lowest


def _provider_for(hint: str | None, hops: list[str]) -> Provider | None:
    if hint:
        hint = hint.lower().rstrip(".")
        for provider in PROVIDERS:
            if hint == provider.key or _in_domains(hint, {*provider.hops, *provider.imap}):
                return provider
    top = next((h for h in hops if _is_named(h)), None)
    if top is not None:
        for provider in PROVIDERS:
            if _in_domains(top, set(provider.hops)):
                return provider
    return None


def _id_trusted(authserv_id: str | None, patterns: tuple[str, ...]) -> bool:
    if authserv_id is None:
        return NO_ID in patterns
    for pattern in patterns:
        pattern = pattern.lower()
        if pattern.startswith("*."):
            if authserv_id.endswith(pattern[1:]):
                return True
        elif pattern != NO_ID and authserv_id == pattern:
            return True
    return False


def _is_named(host: str) -> bool:
    """A dotted DNS name outside private namespaces (not an IP literal, not internal)."""
    if "." not in host or host.endswith(_INTERNAL_SUFFIXES) or host == "localhost":
        return False
    try:
        ipaddress.ip_address(host.strip("[]").removeprefix("ipv6:"))
    except ValueError:
        return True
    return False


def _in_domains(host: str, domains: set[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


@cache
def _psl() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


def registrable(domain: str) -> str | None:
    """The registrable (organisational) domain, e.g. mail.instagram.com -> instagram.com."""
    domain = domain.lower().strip().rstrip(".")
    if not domain or "." not in domain:
        return None
    found = _psl().privatesuffix(domain)
    return str(found) if found else None


def aligned(signer: str, from_domain: str) -> bool:
    """Relaxed alignment (RFC 7489 3.1.1): the same registrable domain."""
    signer = signer.lower().strip().rstrip(".").rpartition("@")[2]
    if not signer or not from_domain:
        return False
    org = registrable(from_domain)
    return org is not None and registrable(signer) == org
