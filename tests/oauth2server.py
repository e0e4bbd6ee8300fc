"""A loopback OAuth2 provider in miniature, for testing OAuth2 logins against a private Dovecot.

`TokenEndpoint` runs an HTTP server thread on 127.0.0.1 with two endpoints:

* ``POST /introspect`` (RFC 7662) — what Dovecot's ``oauth2`` passdb asks with
  ``introspection_mode = post``: the form field ``token`` in, ``{"active": true, "username":
  ...}`` out for a valid token, ``{"active": false}`` for anything else;
* ``GET /token?user=NAME`` — what a token helper (``oama access``, ``mutt_oauth2.py``) does
  for its user: the user's current access token, a new one when the old one has expired.

The test side issues, expires and revokes tokens and counts what was asked. No real provider
is contacted, nothing outside the thread is touched.
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

__all__ = ["TokenEndpoint"]


@dataclass
class _Account:
    current: str | None = None  # the token the helper hands out
    valid: set[str] = field(default_factory=set)  # what introspection accepts
    stale_hand_outs: int = 0  # times the helper still hands out a dead token (its cache)


class TokenEndpoint:
    """Issues access tokens per user and answers Dovecot's introspection requests."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}
        self.introspections: list[tuple[str, bool]] = []  # (token, active), in order
        self.handed_out: list[tuple[str, str]] = []  # (user, token), in order
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the name http.server calls
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode("ascii", "replace"))
                if self.path.split("?", 1)[0] != "/introspect":
                    self._reply(404, {"error": "not found"})
                    return
                token = (form.get("token") or [""])[0]
                self._reply(200, endpoint._introspect(token))

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path != "/token" or not query.get("user"):
                    self._reply(404, {"error": "not found"})
                    return
                token = endpoint._hand_out(query["user"][0])
                body = token.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _reply(self, status: int, payload: dict[str, object]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep the test output clean

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="token endpoint", daemon=True
        )
        self._thread.start()

    # ---------------------------------------------------------- what Dovecot and helpers see

    @property
    def introspection_url(self) -> str:
        return f"http://{self.host}:{self.port}/introspect"

    def token_url(self, user: str) -> str:
        return f"http://{self.host}:{self.port}/token?" + urllib.parse.urlencode({"user": user})

    def helper_argv(self, user: str) -> list[str]:
        """A token helper for `user` as an argv list: prints the current access token."""
        fetch = (
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())"
        )
        return [sys.executable, "-c", fetch, self.token_url(user)]

    def _introspect(self, token: str) -> dict[str, object]:
        with self._lock:
            owner = next((u for u, a in self._accounts.items() if token in a.valid), None)
            self.introspections.append((token, owner is not None))
        if owner is None:
            return {"active": False}
        return {"active": True, "username": owner, "scope": "imap"}

    def _hand_out(self, user: str) -> str:
        with self._lock:
            account = self._accounts.setdefault(user, _Account())
            if account.current is None or (
                account.current not in account.valid and not account.stale_hand_outs
            ):
                account.current = self._mint(account)
            elif account.current not in account.valid:
                account.stale_hand_outs -= 1
            self.handed_out.append((user, account.current))
            return account.current

    # ------------------------------------------------------------------ what the test does

    def issue(self, user: str) -> str:
        """A new valid token for `user`, also the one the helper hands out from now on."""
        with self._lock:
            account = self._accounts.setdefault(user, _Account())
            account.current = self._mint(account)
            return account.current

    def expire(self, user: str, *, stale_hand_outs: int = 0) -> None:
        """Every token of `user` stops being valid. The helper mints a new one on its next
        call, unless `stale_hand_outs` > 0: then it first hands out the dead token that many
        times (a helper trusting its cache, a clock that is off)."""
        with self._lock:
            account = self._accounts.setdefault(user, _Account())
            account.valid.clear()
            account.stale_hand_outs = stale_hand_outs

    def tokens_handed_out(self, user: str) -> Sequence[str]:
        with self._lock:
            return [token for who, token in self.handed_out if who == user]

    @staticmethod
    def _mint(account: _Account) -> str:
        token = "ya29." + secrets.token_urlsafe(24)
        account.valid.add(token)
        return token

    # ------------------------------------------------------------------ lifetime

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TokenEndpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
