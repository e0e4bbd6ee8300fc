"""Shared fixtures: an isolated home for every test, the bundled rules, mail builders, the CLI."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest

from optout_mail.cli import run
from optout_mail.rules import DnsUnavailable, RuleSet, load_rule_set

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own XDG dirs, so no test reads or writes the real ledger."""
    home = tmp_path / "home"
    for var, sub in (
        ("XDG_CONFIG_HOME", ".config"),
        ("XDG_DATA_HOME", ".local/share"),
        ("XDG_STATE_HOME", ".local/state"),
        ("XDG_CACHE_HOME", ".cache"),
    ):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("OPTOUT_MAIL_"):
            monkeypatch.delenv(name)
    return home


@pytest.fixture(autouse=True)
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never ask real DNS for DKIM keys: every lookup at the edge says DNS is down."""

    def unavailable(name: str, timeout: float) -> bytes | None:
        raise DnsUnavailable("no DNS in tests")

    monkeypatch.setattr("optout_mail.dkim_dns.resolve_txt", unavailable)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI configures the root logger as a program would; undo that after each test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def rule_set() -> RuleSet:
    return load_rule_set()


RECEIVED = (
    "from mx-out.facebook.com (mx-out.facebook.com [69.171.232.143]) by mx.example.org "
    "(Postfix) with ESMTPS id 4ZDwAXijAv3yO; Tue, 20 May 2025 09:30:02 +0000"
)
AUTH_PASS = (
    "mx.example.org; dkim=pass header.d={domain} header.s=s2048 header.b=AbCd; "
    "spf=pass smtp.mailfrom=notification@{domain}; dmarc=pass (p=REJECT) header.from={domain}"
)

HONOURED_EN = (
    "Hi Alice,\n\nWe will honour your objection for your public information, such as public "
    "posts and comments.\nThis means that we won't use your public information from Facebook "
    "and Instagram for future development and improvement of generative AI models for our AI "
    "at Meta features and experiences.\nWe will also honour your objection for any other "
    "accounts that you've added to the same Accounts Centre as this account.\n\nThanks,\n"
    "Privacy Operations\nMeta Platforms Ireland Ltd."
)


def make_mail(
    *,
    sender: str = "Facebook <notification@facebookmail.com>",
    to: str = "alice@example.org",
    subject: str = "Your objection request",
    body: str = HONOURED_EN,
    html: str | None = None,
    auth: str | None = "pass",
    message_id: str | None = None,
    date: datetime | None = None,
) -> bytes:
    """A mail as bytes; `auth="pass"` adds a passing Authentication-Results for the sender,
    stamped (like any other `auth`) by the receiving server mx.example.org above its hop."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2025, 5, 20, 9, 30, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="www.facebook.com")
    domain = sender.rpartition("@")[2].rstrip(">")
    if auth == "pass":
        msg["Authentication-Results"] = AUTH_PASS.format(domain=domain)
    elif auth:
        msg["Authentication-Results"] = auth
    if auth:
        msg["Received"] = RECEIVED
    if html is not None and body:
        msg.set_content(body)
        msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    else:
        msg.set_content(body)
    return msg.as_bytes()


@pytest.fixture
def mail() -> Callable[..., bytes]:
    return make_mail


@dataclass
class Result:
    status: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the command line in-process; returns exit status, stdout and stderr."""

    def invoke(*argv: str) -> Result:
        status = run(list(argv))
        captured = capsys.readouterr()
        return Result(int(status), captured.out, captured.err)

    return invoke


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "config.toml"
        path.write_text(text, encoding="utf-8")
        path.chmod(0o600)
        return path

    return write


@pytest.fixture
def eml_dir(tmp_path: Path) -> Path:
    path = tmp_path / "mails"
    path.mkdir()
    return path
