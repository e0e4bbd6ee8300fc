"""`optout-mail run`: a watcher thread per account and folder, scheduled jobs, signals, lifecycle.

Each watcher has its own IMAP session (sources.imap): catch up, wait for news (IDLE), scan,
repeat; reconnect with capped exponential back-off and jitter. APScheduler runs the
reconciliation scan, the daily deadline check and the systemd watchdog. SIGTERM/SIGINT stop
it all; SIGHUP reloads.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from optout_mail import runstatus, sdnotify, wiring
from optout_mail.config import Settings
from optout_mail.dkim_dns import TxtLookup
from optout_mail.errors import (
    AuthError,
    ConfigError,
    ConnectionLost,
    OptoutError,
    RuleError,
    SourceError,
)
from optout_mail.ledger import Ledger
from optout_mail.notify import PopupNotifier
from optout_mail.pipeline import run_source
from optout_mail.rules import RuleSet
from optout_mail.sources.imap import IDLE_REFRESH, IMAPSession, IMAPSource
from optout_mail.wiring import SendPopup

log = logging.getLogger(__name__)

BACKOFF_FIRST, BACKOFF_CAP = 2.0, 300.0
AUTH_RETRY = 30 * 60  # a refused login is retried slowly, not hammered
HEARTBEAT_STALE = 3 * IDLE_REFRESH  # a watcher silent for longer is wedged: stop the pings


class AlreadyRunning(OptoutError):
    """Another `optout-mail run` holds the lock of this data directory."""


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before reconnect `attempt` (0-based): doubling, capped, half-jittered."""
    ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * 2.0 ** min(attempt, 30))
    return float(ceiling / 2 + rng() * ceiling / 2)


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


def reconcile(context: Context) -> None:
    """The scheduled safety net: scan every account and folder on a short-lived session, each
    folder under its watcher's lock, for servers without IDLE and anything IDLE missed."""
    for source in context.sources():
        locked = source.locked(functools.partial(context.lock_for, source.name))
        try:
            with context.ledger() as (ledger, notifier):
                run_source(
                    locked,
                    rules=context.rules,
                    ledger=ledger,
                    clock=context.clock,
                    notifier=notifier,
                    dkim_dns=context.dkim_dns,
                )
            runstatus.scanned(source.name)
        except AuthError as exc:
            log.error("reconciliation scan: %s", exc.message)
            runstatus.failed(source.name, exc.message)
        except SourceError as exc:
            log.warning("reconciliation scan: %s", exc.message)
            runstatus.failed(source.name, exc.message)


def check_deadlines(context: Context) -> None:
    """The daily job: pop up each overdue request once."""
    if not context.settings.notifications.enabled:
        return
    with context.ledger() as (ledger, notifier):
        if notifier is not None:
            shown = notifier.remind_overdue(ledger.requests(now=context.clock()))
            if shown:
                log.info("%d overdue request(s) reported", shown)


class FolderWatcher(threading.Thread):
    """Watches one folder of one account; scans whenever something may have arrived."""

    def __init__(self, context: Context, source: IMAPSource, folder: str) -> None:
        super().__init__(name=f"watch {source.name}/{folder}", daemon=True)
        self.context = context
        self.source = source
        self.folder = folder
        self.heartbeat = time.monotonic()
        self.connected = False

    def run(self) -> None:
        attempt = 0
        auth_reported = False
        stop = self.context.stop
        where = f"{self.source.name}/{self.folder}"
        while not stop.is_set():
            try:
                dropped = self._session()
            except AuthError as exc:
                if not auth_reported:
                    log.error("%s; retrying every %d minutes", exc.message, AUTH_RETRY // 60)
                    auth_reported = True
                runstatus.failed(where, exc.message)
                stop.wait(AUTH_RETRY)
            except SourceError as exc:
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("%s: %s; reconnecting in %.0f s", where, exc.message, delay)
                runstatus.failed(where, exc.message)
                stop.wait(delay)
            except Exception:
                delay = backoff_delay(attempt)
                attempt += 1
                log.exception("%s: unexpected error; reconnecting in %.0f s", where, delay)
                runstatus.failed(where, "unexpected error (see the log)")
                stop.wait(delay)
            else:
                if dropped is None:
                    attempt = 0
                else:
                    delay = backoff_delay(attempt) if attempt else 0.5
                    attempt += 1
                    log.info("%s: %s; reconnecting", where, dropped.message)
                    stop.wait(delay)
            finally:
                self.connected = False
                self.heartbeat = time.monotonic()

    def _session(self) -> ConnectionLost | None:
        """One session: catch up, then wait for news and scan until a stop (None) or until
        the connection drops while waiting (returned: reconnect at once)."""
        stop = self.context.stop
        with self.source.session() as session:
            self.connected = True
            log.info("%s/%s: connected, catching up", self.source.name, self.folder)
            self._scan(session)
            if not session.can_idle:
                log.warning(
                    "%s: the server cannot IDLE; relying on the scan every %d s",
                    self.source.name,
                    self.context.settings.poll_interval,
                )
            while not stop.is_set():
                if session.can_idle:
                    try:
                        news = session.wait_for_news(
                            self.folder, stop, IDLE_REFRESH, on_slice=self._beat
                        )
                    except ConnectionLost as exc:
                        return exc
                    if news:
                        log.info("%s/%s: new mail announced", self.source.name, self.folder)
                else:
                    stop.wait(self.context.settings.poll_interval)
                if stop.is_set():
                    break
                self._scan(session)
        return None

    def _scan(self, session: IMAPSession) -> None:
        context = self.context
        with (
            context.lock_for(self.source.name, self.folder),
            context.ledger() as (ledger, notifier),
        ):
            summary = run_source(
                session.folder_source(self.folder),
                rules=context.rules,
                ledger=ledger,
                clock=context.clock,
                notifier=notifier,
                dkim_dns=context.dkim_dns,
            )
        self._beat()
        runstatus.scanned(f"{self.source.name}/{self.folder}")
        if summary.changes:
            log.info(
                "%s/%s: %d new mail(s) from Meta recorded",
                self.source.name,
                self.folder,
                len(summary.changes),
            )

    def _beat(self) -> None:
        self.heartbeat = time.monotonic()


class Daemon:
    """The whole `run` command: lock, watchers, jobs, signals."""

    def __init__(
        self,
        load: Callable[[], tuple[Settings, RuleSet]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        send_popup: SendPopup | None = None,
    ) -> None:
        self._load = load
        self._clock = clock
        self._send_popup = send_popup
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._watchers: list[FolderWatcher] = []
        self._context: Context | None = None

    # -- the main thread ------------------------------------------------------------------

    def run(self) -> None:
        settings, rules = self._load()
        with _single_instance(settings.data_dir):
            self._install_signal_handlers()
            scheduler = self._scheduler(settings)
            try:
                self._start(settings, rules)
                scheduler.start()
                sdnotify.notify("READY=1", f"STATUS={self._status()}")
                log.info("optout-mail is running: %s", self._status())
                runstatus.started(
                    settings.data_dir, [f"{w.source.name}/{w.folder}" for w in self._watchers]
                )
                while not self._stop.is_set():
                    if self._reload.wait(timeout=1.0):
                        self._reload.clear()
                        self._reload_config()
            finally:
                sdnotify.notify("STOPPING=1")
                log.info("stopping")
                self._stop.set()
                self._stop_watchers(grace=4.0)
                scheduler.shutdown(wait=True)
                log.info("stopped")
                runstatus.stopped()

    def stop(self) -> None:
        self._stop.set()

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # tests drive the daemon from a thread; they call stop() instead

        def on_stop(signum: int, frame: FrameType | None) -> None:
            self._stop.set()

        def on_reload(signum: int, frame: FrameType | None) -> None:
            self._reload.set()

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_reload)

    def _start(self, settings: Settings, rules: RuleSet) -> None:
        self._context = context = Context(
            settings=settings,
            rules=rules,
            clock=self._clock,
            send_popup=self._send_popup,
            stop=threading.Event(),
        )
        self._watchers = []
        for source in context.sources():
            for folder in _folders(source):
                watcher = FolderWatcher(context, source, folder)
                self._watchers.append(watcher)
                watcher.start()
        if not self._watchers:
            log.warning("no account is configured: only the deadline check runs")

    def _stop_watchers(self, grace: float = 10.0) -> None:
        """Ask every watcher to stop and give them `grace` seconds in all. A watcher stuck on
        a dead socket is a daemon thread: it cannot hold up the exit."""
        if self._context is not None:
            self._context.stop.set()
        deadline = time.monotonic() + grace
        for watcher in self._watchers:
            watcher.join(timeout=max(0.0, deadline - time.monotonic()))

    def _reload_config(self) -> None:
        log.info("SIGHUP: reloading the configuration and the rules")
        sdnotify.notify("RELOADING=1")
        try:
            settings, rules = self._load()
        except (ConfigError, RuleError) as exc:
            log.error(
                "reload failed, keeping the running configuration: %s; %s",
                exc.message,
                "; ".join(exc.problems),
            )
        else:
            self._stop_watchers()
            self._start(settings, rules)
        sdnotify.notify("READY=1", f"STATUS={self._status()}")

    def _status(self) -> str:
        return f"watching {len(self._watchers)} folder(s)"

    # -- scheduled jobs ---------------------------------------------------------------------

    def _scheduler(self, settings: Settings) -> Any:
        from apscheduler.schedulers.background import BackgroundScheduler

        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        scheduler = BackgroundScheduler(
            timezone=UTC,
            # misfire_grace_time=None: a job due while the laptop slept runs on resume, once.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        scheduler.add_job(
            self._reconcile,
            "interval",
            seconds=settings.poll_interval,
            id="reconcile",
            jitter=min(60, settings.poll_interval // 10),
        )
        scheduler.add_job(
            self._check_deadlines,
            "interval",
            hours=24,
            id="deadlines",
            next_run_time=datetime.now(UTC),
        )
        interval = sdnotify.watchdog_interval()
        if interval:
            scheduler.add_job(self._watchdog, "interval", seconds=interval, id="watchdog")
        return scheduler

    def _reconcile(self) -> None:
        if self._context is not None:
            reconcile(self._context)

    def _check_deadlines(self) -> None:
        if self._context is not None:
            check_deadlines(self._context)

    def _watchdog(self) -> None:
        now = time.monotonic()
        stale = [w.name for w in self._watchers if now - w.heartbeat > HEARTBEAT_STALE]
        if stale:
            log.error("no sign of life from %s; letting the watchdog restart us", ", ".join(stale))
            return
        sdnotify.notify("WATCHDOG=1", f"STATUS={self._status()}")


def _folders(source: IMAPSource) -> list[str]:
    """The folders to watch: the configured ones, else INBOX and the server's Junk folder."""
    if source.account.folders:
        return list(source.account.folders)
    try:
        with source.session() as session:
            return session.folders()
    except SourceError as exc:
        log.warning(
            "%s; watching INBOX until the server can be asked for its Junk folder", exc.message
        )
        return ["INBOX"]


@contextlib.contextmanager
def _single_instance(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on data_dir/run.lock for as long as the daemon runs."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "run.lock"
    handle: IO[str] = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "another process"
            raise AlreadyRunning(
                f"optout-mail run is already running for {data_dir} (pid {other})",
                hint="stop it first (systemctl --user stop optout-mail); `scan` and `requests` "
                "work beside it",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
