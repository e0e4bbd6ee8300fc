"""Opening an IMAP connection for the IMAP source: TLS verified by default, timeouts always set.

Owns the login and the translation of imapclient's and the socket's errors into `SourceError`s
that say what to do (`AuthError` for a refused login, `ConnectionLost` for what may pass).
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optout_mail.config import Account
from optout_mail.errors import AuthError, ConnectionLost, SourceError

if TYPE_CHECKING:
    from imapclient import IMAPClient

log = logging.getLogger(__name__)


def connect(name: str, account: Account, password: Callable[[], str]) -> IMAPClient:
    """A logged-in client for account `name`. Raises AuthError, ConnectionLost or SourceError."""
    from imapclient import IMAPClient, SocketTimeout

    context = ssl.create_default_context(cafile=str(account.ca_file) if account.ca_file else None)
    timeout = SocketTimeout(connect=min(15.0, account.timeout), read=account.timeout)
    client: IMAPClient | None = None
    try:
        client = IMAPClient(
            account.host,
            port=account.effective_port,
            ssl=account.security == "tls",
            ssl_context=context,
            timeout=timeout,
        )
        if account.security == "starttls":
            client.starttls(context)
        client.login(account.username, password())
        return client
    except BaseException as exc:
        if client is not None:
            shutdown(client)
        error = connection_error(name, account, exc)
        if error is None:
            raise
        raise error from None


@dataclass(frozen=True)
class Stage:
    """One step of reaching a server, as `optout-mail doctor` reports it."""

    ok: bool
    detail: str
    fix: str = ""


def probe_transport(name: str, account: Account) -> tuple[Stage, Stage | None]:
    """Reach the server and do the TLS handshake (STARTTLS too), without logging in.

    Returns the connection's stage and the TLS stage (None when the connection failed).
    """
    where = f"{account.host}:{account.effective_port}"
    try:
        sock = socket.create_connection(
            (account.host, account.effective_port), timeout=min(15.0, account.timeout)
        )
    except OSError as exc:
        return _failed(name, account, exc), None
    with sock:
        reached = Stage(True, f"{where} answers")
        if account.security == "plain":
            return reached, Stage(True, "plain text, no TLS (loopback, or allow_plaintext)")
        context = ssl.create_default_context(
            cafile=str(account.ca_file) if account.ca_file else None
        )
        try:
            sock.settimeout(account.timeout)
            if account.security == "starttls":
                _starttls(sock, account)
            with context.wrap_socket(sock, server_hostname=account.host) as tls:
                how = "STARTTLS" if account.security == "starttls" else "TLS"
                return reached, Stage(True, f"{how} {tls.version()}, certificate verified")
        except (OSError, SourceError) as exc:
            return reached, _failed(name, account, exc)


def _starttls(sock: socket.socket, account: Account) -> None:
    """Read the greeting and ask for STARTTLS; raises SourceError when it is refused."""
    _read_reply(sock, b"* ")
    sock.sendall(b"s1 STARTTLS\r\n")
    if not _read_reply(sock, b"s1 ").startswith(b"s1 OK"):
        raise SourceError(
            f"{account.host}:{account.effective_port} does not offer STARTTLS",
            hint='use security = "tls" (port 993) if the server supports it',
        )


def _read_reply(sock: socket.socket, prefix: bytes) -> bytes:
    """Lines up to and including the first that starts with `prefix` (a few hundred bytes)."""
    buffer = b""
    while True:
        line_end = buffer.find(b"\r\n")
        while line_end < 0:
            chunk = sock.recv(1)  # byte by byte: nothing of the TLS handshake may be read
            if not chunk:
                raise ConnectionResetError("the server closed the connection")
            buffer += chunk
            line_end = buffer.find(b"\r\n")
        line, buffer = buffer[:line_end], buffer[line_end + 2 :]
        if line.startswith(prefix):
            return line


def _failed(name: str, account: Account, exc: BaseException) -> Stage:
    error = connection_error(name, account, exc) or SourceError(f"{type(exc).__name__}: {exc}")
    return Stage(False, error.message.removeprefix(f"account {name}: "), error.hint or "")


def connection_error(name: str, account: Account, exc: BaseException) -> SourceError | None:
    """The user-facing error for a failed connect/login; None for exceptions of our own."""
    from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError

    where = f"{account.host}:{account.effective_port}"
    prefix = f"account {name}:"
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
        return ConnectionLost(f"{prefix} the connection to {where} failed ({clean(exc)})")
    return None


def logout(client: IMAPClient, host: str) -> None:
    """LOGOUT, quietly: the connection may already be gone, and there is nothing to save.
    A connection that cannot log out is closed, so that its socket is not left to the GC."""
    try:
        client.logout()
    except Exception:
        log.debug("logout from %s failed", host, exc_info=True)
        shutdown(client)


def shutdown(client: IMAPClient) -> None:
    """Close the socket without a LOGOUT round trip (the session is unusable anyway)."""
    try:
        client.shutdown()
    except Exception:
        log.debug("closing a failed connection raised", exc_info=True)


def clean(exc: BaseException) -> str:
    """imapclient errors print as b'...' reprs; make them a sentence."""
    text = str(exc)
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
        text = text[2:-1]
    return text.strip() or type(exc).__name__
