"""Mail providers `init` knows: IMAP server, port and security, the usual Junk folder, and what
a login needs (an app password, OAuth2, Proton Mail Bridge). Pure data and lookups: the address
domain, a custom domain's MX hosts, or an IMAP host name find an entry; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Security = Literal["tls", "starttls", "plain"]
Login = Literal["password", "app_password", "oauth2", "bridge"]


@dataclass(frozen=True)
class MailProvider:
    key: str  # also the default account name: lower-case, words joined by "_"
    name: str
    domains: tuple[str, ...]  # address domains hosted there
    host: str
    port: int
    security: Security
    junk: str  # the Junk folder's usual name, when the server does not flag it \Junk
    login: Login
    help_url: str
    note: str = ""  # what to do first, in one sentence
    mx: tuple[str, ...] = ()  # MX host suffixes of custom domains hosted there


PROVIDERS: tuple[MailProvider, ...] = (
    MailProvider(
        "gmail",
        "Gmail",
        ("gmail.com", "googlemail.com"),
        "imap.gmail.com",
        993,
        "tls",
        "[Gmail]/Spam",
        "app_password",
        "https://myaccount.google.com/apppasswords",
        "turn on 2-Step Verification, then create an app password",
        ("google.com", "googlemail.com"),
    ),
    MailProvider(
        "outlook",
        "Outlook.com / Hotmail",
        (
            "outlook.com",
            "hotmail.com",
            "hotmail.co.uk",
            "hotmail.de",
            "hotmail.fr",
            "hotmail.it",
            "hotmail.es",
            "live.com",
            "live.de",
            "live.fr",
            "live.co.uk",
            "msn.com",
            "outlook.de",
            "outlook.fr",
            "outlook.es",
            "outlook.it",
        ),
        "outlook.office365.com",
        993,
        "tls",
        "Junk",
        "oauth2",
        "https://support.microsoft.com/office/"
        "pop-imap-and-smtp-settings-for-outlook-com-d088b986-291d-42b8-9564-9c414e2aa040",
        "Microsoft accepts only OAuth2: get a token command, e.g. from oama or mutt_oauth2.py",
    ),
    MailProvider(
        "microsoft365",
        "Microsoft 365",
        (),
        "outlook.office365.com",
        993,
        "tls",
        "Junk Email",
        "oauth2",
        "https://learn.microsoft.com/exchange/client-developer/legacy-protocols/"
        "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth",
        "Microsoft 365 accepts only OAuth2: get a token command, e.g. from oama",
        ("mail.protection.outlook.com",),
    ),
    MailProvider(
        "yahoo",
        "Yahoo Mail",
        (
            "yahoo.com",
            "yahoo.co.uk",
            "yahoo.de",
            "yahoo.fr",
            "yahoo.es",
            "yahoo.it",
            "ymail.com",
            "rocketmail.com",
        ),
        "imap.mail.yahoo.com",
        993,
        "tls",
        "Bulk",
        "app_password",
        "https://help.yahoo.com/kb/SLN15241.html",
        "create an app password",
        ("yahoodns.net",),
    ),
    MailProvider(
        "aol",
        "AOL Mail",
        ("aol.com", "aol.de", "aol.fr", "aim.com"),
        "imap.aol.com",
        993,
        "tls",
        "Bulk",
        "app_password",
        "https://help.aol.com/articles/Create-and-manage-app-password",
        "create an app password",
    ),
    MailProvider(
        "icloud",
        "iCloud Mail",
        ("icloud.com", "me.com", "mac.com"),
        "imap.mail.me.com",
        993,
        "tls",
        "Junk",
        "app_password",
        "https://support.apple.com/en-us/102654",
        "create an app-specific password",
        ("mail.icloud.com",),
    ),
    MailProvider(
        "gmx",
        "GMX",
        ("gmx.de", "gmx.net", "gmx.at", "gmx.ch"),
        "imap.gmx.net",
        993,
        "tls",
        "Spamverdacht",
        "password",
        "https://hilfe.gmx.net/pop-imap/imap/imap-serverdaten.html",
        "switch on IMAP access in the settings (POP3/IMAP Abruf) first",
    ),
    MailProvider(
        "gmx_com",
        "GMX (gmx.com)",
        ("gmx.com", "gmx.us", "gmx.co.uk", "gmx.fr", "gmx.es"),
        "imap.gmx.com",
        993,
        "tls",
        "Spam",
        "password",
        "https://support.gmx.com/pop-imap/imap/server.html",
        "switch on IMAP access in the settings first",
    ),
    MailProvider(
        "webde",
        "WEB.DE",
        ("web.de",),
        "imap.web.de",
        993,
        "tls",
        "Spamverdacht",
        "password",
        "https://hilfe.web.de/pop-imap/imap/imap-serverdaten.html",
        "switch on IMAP access in the settings (POP3/IMAP Abruf) first",
    ),
    MailProvider(
        "fastmail",
        "Fastmail",
        ("fastmail.com", "fastmail.fm", "fastmail.net", "fastmail.org"),
        "imap.fastmail.com",
        993,
        "tls",
        "Spam",
        "app_password",
        "https://www.fastmail.help/hc/en-us/articles/360058752854",
        "create an app password",
        ("messagingengine.com",),
    ),
    MailProvider(
        "posteo",
        "Posteo",
        ("posteo.de", "posteo.net", "posteo.eu", "posteo.org", "posteo.at"),
        "posteo.de",
        993,
        "tls",
        "Spam",
        "password",
        "https://posteo.de/en/help/how-do-i-set-up-posteo-in-an-email-client-pop3-imap-and-smtp",
    ),
    MailProvider(
        "mailbox_org",
        "mailbox.org",
        ("mailbox.org",),
        "imap.mailbox.org",
        993,
        "tls",
        "Junk",
        "password",
        "https://kb.mailbox.org/en/private/e-mail-article/"
        "using-mailbox-org-with-any-e-mail-program",
        "with two-factor authentication on, use an app password",
        ("mailbox.org",),
    ),
    MailProvider(
        "proton",
        "Proton Mail (via Proton Mail Bridge)",
        ("proton.me", "protonmail.com", "protonmail.ch", "pm.me"),
        "127.0.0.1",
        1143,
        "starttls",
        "Spam",
        "bridge",
        "https://proton.me/mail/bridge",
        "start Proton Mail Bridge, use the password it shows (not your Proton password) and "
        "its exported TLS certificate as --ca-file",
        ("protonmail.ch",),
    ),
    MailProvider(
        "zoho",
        "Zoho Mail",
        ("zoho.com", "zohomail.com"),
        "imap.zoho.com",
        993,
        "tls",
        "Spam",
        "app_password",
        "https://www.zoho.com/mail/help/imap-access.html",
        "switch on IMAP access; with two-factor authentication on, use an app password",
        ("zoho.com",),
    ),
    MailProvider(
        "zoho_eu",
        "Zoho Mail (EU)",
        ("zoho.eu", "zohomail.eu"),
        "imap.zoho.eu",
        993,
        "tls",
        "Spam",
        "app_password",
        "https://www.zoho.com/mail/help/imap-access.html",
        "switch on IMAP access; with two-factor authentication on, use an app password",
        ("zoho.eu",),
    ),
    MailProvider(
        "tonline",
        "Telekom (t-online.de)",
        ("t-online.de", "magenta.de"),
        "secureimap.t-online.de",
        993,
        "tls",
        "Spam",
        "app_password",
        "https://www.telekom.de/hilfe/apps-dienste/e-mail/programme-und-apps/e-mail-passwort",
        "create an e-mail password in the Telekom Login settings",
    ),
)

JUNK_NAMES = ("Junk", "Spam", "Junk Email", "Junk E-mail", "Bulk", "Spamverdacht", "INBOX.Spam")


def domain_of(address: str) -> str:
    """The domain of an e-mail address, lower-case; "" when it has none."""
    local, at, domain = address.strip().rpartition("@")
    return domain.lower().rstrip(".") if at and local else ""


def by_domain(domain: str) -> MailProvider | None:
    """The provider hosting addresses at `domain` itself."""
    domain = domain.lower()
    return next((p for p in PROVIDERS if domain in p.domains), None)


def by_mx(mx_hosts: Iterable[str]) -> MailProvider | None:
    """The provider a custom domain's MX hosts point to (Google Workspace, Microsoft 365, ...)."""
    for host in mx_hosts:
        host = host.lower().rstrip(".")
        for provider in PROVIDERS:
            if any(host == s or host.endswith("." + s) for s in provider.mx):
                return provider
    return None


def by_key(key: str) -> MailProvider | None:
    return next((p for p in PROVIDERS if p.key == key), None)


def by_host(host: str) -> MailProvider | None:
    """The provider whose IMAP server is `host` (to give provider-specific advice)."""
    host = host.lower().rstrip(".")
    return next((p for p in PROVIDERS if p.host == host and p.host != "127.0.0.1"), None)


def login_advice(provider: MailProvider) -> str:
    """One sentence: what the provider's login needs, with where to read about it."""
    what = {
        "password": "your mail password",
        "app_password": "an app password, not your normal password",
        "oauth2": "OAuth2 (a token command), not a password",
        "bridge": "Proton Mail Bridge running on this machine, and the password it shows",
    }[provider.login]
    note = f"; {provider.note}" if provider.note else ""
    return f"{provider.name} needs {what}{note}: {provider.help_url}"


def account_name(provider: MailProvider | None, domain: str) -> str:
    """A valid account name: the provider's key, else the domain's first label."""
    if provider is not None:
        return provider.key
    label = "".join(c if c.isascii() and c.isalnum() else "_" for c in domain.split(".")[0])
    name = "_".join(part for part in label.lower().split("_") if part)
    return name or "mail"
