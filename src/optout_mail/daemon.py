"""`optout-mail run`: IDLE watchers per account and folder, scheduled jobs, signals, lifecycle.

Each watched folder has its own thread and IMAP connection (imapclient is not thread-safe):
catch up by UID, IDLE until something arrives or ten minutes pass, scan, repeat; reconnect
with capped exponential back-off and jitter. APScheduler runs the reconciliation scan, the
daily deadline check and the systemd watchdog. SIGTERM/SIGINT stop it all; SIGHUP reloads.
"""

from __future__ import annotations

import contextlib
import fcntl
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

from optout_mail import sdnotify
from optout_mail.config import Account, Settings
from optout_mail.dkim_dns import TxtLookup
from optout_mail.errors import AuthError, ConfigError, OptoutError, RuleError, SourceError
from optout_mail.ledger import Ledger
from optout_mail.model import Batch, Cursor
from optout_mail.notify import PopupNotifier
from optout_mail.pipeline import Notifier, account_trust, run_source
from optout_mail.rules import RuleSet
from optout_mail.sources.imap import IMAPSource

log = logging.getLogger(__name__)

IDLE_REFRESH = 9 * 60  # RFC 2177 asks for < 29 min; NAT boxes drop idle TCP far sooner
IDLE_SLICE = 1.0  # idle_check() timeout: how fast a stop request is noticed
BACKOFF_FIRST, BACKOFF_CAP = 2.0, 300.0
AUTH_RETRY = 30 * 60  # a refused login is retried slowly, not hammered
CLOCK_JUMP = 60.0  # wall clock moved this much more than the monotonic one: we were asleep
HEARTBEAT_STALE = 3 * IDLE_REFRESH  # a watcher silent for longer is wedged: stop the pings


class AlreadyRunning(OptoutError):
    """Another `optout-mail run` holds the lock of this data directory."""


class Disconnected(Exception):
    """The IDLE connection is gone (BYE, EOF, or a silent socket); reconnect."""


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
    send_popup: Callable[[Any], bool] | None
    stop: threading.Event
    scan_locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    dkim_dns: TxtLookup = field(default_factory=TxtLookup)

    def lock_for(self, account: str, folder: str) -> threading.Lock:
        return self.scan_locks.setdefault((account, folder), threading.Lock())

    def source(self, name: str, account: Account) -> IMAPSource:
        return IMAPSource(name, account, sender_domains=self.rules.sender_domains(),
                          search_words=self.rules.lookalike_words())

    @contextlib.contextmanager
    def ledger(self) -> Iterator[tuple[Ledger, Notifier | None]]:
        """A ledger connection (and the notifier writing to it) for the calling thread."""
        with Ledger(self.settings.ledger_path) as ledger:
            notifier = None
            if self.settings.notifications.enabled:
                notifier = PopupNotifier(ledger, show_codes=self.settings.notifications.show_codes,
                                         clock=self.clock, send=self.send_popup)
            yield ledger, notifier


@dataclass
class _AccountView:
    """An account's IMAPSource seen through a narrower door (see the subclasses)."""

    imap: IMAPSource

    @property
    def name(self) -> str:
        return self.imap.name

    @property
    def address(self) -> str | None:
        return self.imap.address


@dataclass
class _FolderSource(_AccountView):
    """One folder on an open connection, as a pipeline source."""

    client: Any
    folder: str

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
        return self.imap.folder_batches(self.client, self.folder, cursor_for(self.folder))


class FolderWatcher(threading.Thread):
    """Watches one folder of one account with IDLE; scans whenever something may have arrived."""

    def __init__(self, context: Context, name: str, account: Account, folder: str) -> None:
        super().__init__(name=f"watch {name}/{folder}", daemon=True)
        self.context = context
        self.account_name = name
        self.account = account
        self.folder = folder
        self.heartbeat = time.monotonic()
        self.connected = False

    def run(self) -> None:
        attempt = 0
        auth_reported = False
        stop = self.context.stop
        while not stop.is_set():
            try:
                self._session()
                attempt = 0
            except AuthError as exc:
                if not auth_reported:
                    log.error("%s; retrying every %d minutes", exc.message, AUTH_RETRY // 60)
                    auth_reported = True
                stop.wait(AUTH_RETRY)
            except SourceError as exc:
                delay = backoff_delay(attempt)
                attempt += 1
                log.warning("%s/%s: %s; reconnecting in %.0f s", self.account_name,
                            self.folder, exc.message, delay)
                stop.wait(delay)
            except Disconnected as exc:
                delay = backoff_delay(attempt) if attempt else 0.5
                attempt += 1
                log.info("%s/%s: %s; reconnecting", self.account_name, self.folder, exc)
                stop.wait(delay)
            except Exception:
                delay = backoff_delay(attempt)
                attempt += 1
                log.exception("%s/%s: unexpected error; reconnecting in %.0f s",
                              self.account_name, self.folder, delay)
                stop.wait(delay)
            finally:
                self.connected = False
                self.heartbeat = time.monotonic()

    def _session(self) -> None:
        """One connection: catch up, then IDLE and scan until a stop, a refresh or trouble."""
        imap = self.context.source(self.account_name, self.account)
        with imap.session() as client:
            self.connected = True
            log.info("%s/%s: connected, catching up", self.account_name, self.folder)
            self._scan(imap, client)
            idle = "IDLE" in {c.decode() if isinstance(c, bytes) else c
                              for c in client.capabilities()}
            if not idle:
                log.warning("%s: the server cannot IDLE; relying on the scan every %d s",
                            self.account_name, self.context.settings.poll_interval)
            while not self.context.stop.is_set():
                if idle:
                    self._idle(client)
                else:
                    self.context.stop.wait(self.context.settings.poll_interval)
                if self.context.stop.is_set():
                    break
                self._scan(imap, client)

    def _scan(self, imap: IMAPSource, client: Any) -> None:
        with self.context.lock_for(self.account_name, self.folder), \
                self.context.ledger() as (ledger, notifier):
            summary = run_source(_FolderSource(imap, client, self.folder),
                                 rules=self.context.rules, ledger=ledger,
                                 clock=self.context.clock, notifier=notifier,
                                 trust=account_trust(self.account),
                                 dkim_dns=self.context.dkim_dns)
        self.heartbeat = time.monotonic()
        if summary.changes:
            log.info("%s/%s: %d new mail(s) from Meta recorded", self.account_name, self.folder,
                     len(summary.changes))

    def _idle(self, client: Any) -> None:
        """IDLE until the server reports news, the refresh is due, or we are asked to stop."""
        from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

        client.select_folder(self.folder, readonly=True)
        client.idle()
        started = time.monotonic()
        offset = time.time() - started
        quick_empty = 0
        news = False
        try:
            while not self.context.stop.is_set():
                before = time.monotonic()
                responses = client.idle_check(timeout=IDLE_SLICE)
                self.heartbeat = time.monotonic()
                if any(r[1:2] == (b"BYE",) or r[:1] == (b"BYE",) for r in responses
                       if isinstance(r, tuple)):
                    raise Disconnected("the server closed the connection (BYE)")
                # imapclient swallows EOF: a closed socket makes idle_check return [] at once.
                quick_empty = quick_empty + 1 if not responses and (
                    time.monotonic() - before < IDLE_SLICE / 4) else 0
                if quick_empty >= 3:
                    raise Disconnected("the connection was closed")
                if any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT")
                       for r in responses):
                    news = True
                    break
                if abs((time.time() - time.monotonic()) - offset) > CLOCK_JUMP:
                    raise Disconnected("the clock jumped (resumed from suspend?)")
                if time.monotonic() - started > IDLE_REFRESH:
                    break
        except (IMAPClientAbortError, OSError) as exc:
            raise Disconnected(f"connection lost ({exc})") from None
        try:
            client.idle_done()
        except (IMAPClientError, OSError) as exc:
            # A silent dead peer (NAT timeout, Wi-Fi change) shows up only here, as a timeout.
            raise Disconnected(f"connection lost while ending IDLE ({exc})") from None
        if news:
            log.info("%s/%s: new mail announced", self.account_name, self.folder)


class Daemon:
    """The whole `run` command: lock, watchers, jobs, signals."""

    def __init__(
        self,
        load: Callable[[], tuple[Settings, RuleSet]],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        send_popup: Callable[[Any], bool] | None = None,
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
        self._context = Context(settings=settings, rules=rules, clock=self._clock,
                                send_popup=self._send_popup, stop=threading.Event())
        self._watchers = []
        for name, account in sorted(settings.accounts.items()):
            for folder in self._folders(name, account):
                watcher = FolderWatcher(self._context, name, account, folder)
                self._watchers.append(watcher)
                watcher.start()
        if not self._watchers:
            log.warning("no account is configured: only the deadline check runs")

    def _folders(self, name: str, account: Account) -> list[str]:
        if account.folders:
            return list(account.folders)
        assert self._context is not None
        source = self._context.source(name, account)
        try:
            with source.session() as client:
                return source.folders(client)
        except SourceError as exc:
            log.warning("%s; watching INBOX until the server can be asked for its Junk folder",
                        exc.message)
            return ["INBOX"]

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
            log.error("reload failed, keeping the running configuration: %s; %s",
                      exc.message, "; ".join(exc.problems))
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
        scheduler.add_job(self._reconcile, "interval", seconds=settings.poll_interval,
                          id="reconcile", jitter=min(60, settings.poll_interval // 10))
        scheduler.add_job(self._check_deadlines, "interval", hours=24, id="deadlines",
                          next_run_time=datetime.now(UTC))
        interval = sdnotify.watchdog_interval()
        if interval:
            scheduler.add_job(self._watchdog, "interval", seconds=interval, id="watchdog")
        return scheduler

    def _reconcile(self) -> None:
        """Scan every account and folder on a short-lived connection: the safety net for
        servers without IDLE and for anything an IDLE connection missed."""
        context = self._context
        if context is None:
            return
        for name, account in sorted(context.settings.accounts.items()):
            source = context.source(name, account)
            try:
                with context.ledger() as (ledger, notifier):
                    run_source(_Locked(source, context), rules=context.rules, ledger=ledger,
                               clock=context.clock, notifier=notifier,
                               trust=account_trust(account), dkim_dns=context.dkim_dns)
            except AuthError as exc:
                log.error("reconciliation scan: %s", exc.message)
            except SourceError as exc:
                log.warning("reconciliation scan: %s", exc.message)

    def _check_deadlines(self) -> None:
        context = self._context
        if context is None or not context.settings.notifications.enabled:
            return
        with context.ledger() as (ledger, notifier):
            if isinstance(notifier, PopupNotifier):
                shown = notifier.remind_overdue(ledger.requests(now=context.clock()))
                if shown:
                    log.info("%d overdue request(s) reported", shown)

    def _watchdog(self) -> None:
        now = time.monotonic()
        stale = [w.name for w in self._watchers if now - w.heartbeat > HEARTBEAT_STALE]
        if stale:
            log.error("no sign of life from %s; letting the watchdog restart us", ", ".join(stale))
            return
        sdnotify.notify("WATCHDOG=1", f"STATUS={self._status()}")


@dataclass
class _Locked(_AccountView):
    """A source whose folder scans take the same per-folder lock as the IDLE watchers."""

    context: Context

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
        with self.imap.session() as client:
            for folder in self.imap.folders(client):
                with self.context.lock_for(self.imap.name, folder):
                    yield from self.imap.folder_batches(client, folder, cursor_for(folder))


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
