"""A naive client: fetch every mail of INBOX whole, one connection, no search.

LOGIN, EXAMINE INBOX, UID SEARCH ALL, then FETCH ``BODY.PEEK[]`` in chunks of 500 UIDs (so that
memory stays bounded); the bytes are counted and dropped. This is what a client that filters on
its own side would pay.

    python benchmarks/fetch_all.py --port 143 --user me --password secret
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from imapclient import IMAPClient

CHUNK = 500


def fetch_all(host: str, port: int, user: str, password: str) -> tuple[int, int]:
    """Returns (mails fetched, bytes fetched)."""
    mails = size = 0
    with IMAPClient(host, port, ssl=False, timeout=600) as client:
        client.login(user, password)
        client.select_folder("INBOX", readonly=True)
        uids = sorted(int(u) for u in client.search(["ALL"]))
        for start in range(0, len(uids), CHUNK):
            for item in client.fetch(uids[start : start + CHUNK], ["BODY.PEEK[]"]).values():
                body = item.get(b"BODY[]")
                if isinstance(body, bytes):
                    mails += 1
                    size += len(body)
        client.logout()
    return mails, size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch every mail of INBOX whole.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=143)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    args = parser.parse_args(argv)
    mails, size = fetch_all(args.host, args.port, args.user, args.password)
    print(json.dumps({"mails": mails, "bytes": size}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
