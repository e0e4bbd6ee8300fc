"""Opening an IMAP connection for the IMAP source: TLS verified by default, timeouts always set.

Owns the login — a password, or an OAuth2 access token over SASL XOAUTH2 / OAUTHBEARER — the
short read timeout that tells a stalled connection, and the translation of imapclient's and the
socket's errors into `SourceError`s that say what to do (`AuthError` for a refused login,
`TokenRefused` for a refused token even after asking for a fresh one, `ConnectionLost` for what
may pass).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING

from optout_mail.config import Account
from optout_mail.errors import AuthError, ConnectionLost, SourceError, TokenRefused
from optout_mail.sources.credentials import shown_command

if TYPE_CHECKING:
    from imapclient import IMAPClient

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 15.0  # seconds for the TCP connect, however long the account's timeout
X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH = 62, 64  # OpenSSL's verify codes
SASL_MECHANISM = {"xoauth2": "XOAUTH2", "oauthbearer": "OAUTHBEARER"}
OAUTH2_SCOPES = (
    "Gmail: https://mail.google.com/, "
    "Microsoft 365: https://outlook.office.com/IMAP.AccessAsUser.All"
)


def connect(name: str, account: Account, secret: Callable[[], str]) -> IMAPClient:
    """A logged-in client for account `name`; `secret` gives the password, or for OAuth2 an
    access token (asked again when the server refuses the first). Raises AuthError,
    TokenRefused, ConnectionLost or SourceError."""
    from imapclient import IMAPClient, SocketTimeout

    context = ssl.create_default_context(cafile=str(account.ca_file) if account.ca_file else None)
    timeout = SocketTimeout(connect=connect_timeout(account), read=account.timeout)
    client: IMAPClient | None = None
    started = time.monotonic()
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
        if account.uses_oauth2:
            _oauth2_login(name, account, client, secret)
        else:
            client.login(account.username, secret())
        return client
    except BaseException as exc:
        if client is not None:
            shutdown(client)
        error = connection_error(name, account, exc, waited=time.monotonic() - started)
        if error is None:
            raise
        raise error from None


def _oauth2_login(
    name: str, account: Account, client: IMAPClient, token: Callable[[], str]
) -> None:
    """SASL XOAUTH2 or OAUTHBEARER. A refused token may just have expired since the helper
    cached it: ask `token` for a fresh one and try again at once, on the same connection;
    refused twice, it is `TokenRefused`."""
    from imapclient.exceptions import IMAPClientAbortError, LoginError

    mechanism = SASL_MECHANISM[account.auth]
    offered = {cap.decode("ascii", "replace").upper() for cap in client.capabilities()}
    if f"AUTH={mechanism}" not in offered:
        others = sorted(m.lower() for m in SASL_MECHANISM.values() if f"AUTH={m}" in offered)
        raise SourceError(
            f"account {name}: {account.host} does not offer {mechanism} logins",
            hint=f'use auth = "{others[0]}"' if others else "check `host` and `auth`",
        )
    for attempt in range(2):
        access_token = token()
        try:
            if mechanism == "OAUTHBEARER":
                client.oauthbearer_login(account.username, access_token)
            else:
                client.oauth2_login(account.username, access_token, mech=mechanism)
            return
        except LoginError as exc:
            if isinstance(exc.__context__, IMAPClientAbortError | OSError):
                raise exc.__context__ from None  # the connection broke, nothing was refused
            if attempt:
                shown = shown_command(account.token_command or "")
                raise TokenRefused(
                    f"account {name}: the access token was refused (expired?) by "
                    f"{account.host} for {account.username}, also after asking for a fresh one",
                    hint=f"run the token_command by hand ({shown}) and check that its token "
                    f"is for {account.username}, with the scope {OAUTH2_SCOPES}",
                ) from None
            log.info(
                "account %s: the access token was refused (expired?); trying once more "
                "with a fresh one from token_command",
                name,
            )


def connect_timeout(account: Account) -> float:
    """Seconds to wait for the TCP connection: the account's timeout, at most CONNECT_TIMEOUT."""
    return min(CONNECT_TIMEOUT, account.timeout)


def connection_error(
    name: str, account: Account, exc: BaseException, *, waited: float | None = None
) -> SourceError | None:
    """The user-facing error for a failed connect/login; None for exceptions of our own.
    `waited`: seconds since the connect began, to name the timeout that ran out."""
    from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError

    where = f"{account.host}:{account.effective_port}"
    prefix = f"account {name}:"
    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError) and _name_mismatch(exc):
        return SourceError(
            f"{prefix} the certificate of {where} is made out to another name, not "
            f"{account.host} ({exc.verify_message})",
            hint="check `host`: it must be the name the server's certificate is made out to "
            "(e.g. imap.example.org rather than an alias or an IP address)",
        )
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
        # The TCP connect has a shorter limit than every read after it: name the one that ran
        # out (a connect that timed out waited about connect_timeout, well short of timeout).
        limit = account.timeout
        if waited is not None and waited < account.timeout - 1:
            limit = connect_timeout(account)
        return ConnectionLost(
            f"{prefix} {where} did not answer within {limit:g} s",
            hint="check the network, or raise `timeout`",
        )
    if isinstance(exc, OSError | IMAPClientError):
        return ConnectionLost(f"{prefix} the connection to {where} failed ({clean(exc)})")
    return None


def _name_mismatch(exc: ssl.SSLCertVerificationError) -> bool:
    """The certificate is valid but made out to another host name (or IP address)."""
    return exc.verify_code in (
        X509_V_ERR_HOSTNAME_MISMATCH,
        X509_V_ERR_IP_ADDRESS_MISMATCH,
    ) or "mismatch" in str(exc.verify_message or "")


@contextmanager
def stall_timeout(client: IMAPClient, account: Account, doing: str, limit: float) -> Iterator[None]:
    """Reads inside wait at most `limit` s (or the account's shorter timeout); a silence that
    long is a stalled connection. Every error inside becomes ConnectionLost."""
    from imapclient.exceptions import IMAPClientError

    timeout = min(limit, account.timeout)
    # socket() is imapclient's handle "for polling purposes"; the timeout only bounds the
    # reads inside, and imapclient resets it the same way after each idle_check().
    sock = client.socket()
    try:
        sock.settimeout(timeout)
        yield
    except TimeoutError:
        raise ConnectionLost(
            f"{account.host} did not answer within {timeout:g} s while {doing}; "
            "the connection is stalled"
        ) from None
    except (IMAPClientError, OSError) as exc:
        raise ConnectionLost(f"connection lost while {doing} ({clean(exc)})") from None
    finally:
        with suppress(OSError):
            sock.settimeout(account.timeout)


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
