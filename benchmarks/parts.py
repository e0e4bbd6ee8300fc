"""What the scan's downloads cost on their own, next to the floor's, in one process.

On a private Dovecot holding a cached benchmark mailbox: the floor's FETCH of every matched mail
whole, FETCH of sizes and structures alone (IMAP BODY, as the scan asks), and the scan's
`MailFetcher.plan` (structures, then header and text parts of the large multipart mails: the
stand-ins). Alternating, in one connection, so that only the IMAP work and imapclient's parsing
are timed -- no start-up, no triage.

    python benchmarks/parts.py --size 20k --variant heavy --reps 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import mailboxes  # noqa: E402
from benchmarks.floor import (  # noqa: E402
    BODY_ITEM,
    DEFAULT_SINCE,
    FETCH_CHUNK,
    criteria,
    floor_search,
    search_terms,
)
from benchmarks.suite import PASSWORD, BenchDovecot  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="20k")
    parser.add_argument("--variant", default="heavy")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    from imapclient import IMAPClient

    from optout_mail.sources.imap_fetch import MailFetcher

    spec = mailboxes.Spec(mailboxes.parse_size(args.size), args.variant)
    terms = search_terms()
    with BenchDovecot() as server:
        user = "parts"

        def warm() -> None:
            floor_search(server.host, server.port, user, PASSWORD, terms)

        mailboxes.ensure(spec, server, user, PASSWORD, warm=warm, log=lambda _t: None)
        client = IMAPClient(server.host, server.port, ssl=False)
        client.login(user, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(criteria(terms, DEFAULT_SINCE)))
        chunks = [uids[i : i + FETCH_CHUNK] for i in range(0, len(uids), FETCH_CHUNK)]
        fetcher = MailFetcher(client, "bench", triage=lambda _mail: False)
        stand_ins = 0

        def plan() -> None:
            nonlocal stand_ins
            stand_ins = sum(len(fetcher.plan("INBOX", 1, c).stand_ins) for c in chunks)

        clients: dict[str, Callable[[], object]] = {
            "floor: every matched mail whole": lambda: [
                client.fetch(c, [BODY_ITEM]) for c in chunks
            ],
            "sizes and structures (BODY)": lambda: [
                client.fetch(c, ["RFC822.SIZE", "BODY"]) for c in chunks
            ],
            "scan's plan: structures + stand-ins": plan,
        }
        times: dict[str, list[float]] = {name: [] for name in clients}
        for rep in range(args.reps):
            names = list(clients)
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                t0 = time.perf_counter()
                clients[name]()
                times[name].append(time.perf_counter() - t0)
        client.logout()
    floor = statistics.median(times["floor: every matched mail whole"])
    print(f"{spec.label}: {len(uids)} matched mails, {stand_ins} stand-ins")
    print("| download | median s | ratio to the floor |\n|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / floor:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
