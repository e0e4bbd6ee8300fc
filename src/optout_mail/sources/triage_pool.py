"""The triage on every core: forked worker processes judge the stand-ins of earlier chunks while
this process downloads the next ones (the download takes a fraction of a core). Used for large
first scans only; verdicts come back in order, so mails reach the ledger as without it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType

from optout_mail.model import RawMail
from optout_mail.sources.imap_fetch import Triage

log = logging.getLogger(__name__)

# Below this many candidate mails a worker process costs more than it saves.
PARALLEL_MIN = 400

# The worker inherits this by fork: the triage closes over the loaded rules, which would be
# costly to pickle and are already in memory.
_inherited: Triage | None = None


def _judge(mails: Sequence[RawMail]) -> list[bool]:
    if _inherited is None:  # pragma: no cover - set before the fork, by construction
        raise RuntimeError("no triage in the worker")
    return [_inherited(mail) for mail in mails]


def usable(candidates: int) -> int:
    """How many worker processes pay for `candidates` mails on this machine: one per core
    (this process mostly waits for the server and the workers), 0 for none."""
    if candidates < PARALLEL_MIN or "fork" not in multiprocessing.get_all_start_methods():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return min(cores, 4) if cores >= 2 else 0


@dataclass(frozen=True)
class Pending:
    """Stand-ins handed to the worker (`future` None: to be judged here)."""

    mails: list[RawMail]
    future: Future[list[bool]] | None


class TriagePool:
    """`workers` processes running `triage` (none: every chunk is judged in this process);
    `judge` falls back to this process when the workers are gone (killed, out of memory), so
    a scan never fails for it."""

    def __init__(self, triage: Triage | None, workers: int) -> None:
        global _inherited
        _inherited = triage
        self._triage = triage
        self._pool: ProcessPoolExecutor | None = None
        if workers and triage is not None:
            context = multiprocessing.get_context("fork")
            self._pool = ProcessPoolExecutor(workers, mp_context=context)

    def submit(self, mails: Sequence[RawMail]) -> Pending:
        """Start judging `mails` in the worker; `judge` gives the verdicts."""
        future = None
        if self._pool is not None and mails:
            try:
                future = self._pool.submit(_judge, list(mails))
            except (BrokenProcessPool, RuntimeError) as exc:
                self._give_up(exc)
        return Pending(list(mails), future)

    def judge(self, pending: Pending) -> list[bool]:
        """The verdicts, in order: the worker's, or this process's when the worker died."""
        if pending.future is not None:
            try:
                return pending.future.result()
            except BrokenProcessPool as exc:
                self._give_up(exc)
        if self._triage is None:  # no triage: every mail is read whole
            return [True] * len(pending.mails)
        return [self._triage(mail) for mail in pending.mails]

    def _give_up(self, exc: BaseException) -> None:
        log.warning("the triage worker stopped (%s); going on in one process", exc)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        global _inherited
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        _inherited = None

    def __enter__(self) -> TriagePool:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
