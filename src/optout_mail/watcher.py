"""One watcher thread per account and folder: its IMAP session loop and the reconnect back-off.

A watcher catches up, waits for news (IDLE), scans, and repeats; when the session ends it
reconnects with capped exponential back-off and jitter, which starts afresh after a session
that worked. `Context` is what the watchers and the daemon's jobs share.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from optout_mail import runstatus, wiring
from optout_mail.config import Settings
from optout_mail.dkim_dns import TxtLookup
from optout_mail.errors import AuthError, SourceError
from optout_mail.ledger import Ledger
from optout_mail.notify import PopupNotifier
from optout_mail.pipeline import run_source
from optout_mail.rules import RuleSet
from optout_mail.sources.imap import IDLE_REFRESH, IMAPSession, IMAPSource
from optout_mail.wiring import SendPopup

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_CAP = 2.0, 300.0
GOOD_SESSION = 60.0  # a session that lasted this long worked, even if it never scanned
AUTH_RETRY = 30 * 60  # a refused login is retried slowly, not hammered


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before reconnect `attempt` (0-based): doubling, capped, half-jittered."""
    ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * 2.0 ** min(attempt, 30))
    return float(ceiling / 2 + rng() * ceiling / 2)


class Backoff:
    """One watcher's reconnect delays: doubling while attempts fail (an outage), back to the
    first step after a session that worked, so that routine drops (a server restart, a kick,
    a NAT timeout) cost seconds however many there were."""

    def __init__(self, rng: Callable[[], float] = random.random) -> None:
        self.attempt = 0
        self._rng = rng

    def next_delay(self, *, session_worked: bool = False) -> float:
        if session_worked:
            self.attempt = 0
        delay = backoff_delay(self.attempt, self._rng)
        self.attempt += 1
        return delay


def next_attempt(delay: float, now: datetime | None = None) -> str:
    """E.g. "4 s (at 18:02:31)": the wait, and when it ends by the local wall clock."""
    at = (now or datetime.now().astimezone()) + timedelta(seconds=delay)
    return f"{delay:.0f} s (at {at:%H:%M:%S})"


@dataclass
class Context:
    """What every thread of the daemon shares; replaced as a whole on SIGHUP."""

    settings: Settings
    rules: RuleSet
    clock: Callable[[], datetime]
    send_popup: SendPopup | None
    stop: threading.Event
    scan_locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    dkim_dns: TxtLookup = field(default_factory=TxtLookup)  # caches keys across scans

    def lock_for(self, account: str, folder: str) -> threading.Lock:
        return self.scan_locks.setdefault((account, folder), threading.Lock())

    def sources(self) -> list[IMAPSource]:
        return wiring.account_sources(self.settings, self.rules)

    def ledger(self) -> contextlib.AbstractContextManager[tuple[Ledger, PopupNotifier | None]]:
        """A ledger connection (and the notifier writing to it) for the calling thread."""
        return wiring.open_ledger(self.settings, clock=self.clock, send=self.send_popup)


class FolderWatcher(threading.Thread):
    """Watches one folder of one account; scans whenever something may have arrived."""

    def __init__(self, context: Context, source: IMAPSource, folder: str) -> None:
        super().__init__(name=f"watch {source.name}/{folder}", daemon=True)
        self.context = context
        self.source = source
        self.folder = folder
        self.where = f"{source.name}/{folder}"
        self.heartbeat = time.monotonic()
        self.connected = False
        self.worked = False  # this session caught up: a drop now is no outage

    def run(self) -> None:
        backoff = Backoff()
        auth_reported = False
        stop = self.context.stop
        while not stop.is_set():
            started = time.monotonic()
            self.worked = False
            level, failure = logging.WARNING, None
            try:
                self._session()
                continue  # it returns only when asked to stop
            except AuthError as exc:
                if not auth_reported:
                    log.error(
                        "%s; retrying every %d minutes, the next time in %s",
                        exc.message,
                        AUTH_RETRY // 60,
                        next_attempt(AUTH_RETRY),
                    )
                    auth_reported = True
                runstatus.failed(self.where, exc.message)
                stop.wait(AUTH_RETRY)
                continue
            except SourceError as exc:
                problem = exc.message
                runstatus.failed(self.where, exc.message)
            except Exception as exc:
                problem, level, failure = "unexpected error", logging.ERROR, exc
                runstatus.failed(self.where, "unexpected error (see the log)")
            finally:
                self.connected = False
                self.heartbeat = time.monotonic()
            worked = self.worked or time.monotonic() - started > GOOD_SESSION
            if worked and level == logging.WARNING:
                level = logging.INFO  # a drop after a session that worked is routine
            delay = backoff.next_delay(session_worked=worked)
            log.log(
                level,
                "%s: %s; reconnecting in %s",
                self.where,
                problem,
                next_attempt(delay),
                exc_info=failure,
            )
            stop.wait(delay)

    def _session(self) -> None:
        """One session: catch up, then wait for news and scan until a stop. Raises what
        ended it (ConnectionLost when the connection dropped or stalled)."""
        stop = self.context.stop
        where = self.where
        with self.source.session() as session:
            self.connected = True
            log.info("%s: connected, catching up", where)
            self._scan(session)
            self.worked = True
            if not session.can_idle:
                log.warning(
                    "%s: the server cannot IDLE; relying on the scan every %d s",
                    self.source.name,
                    self.context.settings.poll_interval,
                )
            log.info("%s: up to date, waiting for new mail", where)
            while not stop.is_set():
                if session.can_idle:
                    news = session.wait_for_news(
                        self.folder, stop, IDLE_REFRESH, on_slice=self._beat
                    )
                    if news:
                        log.debug("%s: new mail announced", where)
                else:
                    stop.wait(self.context.settings.poll_interval)
                if stop.is_set():
                    break
                self._scan(session)

    def _scan(self, session: IMAPSession) -> None:
        context = self.context
        with (
            context.lock_for(self.source.name, self.folder),
            context.ledger() as (ledger, notifier),
        ):
            run_source(
                session.folder_source(self.folder),
                rules=context.rules,
                ledger=ledger,
                clock=context.clock,
                notifier=notifier,
                dkim_dns=context.dkim_dns,
            )
        self._beat()
        runstatus.scanned(self.where)

    def _beat(self) -> None:
        self.heartbeat = time.monotonic()
