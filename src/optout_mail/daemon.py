"""`optout-mail run`: a watcher thread per account and folder, scheduled jobs, signals, lifecycle.

The watchers (watcher.py) bring new mail by IDLE and reconnect on their own. APScheduler runs
the reconciliation scan, the daily deadline check and the health check (the ledger's integrity,
live watchers) that feeds the systemd watchdog; a damaged ledger ends `run` with status 1.
SIGTERM/SIGINT stop it all; SIGHUP reloads.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from optout_mail import ledger_file, runstatus, sdnotify, wiring
from optout_mail.config import Settings
from optout_mail.errors import (
    AuthError,
    ConfigError,
    LedgerDamaged,
    LedgerError,
    OptoutError,
    RuleError,
    SourceError,
)
from optout_mail.ledger import Ledger
from optout_mail.pipeline import run_source
from optout_mail.rules import RuleSet
from optout_mail.sources.imap import IDLE_REFRESH, IMAPSource
from optout_mail.watcher import Context, FolderWatcher
from optout_mail.wiring import SendPopup

log = logging.getLogger(__name__)

HEARTBEAT_STALE = 3 * IDLE_REFRESH  # a watcher silent for longer is wedged: stop the pings
HEALTH_INTERVAL = 60.0  # seconds between health checks when systemd asks for no watchdog


class AlreadyRunning(OptoutError):
    """Another `optout-mail run` holds the lock of this data directory."""


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
        self._fatal: LedgerError | None = None

    # -- the main thread ------------------------------------------------------------------

    def run(self) -> None:
        settings, rules = self._load()
        with _single_instance(settings.data_dir):
            # Open (create, migrate, check) the ledger here, before the threads: two threads
            # opening a new ledger at once would both create its tables, and a broken ledger
            # is a start-up error rather than a watcher retrying for ever.
            with wiring.open_ledger(settings, clock=self._clock, notify=False):
                pass
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
        if self._fatal is not None:
            raise self._fatal

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
        interval = sdnotify.watchdog_interval() or HEALTH_INTERVAL
        scheduler.add_job(self._watchdog, "interval", seconds=interval, id="watchdog")
        return scheduler

    def _reconcile(self) -> None:
        if self._context is not None:
            reconcile(self._context)

    def _check_deadlines(self) -> None:
        if self._context is not None:
            check_deadlines(self._context)

    def _watchdog(self) -> None:
        """The health check: the ledger passes its check and every watcher beat lately; only
        then does systemd get its ping. A damaged ledger stops the daemon with status 1."""
        context = self._context
        if context is not None:
            try:
                Ledger(context.settings.ledger_path).close()
            except LedgerDamaged as exc:
                log.error("%s; stopping (%s)", exc.message, exc.hint)
                sdnotify.notify(f"STATUS=stopped: {exc.message}")
                self._fatal = exc
                self._stop.set()
                return
            except LedgerError as exc:
                log.warning("health check: %s", exc.message)
                return
        now = time.monotonic()
        stale = [w.name for w in self._watchers if now - w.heartbeat > HEARTBEAT_STALE]
        if stale:
            log.error("no sign of life from %s; letting the watchdog restart us", ", ".join(stale))
            return
        if sdnotify.watchdog_interval():
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
    ledger_file.secure_dir(data_dir)
    path = data_dir / "run.lock"
    handle: IO[str] = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
    ledger_file.secure_file(path)  # 0600 whatever the umask
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
