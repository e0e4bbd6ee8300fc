"""What `doctor` checks, one `Check` each with the exact fix for a failure: the config and its
file mode, every account (connection, TLS, login, folders, Junk), the rule packs, the ledger,
the notification bus and server, the systemd unit and the daemon.
"""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from optout_mail.commands.state import now
from optout_mail.errors import AuthError, ConfigError, LedgerError, RuleError, SourceError

if TYPE_CHECKING:
    from optout_mail.commands.state import State
    from optout_mail.config import Account, Settings
    from optout_mail.sources.imap import IMAPSession

NOTIFY_FIX = (
    "run it inside your desktop session; for the service, pass the session's bus to it: "
    "systemctl --user import-environment DBUS_SESSION_BUS_ADDRESS"
)


# What `systemctl is-enabled` prints for a unit it knows (else "not-found" or an error).
UNIT_FILE_STATES = frozenset(
    {
        "enabled",
        "enabled-runtime",
        "linked",
        "linked-runtime",
        "alias",
        "masked",
        "masked-runtime",
        "static",
        "indirect",
        "disabled",
        "generated",
        "transient",
    }
)


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def config_checks(state: State) -> tuple[list[Check], Settings | None]:
    """The config loads, has an account, and keeps its password to the user. The settings
    are None when nothing else can be checked."""
    from optout_mail.config import resolve_config_path

    path, _ = resolve_config_path(state.config_path, os.environ)
    try:
        settings = state.settings()
    except ConfigError as exc:
        detail = "; ".join([exc.message, *exc.problems])
        return [Check("config", False, detail, exc.hint or f"fix {path}")], None
    where = str(path) if path.is_file() else "the environment (no config file)"
    if not settings.accounts:
        fix = "run `optout-mail init` to set up your account"
        return [Check("config", False, f"{where}: no account is configured", fix)], None
    checks = [Check("config", True, f"{where}: {len(settings.accounts)} account(s)")]
    if path.is_file() and _holds_password(path):
        mode = stat.S_IMODE(path.stat().st_mode)
        private = not mode & 0o077
        checks.append(
            Check(
                "config file mode",
                private,
                f"{path} holds a password; mode {mode:04o}"
                + ("" if private else ", others can read it"),
                "" if private else f"chmod 600 {path}",
            )
        )
    return checks, settings


def _holds_password(path: Path) -> bool:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    accounts = data.get("accounts")
    return isinstance(accounts, dict) and any(
        isinstance(a, dict) and "password" in a for a in accounts.values()
    )


def account_checks(name: str, account: Account) -> list[Check]:
    """Connection, TLS, login, folders and Junk, each only once the one before passed."""
    from optout_mail.providers import by_host, login_advice
    from optout_mail.sources.imap import IMAPSource
    from optout_mail.sources.probe import probe_transport

    reached, tls = probe_transport(name, account)
    checks = [Check(f"{name}: connection", reached.ok, reached.detail, reached.fix)]
    if tls is None:
        return checks
    checks.append(Check(f"{name}: TLS", tls.ok, tls.detail, tls.fix))
    if not tls.ok:
        return checks
    source = IMAPSource(name, account, sender_domains=())
    stage = "login"
    try:
        with source.session() as session:
            checks.append(Check(f"{name}: login", True, f"logged in as {account.username}"))
            stage = "folders"
            checks += _folder_checks(name, account, session)
    except AuthError as exc:
        provider = by_host(account.host)
        fixes = [exc.hint or "check the username and password"]
        if provider is not None:
            fixes.append(login_advice(provider))
        checks.append(Check(f"{name}: {stage}", False, _plain(name, exc), "; ".join(fixes)))
    except SourceError as exc:
        checks.append(Check(f"{name}: {stage}", False, _plain(name, exc), exc.hint or ""))
    return checks


def _plain(name: str, exc: SourceError) -> str:
    return exc.message.removeprefix(f"account {name}: ")


def _folder_checks(name: str, account: Account, session: IMAPSession) -> list[Check]:
    from optout_mail.providers import JUNK_NAMES, by_host
    from optout_mail.sources.imap import FolderMissing

    folders = session.folders()
    counts, missing = [], []
    for folder in folders:
        try:
            counts.append(f"{folder} ({session.message_count(folder)} mails)")
        except FolderMissing as exc:
            missing.append(str(exc))
    table = f"[accounts.{name}]"
    checks = [
        Check(
            f"{name}: folders",
            False,
            "; ".join(missing),
            f"correct or remove the folder in `folders` of {table}",
        )
        if missing
        else Check(f"{name}: folders", True, ", ".join(counts))
    ]
    junk = session.junk_folder()
    if junk is not None and junk in folders:
        return [*checks, Check(f"{name}: Junk", True, f"{junk} is watched")]
    watched = [f for f in folders if f in JUNK_NAMES]
    if watched:
        return [*checks, Check(f"{name}: Junk", True, f"{watched[0]} is watched")]
    if junk is None:
        provider = by_host(account.host)
        present = session.all_folders()
        usual = [provider.junk] if provider else []
        junk = next((n for n in [*usual, *JUNK_NAMES] if n in present), None)
    if junk is None:
        return [*checks, Check(f"{name}: Junk", True, "the server has no Junk folder")]
    wanted = [*folders, junk]
    listed = "[" + ", ".join(f'"{f}"' for f in wanted) + "]"
    return [
        *checks,
        Check(
            f"{name}: Junk",
            False,
            f"{junk} is not watched: Meta's mails may land there unseen",
            f"set folders = {listed} in {table}",
        ),
    ]


def rules_check(state: State) -> Check:
    try:
        rule_set = state.rules()
    except RuleError as exc:
        detail = "; ".join([exc.message, *exc.problems[:3]])
        return Check("rule packs", False, detail, exc.hint or "fix the rule files named above")
    return Check("rule packs", True, f"{len(rule_set.packs)} pack(s), {len(rule_set.rules)} rules")


def ledger_check(settings: Settings) -> Check:
    import sqlite3

    from optout_mail.ledger import Ledger

    path = settings.ledger_path
    if not path.exists():
        return Check("ledger", True, f"{path} does not exist yet; the first scan creates it")
    try:
        with Ledger(path) as ledger:
            count = len(ledger.requests(now=now()))
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            result = [row[0] for row in db.execute("PRAGMA quick_check")]
    except LedgerError as exc:
        return Check("ledger", False, exc.message, exc.hint or "")
    except sqlite3.Error as exc:
        result = [str(exc)]
    if result != ["ok"]:
        return Check(
            "ledger",
            False,
            f"{path} is damaged: {'; '.join(result)[:300]}",
            f"stop the daemon, keep a copy of {path}, and recover it: "
            f"sqlite3 {path} .recover | sqlite3 {path.with_suffix('.recovered.sqlite3')}",
        )
    return Check("ledger", True, f"{path}: {count} request(s), integrity ok")


def notification_checks(settings: Settings) -> list[Check]:
    if not settings.notifications.enabled:
        return [Check("notifications", True, "switched off in the config ([notifications])")]
    from optout_mail.desktop import probe

    found = probe()
    if found.bus is None:
        return [Check("notification bus", False, found.problem or "no session bus", NOTIFY_FIX)]
    checks = [Check("notification bus", True, found.bus)]
    if found.server is None:
        fix = (
            "start your desktop's notification service (GNOME and KDE have one; elsewhere "
            "dunst or mako), then try `optout-mail test-notify`"
        )
        return [*checks, Check("notification server", False, found.problem or "", fix)]
    return [*checks, Check("notification server", True, found.server)]


def service_checks(settings: Settings) -> list[Check]:
    from optout_mail import runstatus
    from optout_mail.commands.service import UNIT_NAME, unit_state

    pid = runstatus.daemon_pid(settings.data_dir)
    unit = unit_state()
    if unit.manager is not None:
        where = "installed" if unit.installed else "not installed"
        unit_check = Check(
            "systemd unit", True, f"{where}; no user manager to ask ({unit.manager})"
        )
    elif unit.enabled not in UNIT_FILE_STATES and pid is not None:
        unit_check = Check("systemd unit", True, "not installed; the daemon runs without it")
    elif unit.enabled not in UNIT_FILE_STATES:
        unit_check = Check(
            "systemd unit",
            False,
            f"{UNIT_NAME} is not installed",
            "optout-mail init --force --service (or the README's steps, section systemd)",
        )
    else:
        ok = unit.enabled == "enabled" and unit.active == "active"
        fix = (
            f"systemctl --user enable --now {UNIT_NAME}"
            if unit.enabled != "enabled"
            else f"systemctl --user restart {UNIT_NAME}; see why: journalctl --user -u optout-mail"
        )
        unit_check = Check("systemd unit", ok, f"{unit.enabled}, {unit.active}", "" if ok else fix)
    if pid is None:
        fix = f"systemctl --user start {UNIT_NAME}, or run `optout-mail run`"
        return [unit_check, Check("daemon", False, "not running: no popups arrive", fix)]
    status = runstatus.read(settings.data_dir) or {}
    detail = f"running (pid {pid})"
    if status.get("started_at"):
        detail += f" since {status['started_at']}"
    if status.get("last_scan_at"):
        detail += f", last scan {status['last_scan_at']}"
    return [unit_check, Check("daemon", True, detail)]
