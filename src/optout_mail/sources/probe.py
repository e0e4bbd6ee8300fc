"""Reaching an IMAP server without logging in, for `optout-mail doctor`: the TCP connection and
the TLS handshake (STARTTLS too), each reported as a stage with what is wrong and the fix.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from optout_mail.config import Account
from optout_mail.errors import SourceError
from optout_mail.sources.imap_connect import connect_timeout, connection_error


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
            (account.host, account.effective_port), timeout=connect_timeout(account)
        )
    except OSError as exc:
        return _failed(name, account, exc, waited=0.0), None  # the connect's own limit
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


def _failed(
    name: str, account: Account, exc: BaseException, *, waited: float | None = None
) -> Stage:
    error = connection_error(name, account, exc, waited=waited) or SourceError(
        f"{type(exc).__name__}: {exc}"
    )
    return Stage(False, error.message.removeprefix(f"account {name}: "), error.hint or "")
