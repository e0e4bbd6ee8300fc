"""IMAP accounts (imapclient), strictly read-only: EXAMINE and BODY.PEEK, never a flag changed.

Owns the session the rest of the program sees: an account's folders, the incremental scan of a
folder by UIDVALIDITY + last UID, waiting for news with IDLE, and the pipeline sources built on
them. Connecting is in `imap_connect`; no module outside these two touches an imapclient object.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optout_mail.config import Account
from optout_mail.errors import ConnectionLost, SourceError
from optout_mail.model import Batch, Cursor, RawMail
from optout_mail.rules import Trust
from optout_mail.sources import triage_pool
from optout_mail.sources.credentials import secret_for
from optout_mail.sources.imap_connect import clean, connect, logout, shutdown, stall_timeout
from optout_mail.sources.imap_fetch import MailFetcher, Planned, Triage
from optout_mail.sources.imap_folders import LockedAccount, SessionFolder

if TYPE_CHECKING:
    from imapclient import IMAPClient

log = logging.getLogger(__name__)

FETCH_CHUNK = 50  # UIDs per FETCH: keeps command lines short and batches small
IDLE_REFRESH = 9 * 60  # RFC 2177 asks for < 29 min; NAT boxes drop idle TCP far sooner
IDLE_CHECK = 30.0  # leave and re-enter IDLE this often: a stalled server is noticed
STALL_TIMEOUT = 10.0  # DONE and IDLE must be answered this fast (or the account's timeout)
IDLE_SLICE = 1.0  # idle_check() timeout: how fast a stop request is noticed
CLOCK_JUMP = 60.0  # wall clock moved this much more than the monotonic one: we were asleep

FolderLock = Callable[[str], AbstractContextManager[object]]


@dataclass
class IMAPSource:
    """One configured account. `batches` opens a connection, scans, and logs out."""

    name: str
    account: Account
    sender_domains: Sequence[str]
    search_words: Sequence[str] = ()  # lookalike words: extra FROM terms for the SEARCH
    problems: list[str] = field(default_factory=list)
    secret: Callable[[], str] | None = None  # password or token; default: credentials
    # the FROM terms, asked for only when a SEARCH is sent (a rescan with nothing new
    # then never loads the rule packs); default: sender_domains and search_words
    search_terms: Callable[[], Sequence[str]] | None = None
    # says which mails no rule can match, from their header and text parts alone: those are
    # never downloaded whole (see imap_fetch); None: every candidate is fetched whole
    triage: Triage | None = None
    # a large first scan may judge on a second core (a forked process): only where this
    # process runs no other thread (`scan`, not the daemon)
    parallel: bool = False

    @property
    def address(self) -> str | None:
        return self.account.address.lower() if self.account.address else None

    @property
    def trust(self) -> Trust:
        """The account's configured authserv-ids, and its IMAP host as the provider hint."""
        return Trust(tuple(self.account.trusted_authserv_ids), provider=self.account.host)

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
        return self.scan_folders(cursor_for)

    def scan_folders(
        self, cursor_for: Callable[[str], Cursor | None], lock_for: FolderLock | None = None
    ) -> Iterator[Batch]:
        """Every folder on one fresh session, each under `lock_for(folder)` when given. A folder
        that cannot be opened is noted in `problems` and the others are still scanned; the
        SourceError naming the missing ones comes at the end."""
        with self.session() as session:
            folders = session.folders()
            missing = []
            for folder in folders:
                try:
                    with lock_for(folder) if lock_for else nullcontext():
                        yield from session.folder_batches(folder, cursor_for(folder))
                except FolderMissing as exc:
                    missing.append(str(exc))
                    self.problems.append(str(exc))
        if missing and len(missing) == len(folders):
            raise SourceError(missing[0], hint="check `folders` of the account in the config")
        if missing:
            raise SourceError(
                f"account {self.name}: " + "; ".join(missing),
                hint="the other folders were scanned; check `folders` of the account",
            )

    def locked(self, lock_for: FolderLock) -> LockedAccount:
        """This account as a pipeline source whose scan of each folder holds `lock_for(folder)`."""
        return LockedAccount(self, lock_for)

    # -- connection -------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[IMAPSession]:
        """A logged-in connection, logged out on exit. Raises AuthError, ConnectionLost or
        SourceError. One session belongs to one thread (imapclient is not thread-safe)."""
        client = connect(self.name, self.account, self._secret)
        lost = False
        try:
            yield IMAPSession(self, client)
        except ConnectionLost:
            lost = True
            raise
        finally:
            if lost:
                shutdown(client)  # a stalled server would keep LOGOUT waiting for its timeout
            else:
                logout(client, self.account.host)

    def _secret(self) -> str:
        """Asked anew at every connect: an access token may have expired since the last one."""
        return self.secret() if self.secret else secret_for(self.name, self.account)


class IMAPSession:
    """One logged-in connection of an account: its folders, their scan, and IDLE on one."""

    def __init__(self, source: IMAPSource, client: IMAPClient) -> None:
        self.source = source
        self._client = client
        self._fetcher = MailFetcher(client, source.name, source.triage)
        self._can_idle: bool | None = None
        # UIDNEXT of each folder when it was last scanned: a mail that arrives between that
        # scan and the start of IDLE is never announced by IDLE, so it is caught from here.
        self._scanned_uidnext: dict[str, int] = {}

    @property
    def can_idle(self) -> bool:
        """Whether the server offers IDLE (asked once per session)."""
        if self._can_idle is None:
            from imapclient.exceptions import IMAPClientError

            try:
                capabilities = self._client.capabilities()
            except (IMAPClientError, OSError) as exc:
                raise self._lost(exc) from None
            names = {c.decode() if isinstance(c, bytes) else c for c in capabilities}
            self._can_idle = "IDLE" in names
        return self._can_idle

    def folders(self) -> list[str]:
        """The configured folders, or INBOX plus the server's Junk folder."""
        if self.source.account.folders:
            return list(self.source.account.folders)
        from imapclient.imapclient import JUNK

        folders = ["INBOX"]
        try:
            junk = self._client.find_special_folder(JUNK)
        except Exception:  # a server without LIST extensions: INBOX alone
            junk = None
        if junk and junk not in folders:
            folders.append(junk)
        return folders

    def junk_folder(self) -> str | None:
        """The folder the server flags \\Junk (RFC 6154), if any."""
        from imapclient.imapclient import JUNK

        try:
            found = self._client.find_special_folder(JUNK)
        except Exception:  # a server without LIST extensions
            return None
        return str(found) if found else None

    def all_folders(self) -> list[str]:
        """Every folder name on the server (LIST), for set-up and diagnosis."""
        from imapclient.exceptions import IMAPClientError

        try:
            return [str(name) for _flags, _sep, name in self._client.list_folders()]
        except (IMAPClientError, OSError) as exc:
            raise self._lost(exc) from None

    def message_count(self, folder: str) -> int:
        """EXAMINE `folder` (read-only) and return how many mails it holds. Raises
        FolderMissing when it cannot be opened."""
        return int(self._examine(folder).get(b"EXISTS", 0))

    def folder_source(self, folder: str) -> SessionFolder:
        """One folder on this session, as a pipeline source."""
        return SessionFolder(self, folder)

    def folder_batches(self, folder: str, cursor: Cursor | None) -> Iterator[Batch]:
        """New candidate mails of `folder` after `cursor`, in chunks, each with its cursor."""
        name = self.source.name
        status = self._examine(folder)
        uidvalidity = int(status[b"UIDVALIDITY"])
        uidnext = int(status[b"UIDNEXT"]) if b"UIDNEXT" in status else None
        if uidnext is not None:
            self._scanned_uidnext[folder] = uidnext
        last_uid = 0
        if cursor is not None and cursor.uidvalidity == uidvalidity:
            last_uid = cursor.last_uid
            if uidnext is not None and uidnext <= last_uid + 1:
                log.debug("%s/%s: nothing new (UIDNEXT %s)", name, folder, uidnext)
                return
        elif cursor is not None:
            log.warning(
                "%s/%s: UIDVALIDITY changed (%s -> %s); rescanning the folder, mails already "
                "recorded are recognised by Message-ID",
                name,
                folder,
                cursor.uidvalidity,
                uidvalidity,
            )
        uids = self._search(last_uid)
        level = logging.INFO if uids else logging.DEBUG  # the journal: only what matters
        log.log(level, "%s/%s: %d new candidate mail(s)", name, folder, len(uids))
        done = max(last_uid, (uidnext or 1) - 1)
        if not uids:
            cursor = Cursor(name, folder, uidvalidity, done, uidnext)
            yield Batch(folder=folder, mails=[], cursor=cursor)
            return
        chunks = [uids[i : i + FETCH_CHUNK] for i in range(0, len(uids), FETCH_CHUNK)]

        def batch(index: int, mails: list[RawMail], ruled_out: int) -> Batch:
            chunk = chunks[index]
            high = max(chunk[-1], done) if index == len(chunks) - 1 else chunk[-1]
            cursor = Cursor(name, folder, uidvalidity, high, uidnext)
            return Batch(folder, mails, cursor, total=len(uids), ruled_out=ruled_out)

        triage = self.source.triage
        workers = triage_pool.usable(len(uids)) if triage and self.source.parallel else 0
        # With workers, they judge earlier chunks while this process downloads the next ones;
        # without, each chunk is judged here before the next one is asked for.
        with triage_pool.TriagePool(triage, workers) as pool:

            def finished(index: int, planned: Planned, pending: triage_pool.Pending) -> Batch:
                return batch(index, *self._fetcher.finish(planned, pool.judge(pending)))

            waiting: deque[tuple[int, Planned, triage_pool.Pending]] = deque()
            for index, chunk in enumerate(chunks):
                planned = self._fetcher.plan(folder, uidvalidity, chunk)
                waiting.append((index, planned, pool.submit(planned.stand_ins)))
                if len(waiting) > workers:
                    yield finished(*waiting.popleft())
            while waiting:
                yield finished(*waiting.popleft())

    def wait_for_news(
        self,
        folder: str,
        stop: threading.Event,
        refresh_s: float = IDLE_REFRESH,
        *,
        check_s: float = IDLE_CHECK,
        on_slice: Callable[[], None] | None = None,
    ) -> bool:
        """IDLE on `folder`: True when the server announces new mail, False when `refresh_s`
        passed or `stop` was set (noticed within a second). `on_slice` is called each second.

        Raises ConnectionLost for a BYE, a socket that answers nothing at once (imapclient
        swallows EOF), a jump of the wall clock (a resume from suspend), or a server that
        does not answer DONE or IDLE within STALL_TIMEOUT.
        """
        # Liveness: a server that hangs (a stopped process, a dead peer behind NAT) keeps the
        # TCP connection open and simply never speaks, which IDLE cannot tell from a quiet
        # mailbox. So IDLE is left and re-entered every `check_s` seconds, and DONE and IDLE
        # must each be answered within a short timeout. This tests the very connection that
        # brings the news; a NOOP on a second connection would not (Dovecot serves each one
        # by its own process, and a stalled one leaves the others answering), and it would
        # cost a login per folder against providers' connection limits. Two short lines each
        # way per cycle; it also keeps NAT mappings alive.
        status = self._examine(folder)
        scanned = self._scanned_uidnext.get(folder)
        if scanned is not None and int(status.get(b"UIDNEXT", scanned)) > scanned:
            return True  # arrived after the last scan, before IDLE could announce it
        started = time.monotonic()
        while True:
            left = refresh_s - (time.monotonic() - started)
            news = self._idle_once(stop, min(check_s, left), on_slice)
            if news or stop.is_set() or time.monotonic() - started >= refresh_s:
                return news

    def _idle_once(
        self, stop: threading.Event, seconds: float, on_slice: Callable[[], None] | None
    ) -> bool:
        """One IDLE ... DONE round of at most `seconds`; True when news came, even with DONE."""
        from imapclient.exceptions import IMAPClientAbortError

        client = self._client
        account = self.source.account
        with stall_timeout(client, account, "starting IDLE", STALL_TIMEOUT):
            client.idle()
        try:
            news = self._idle_until_news(stop, seconds, on_slice)
        except (IMAPClientAbortError, OSError) as exc:
            raise ConnectionLost(f"connection lost ({clean(exc)})") from None
        with stall_timeout(client, account, "ending IDLE", STALL_TIMEOUT):
            _, responses = client.idle_done()
        return news or _announces_news(responses)

    def _idle_until_news(
        self, stop: threading.Event, seconds: float, on_slice: Callable[[], None] | None
    ) -> bool:
        started = time.monotonic()
        offset = time.time() - started
        quick_empty = 0
        while not stop.is_set():
            before = time.monotonic()
            responses = self._client.idle_check(timeout=IDLE_SLICE)
            if on_slice is not None:
                on_slice()
            tuples = [r for r in responses if isinstance(r, tuple)]
            if any(r[1:2] == (b"BYE",) or r[:1] == (b"BYE",) for r in tuples):
                raise ConnectionLost("the server closed the connection (BYE)")
            # imapclient swallows EOF: a closed socket makes idle_check return [] at once.
            quick = not responses and time.monotonic() - before < IDLE_SLICE / 4
            quick_empty = quick_empty + 1 if quick else 0
            if quick_empty >= 3:
                raise ConnectionLost("the connection was closed")
            if _announces_news(tuples):
                return True
            if abs((time.time() - time.monotonic()) - offset) > CLOCK_JUMP:
                raise ConnectionLost("the clock jumped (resumed from suspend?)")
            if time.monotonic() - started > seconds:
                return False
        return False

    # -- the scan's IMAP commands -------------------------------------------------------------

    def _examine(self, folder: str) -> dict[bytes, Any]:
        from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

        try:
            # readonly=True sends EXAMINE: the server itself then refuses any flag change.
            return dict(self._client.select_folder(folder, readonly=True))
        except (IMAPClientAbortError, OSError) as exc:
            raise self._lost(exc) from None
        except IMAPClientError as exc:
            raise FolderMissing(
                f"folder {folder!r} cannot be opened on {self.source.account.host} ({clean(exc)})"
            ) from None

    def _search(self, last_uid: int) -> list[int]:
        source = self.source
        criteria: list[Any] = ["UID", f"{last_uid + 1}:*"]
        given = source.search_terms() if source.search_terms else ()
        terms = sorted(set(source.sender_domains) | set(source.search_words) | set(given))
        criteria += _or_chain(["FROM", term] for term in terms)
        if last_uid == 0:
            criteria += ["SINCE", source.account.since]
        uids = self._client.search(criteria)
        # RFC 3501 6.4.8: "n:*" always includes the highest UID, even when it is below n.
        return sorted(int(uid) for uid in uids if int(uid) > last_uid)

    def _lost(self, exc: BaseException) -> ConnectionLost:
        return ConnectionLost(f"account {self.source.name}: connection lost ({clean(exc)})")


class FolderMissing(SourceError):
    """A folder that does not exist (or cannot be opened): reported, the others go on."""


def _announces_news(responses: Sequence[object]) -> bool:
    """An untagged EXISTS or RECENT among parsed IDLE responses, e.g. (33, b"EXISTS")."""
    return any(
        isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses
    )


def _or_chain(terms: Iterator[list[str]] | Sequence[list[str]]) -> list[str]:
    """IMAP's OR takes two keys: OR a OR b c  means  a or b or c."""
    items = list(terms)
    out: list[str] = []
    for i, term in enumerate(items):
        if i < len(items) - 1:
            out.append("OR")
        out.extend(term)
    return out
