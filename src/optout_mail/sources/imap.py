"""IMAP accounts (imapclient), strictly read-only: EXAMINE and BODY.PEEK, never a flag changed.

Owns connecting (TLS verified by default, timeouts always set), turning imapclient's and the
socket's errors into `SourceError`s that say what to do, the incremental scan of a folder by
UIDVALIDITY + last UID, and waiting for new mail with IDLE.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from optout_mail.config import Account
from optout_mail.errors import AuthError, ConnectionLost, SourceError
from optout_mail.model import Batch, Cursor, RawMail
from optout_mail.sources.credentials import password_for

if TYPE_CHECKING:
    from imapclient import IMAPClient

log = logging.getLogger(__name__)

FETCH_CHUNK = 50  # UIDs per FETCH: keeps command lines short and batches small
MAX_FETCH_BYTES = 1 << 20  # Meta's replies are small; a partial fetch bounds huge mails
BODY_ITEM = f"BODY.PEEK[]<0.{MAX_FETCH_BYTES}>"


@dataclass
class IMAPSource:
    """One configured account. `batches` opens a connection, scans, and logs out."""

    name: str
    account: Account
    sender_domains: Sequence[str]
    search_words: Sequence[str] = ()  # lookalike words: extra FROM terms for the SEARCH
    problems: list[str] = field(default_factory=list)
    password: Callable[[], str] | None = None  # injectable for tests; default: credentials

    @property
    def address(self) -> str | None:
        return self.account.address.lower() if self.account.address else None

    def batches(self, cursor_for: Callable[[str], Cursor | None]) -> Iterator[Batch]:
        with self.session() as client:
            folders = self.folders(client)
            missing = []
            for folder in folders:
                try:
                    yield from self.folder_batches(client, folder, cursor_for(folder))
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

    # -- connection -------------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[IMAPClient]:
        client = self.connect()
        try:
            yield client
        finally:
            try:
                client.logout()
            except Exception:  # the connection may already be gone; nothing to save
                log.debug("logout from %s failed", self.account.host, exc_info=True)

    def connect(self) -> IMAPClient:
        """A logged-in client. Raises AuthError, ConnectionLost or SourceError."""
        from imapclient import IMAPClient, SocketTimeout

        account = self.account
        context = ssl.create_default_context(
            cafile=str(account.ca_file) if account.ca_file else None
        )
        timeout = SocketTimeout(connect=min(15.0, account.timeout), read=account.timeout)
        client: IMAPClient | None = None
        try:
            client = IMAPClient(
                account.host, port=account.effective_port, ssl=account.security == "tls",
                ssl_context=context, timeout=timeout,
            )  # fmt: skip
            if account.security == "starttls":
                client.starttls(context)
            password = self.password() if self.password else password_for(self.name, account)
            client.login(account.username, password)
            return client
        except BaseException as exc:
            if client is not None:
                _shutdown(client)
            error = self._connection_error(exc)
            if error is None:
                raise
            raise error from None

    def _connection_error(self, exc: BaseException) -> SourceError | None:
        """The user-facing error for a failed connect/login; None for exceptions of our own."""
        from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError

        account = self.account
        where = f"{account.host}:{account.effective_port}"
        prefix = f"account {self.name}:"
        if isinstance(exc, SourceError):
            return exc
        if isinstance(exc, ssl.SSLCertVerificationError):
            return SourceError(
                f"{prefix} the certificate of {where} cannot be trusted ({exc.verify_message})",
                hint="if the server uses a private certificate authority, set ca_file",
            )
        if isinstance(exc, ssl.SSLError):
            return ConnectionLost(
                f"{prefix} TLS with {where} failed ({exc.reason})",
                hint="check `security` and `port` (tls is usually 993, starttls 143)",
            )
        if isinstance(exc, LoginError):
            return AuthError(
                f"{prefix} {account.host} refused the login of {account.username}",
                hint="check the username and password (many providers need an app password)",
            )
        if isinstance(exc, CapabilityError):
            return SourceError(
                f"{prefix} {where} does not offer STARTTLS",
                hint='use security = "tls" (port 993) if the server supports it',
            )
        if isinstance(exc, socket.gaierror):
            return ConnectionLost(
                f"{prefix} the host name {account.host} cannot be resolved",
                hint="check `host`, and that this machine is online",
            )
        if isinstance(exc, ConnectionRefusedError):
            return ConnectionLost(
                f"{prefix} {where} refused the connection",
                hint="check `host` and `port`, and that the server is running",
            )
        if isinstance(exc, TimeoutError):
            return ConnectionLost(
                f"{prefix} {where} did not answer within {account.timeout:g} s",
                hint="check the network, or raise `timeout`",
            )
        if isinstance(exc, OSError | IMAPClientError):
            return ConnectionLost(f"{prefix} the connection to {where} failed ({_clean(exc)})")
        return None

    # -- folders ----------------------------------------------------------------------------

    def folders(self, client: IMAPClient) -> list[str]:
        """The configured folders, or INBOX plus the server's Junk folder."""
        if self.account.folders:
            return list(self.account.folders)
        from imapclient.imapclient import JUNK

        folders = ["INBOX"]
        try:
            junk = client.find_special_folder(JUNK)
        except Exception:  # a server without LIST extensions: INBOX alone
            junk = None
        if junk and junk not in folders:
            folders.append(junk)
        return folders

    def folder_batches(
        self, client: IMAPClient, folder: str, cursor: Cursor | None
    ) -> Iterator[Batch]:
        """New candidate mails of `folder` after `cursor`, in chunks, each with its cursor."""
        status = self._examine(client, folder)
        uidvalidity = int(status[b"UIDVALIDITY"])
        uidnext = int(status[b"UIDNEXT"]) if b"UIDNEXT" in status else None
        last_uid = 0
        if cursor is not None and cursor.uidvalidity == uidvalidity:
            last_uid = cursor.last_uid
            if uidnext is not None and uidnext <= last_uid + 1:
                log.debug("%s/%s: nothing new (UIDNEXT %s)", self.name, folder, uidnext)
                return
        elif cursor is not None:
            log.warning(
                "%s/%s: UIDVALIDITY changed (%s -> %s); rescanning the folder, mails already "
                "recorded are recognised by Message-ID", self.name, folder,
                cursor.uidvalidity, uidvalidity,
            )  # fmt: skip
        uids = self._search(client, last_uid)
        log.info("%s/%s: %d new candidate mail(s)", self.name, folder, len(uids))
        done = max(last_uid, (uidnext or 1) - 1)
        for start in range(0, len(uids), FETCH_CHUNK):
            chunk = uids[start : start + FETCH_CHUNK]
            mails = self._fetch(client, folder, uidvalidity, chunk)
            is_last = start + FETCH_CHUNK >= len(uids)
            high = max(chunk[-1], done) if is_last else chunk[-1]
            yield Batch(folder=folder, mails=mails,
                        cursor=Cursor(self.name, folder, uidvalidity, high, uidnext))
        if not uids:
            yield Batch(folder=folder, mails=[],
                        cursor=Cursor(self.name, folder, uidvalidity, done, uidnext))

    def _examine(self, client: IMAPClient, folder: str) -> dict[bytes, Any]:
        from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

        try:
            # readonly=True sends EXAMINE: the server itself then refuses any flag change.
            return dict(client.select_folder(folder, readonly=True))
        except IMAPClientAbortError as exc:
            raise ConnectionLost(f"account {self.name}: connection lost ({_clean(exc)})") from None
        except IMAPClientError as exc:
            raise FolderMissing(
                f"folder {folder!r} cannot be opened on {self.account.host} ({_clean(exc)})"
            ) from None

    def _search(self, client: IMAPClient, last_uid: int) -> list[int]:
        criteria: list[Any] = ["UID", f"{last_uid + 1}:*"]
        criteria += _or_chain(["FROM", term] for term in self._search_terms())
        if last_uid == 0:
            criteria += ["SINCE", self.account.since]
        uids = client.search(criteria)
        # RFC 3501 6.4.8: "n:*" always includes the highest UID, even when it is below n.
        return sorted(int(uid) for uid in uids if int(uid) > last_uid)

    def _search_terms(self) -> list[str]:
        return sorted(set(self.sender_domains) | set(self.search_words))

    def _fetch(
        self, client: IMAPClient, folder: str, uidvalidity: int, uids: list[int]
    ) -> list[RawMail]:
        from imapclient.exceptions import IMAPClientError

        try:
            # A list of ints, never a range string: imapclient 4.1 breaks on "1:*" in fetch.
            response = client.fetch(uids, [BODY_ITEM])
        except IMAPClientError as exc:
            raise ConnectionLost(f"account {self.name}: FETCH failed ({_clean(exc)})") from None
        mails = []
        for uid in uids:
            item = response.get(uid)
            data = _body_of(item) if item else None
            if data is None:
                # Deleted by another client between SEARCH and FETCH: nothing to record.
                log.info("%s/%s: UID %d vanished before it could be read", self.name, folder, uid)
                continue
            mails.append(
                RawMail(data=data, origin=f"{self.name}/{folder}/{uid}", folder=folder,
                        uid=uid, uidvalidity=uidvalidity)
            )
        return mails


class FolderMissing(SourceError):
    """A folder that does not exist (or cannot be opened): reported, the others go on."""


def _body_of(item: dict[bytes, Any]) -> bytes | None:
    # The response key drops ".PEEK" and may carry the partial origin: b"BODY[]<0>".
    for key, value in item.items():
        if isinstance(key, bytes) and key.startswith(b"BODY[]") and isinstance(value, bytes):
            return value
    return None


def _or_chain(terms: Iterator[list[str]] | Sequence[list[str]]) -> list[str]:
    """IMAP's OR takes two keys: OR a OR b c  means  a or b or c."""
    items = list(terms)
    out: list[str] = []
    for i, term in enumerate(items):
        if i < len(items) - 1:
            out.append("OR")
        out.extend(term)
    return out


def _shutdown(client: IMAPClient) -> None:
    """Close the socket without a LOGOUT round trip (the session is unusable anyway)."""
    try:
        client.shutdown()
    except Exception:
        log.debug("closing a failed connection raised", exc_info=True)


def _clean(exc: BaseException) -> str:
    """imapclient errors print as b'...' reprs; make them a sentence."""
    text = str(exc)
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
        text = text[2:-1]
    return text.strip() or type(exc).__name__
