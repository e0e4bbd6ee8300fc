"""The protocol floor of a first scan: what any client must do to read Meta's mails over IMAP.

One connection (imapclient), LOGIN, EXAMINE INBOX, the same server-side SEARCH the scan sends
(UID range, an OR-chain of FROM terms: the rule packs' sender domains and lookalike words,
SINCE the scan's default date), then FETCH of every matched mail whole, in chunks of the
scan's size. Nothing is parsed, classified or stored. (The scan itself fetches less: sizes and
structures, then stand-ins of large mails; see `parts.py`.)

    python benchmarks/floor.py --port 143 --user me --password secret

Without ``--terms`` the terms come from ``optout_mail.rules`` (which costs the rule loading);
the suite passes them on the command line so that this process does IMAP work only. Prints one
JSON line: mails fetched and bytes.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from imapclient import IMAPClient

# The scan's chunk size and whole-mail item (optout_mail.sources.imap and imap_fetch; not
# imported: they pull in the configuration layer).
FETCH_CHUNK = 50
BODY_ITEM = "BODY.PEEK[]<0.1048576>"
# optout_mail.config.DEFAULT_SINCE: a first scan looks back to this date.
DEFAULT_SINCE = date(2024, 5, 1)


def search_terms() -> list[str]:
    """The scan's FROM terms: sender domains and lookalike words of the bundled rule packs."""
    from optout_mail.rules import load_rule_set

    rules = load_rule_set()
    return sorted(set(rules.sender_domains()) | set(rules.lookalike_words()))


def criteria(terms: Sequence[str], since: date | None, last_uid: int = 0) -> list[Any]:
    """UID n:* OR FROM a OR FROM b FROM c ... [SINCE d], as the scan builds it."""
    out: list[Any] = ["UID", f"{last_uid + 1}:*"]
    for i, term in enumerate(terms):
        if i < len(terms) - 1:
            out.append("OR")
        out += ["FROM", term]
    if since is not None:
        out += ["SINCE", since]
    return out


def floor_search(
    host: str, port: int, user: str, password: str, terms: Sequence[str] | None = None
) -> list[int]:
    """Only the SEARCH (used to warm Dovecot's header cache); returns the matched UIDs."""
    with IMAPClient(host, port, ssl=False, timeout=600) as client:
        client.login(user, password)
        client.select_folder("INBOX", readonly=True)
        uids = client.search(criteria(terms or search_terms(), DEFAULT_SINCE))
        client.logout()
    return sorted(int(u) for u in uids)


def floor(
    host: str, port: int, user: str, password: str, terms: Sequence[str], since: date | None
) -> tuple[int, int]:
    """The whole floor; returns (mails fetched, bytes fetched)."""
    mails = size = 0
    with IMAPClient(host, port, ssl=False, timeout=600) as client:
        client.login(user, password)
        client.select_folder("INBOX", readonly=True)
        uids = sorted(int(u) for u in client.search(criteria(terms, since)))
        for start in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[start : start + FETCH_CHUNK]
            for item in client.fetch(chunk, [BODY_ITEM]).values():
                for key, value in item.items():
                    if isinstance(key, bytes) and key.startswith(b"BODY[]"):
                        mails += 1
                        size += len(value)
        client.logout()
    return mails, size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The protocol floor of a first scan.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=143)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--terms", help="comma-separated FROM terms (default: the rule packs')")
    parser.add_argument("--since", type=date.fromisoformat, default=DEFAULT_SINCE)
    args = parser.parse_args(argv)
    terms = args.terms.split(",") if args.terms else search_terms()
    mails, size = floor(args.host, args.port, args.user, args.password, terms, args.since)
    print(json.dumps({"mails": mails, "bytes": size}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
