"""The exception tree of optout-mail; user-facing errors carry the problems and a hint.

OptoutError                 base of everything raised on purpose
├── ConfigError             bad or missing configuration (exit 78); lists every problem
├── RuleError               a rule pack that does not load or lint (exit 78)
├── SourceError             a mailbox that cannot be read (exit 1)
│   ├── AuthError           the server refused the credentials, or none could be had
│   ├── TokenRefused        the server refused a fresh OAuth2 access token (retried soon)
│   └── ConnectionLost      network or server trouble worth retrying
├── LedgerError             the ledger cannot be opened or written (exit 1)
│   └── LedgerDamaged       the file is empty, not SQLite, truncated or fails its check
└── UsageError              a command used the wrong way (exit 2)
    └── UnknownRequest      no request has the id the user gave
"""

from __future__ import annotations


class OptoutError(Exception):
    """Base class: `message` is one sentence, `problems` the details, `hint` what to do."""

    def __init__(
        self, message: str, *, problems: list[str] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.problems = list(problems or [])
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(OptoutError):
    """The configuration cannot be used as it is."""


class RuleError(OptoutError):
    """A rule pack does not load or does not pass the lint."""


class SourceError(OptoutError):
    """A mail source (IMAP account, Maildir, mbox, folder of .eml) cannot be read."""


class AuthError(SourceError):
    """The IMAP server refused the login, or the password or token source failed."""


class TokenRefused(SourceError):
    """The IMAP server refused an OAuth2 access token, a fresh one included.

    Not an `AuthError`: tokens expire and are revoked by the provider at any time, so this is
    retried with the usual back-off rather than waited out like a wrong password.
    """


class ConnectionLost(SourceError):
    """The connection failed or dropped (BYE, EOF, a silent socket); trying again may work."""


class LedgerError(OptoutError):
    """The SQLite ledger cannot be opened, migrated or written."""


class LedgerDamaged(LedgerError):
    """The ledger file is damaged: empty, not SQLite, truncated, or fails the integrity check.

    Never recreated in its place; the hint names the way out (restore a backup, or move it away).
    """


class UsageError(OptoutError):
    """A command was called with arguments that cannot work."""


class UnknownRequest(UsageError):
    """The ledger has no request with the id the user gave."""

    def __init__(self, request_id: int) -> None:
        super().__init__(
            f"there is no request {request_id}",
            hint="`optout-mail requests list` shows the ids",
        )
        self.request_id = request_id
