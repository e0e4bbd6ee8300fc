"""The DNS edge: TXT lookups for local DKIM checks (dnspython, a short timeout, a cache), and
the MX lookup `init` uses to recognise the provider behind a custom domain. The pure core
(`optout_mail.rules.dkimcheck`) is handed a `TxtLookup`; this is the only place that talks to
DNS. One lookup object lives for one run, so a key is fetched once per run.
"""

from __future__ import annotations

import time

from optout_mail.rules import DnsUnavailable

DEFAULT_TIMEOUT = 3.0  # seconds for one name, all retries included
DEFAULT_TTL = 3600.0  # the daemon runs for weeks: look a key (or a failure) up again hourly


class TxtLookup:
    """`lookup(name)` -> the TXT record as bytes, None when there is none; raises
    DnsUnavailable when DNS does not answer (remembered too, so one dead resolver costs one
    timeout per name, not one per mail)."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, ttl: float = DEFAULT_TTL) -> None:
        self.timeout = timeout
        self.ttl = ttl
        self._cache: dict[str, tuple[float, bytes | DnsUnavailable | None]] = {}

    def __call__(self, name: str) -> bytes | None:
        key = name.lower().rstrip(".")
        cached = self._cache.get(key)
        if cached is None or time.monotonic() - cached[0] > self.ttl:
            found: bytes | DnsUnavailable | None
            try:
                found = resolve_txt(key, self.timeout)
            except DnsUnavailable as exc:
                found = exc
            cached = self._cache[key] = (time.monotonic(), found)
        found = cached[1]
        if isinstance(found, DnsUnavailable):
            raise found
        return found


def resolve_txt(name: str, timeout: float) -> bytes | None:
    """The first TXT record of `name` (its strings joined), None for NXDOMAIN / no answer."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = timeout
    try:
        answer = resolver.resolve(name + ".", "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except (dns.exception.DNSException, OSError) as exc:
        raise DnsUnavailable(type(exc).__name__) from None
    for record in answer:
        return b"".join(record.strings)
    return None


def resolve_mx(name: str, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    """The MX hosts of `name`, most preferred first; [] when there are none or DNS fails."""
    import dns.exception
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.timeout = resolver.lifetime = timeout
    try:
        answer = resolver.resolve(name.rstrip(".") + ".", "MX")
    except (dns.exception.DNSException, OSError):
        return []
    records = sorted(answer, key=lambda record: int(record.preference))
    return [str(record.exchange).rstrip(".").lower() for record in records]
