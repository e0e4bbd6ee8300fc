"""`optout-mail scan` against a real, private Dovecot on loopback (tests/imapserver.py)."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.conftest import SAMPLES, Result, make_mail
from tests.imapserver import Dovecot, dovecot_available

from optout_mail.errors import SourceError
from optout_mail.pipeline import ScanSummary
from optout_mail.rules import RuleSet

pytestmark = pytest.mark.imap

if not dovecot_available():
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the IMAP tests: install dovecot-imapd (see .ci/run)")
    pytest.skip("needs Debian dovecot-imapd and openssl", allow_module_level=True)

CLI = Callable[..., Result]
_names = (f"user{i}" for i in itertools.count())

CODE = (
    "Use this code to confirm your email address for your objection: 481526\n"
    "This code will expire in 1 hour."
)
RECEIVED_TP = (
    "Thanks for contacting us. We don't automatically fulfil requests sent using "
    "this form. We review them consistent with your local laws."
)


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with Dovecot() as srv:
        yield srv


@pytest.fixture
def user(server: Dovecot) -> str:
    name = next(_names)
    server.add_user(name, f"pw-{name}-secret")
    return name


@pytest.fixture
def account(server: Dovecot, user: str, write_config: Callable[[str], Path]) -> Callable[..., Path]:
    def config(
        *,
        password: str | None = None,
        security: str = "plain",
        port: int | None = None,
        ca: bool = False,
        folders: list[str] | None = None,
        notify: bool = False,
    ) -> Path:
        lines = [
            f"[notifications]\nenabled = {str(notify).lower()}\n",
            "[accounts.home]",
            f'host = "{server.host}"',
            f"port = {port or (server.tls_port if security == 'tls' else server.port)}",
            f'security = "{security}"',
            f'username = "{user}"',
            f'password = "{password or f"pw-{user}-secret"}"',
            "timeout = 5",
        ]
        if ca:
            lines.append(f'ca_file = "{server.ca_file}"')
        if folders is not None:
            lines.append(f"folders = {json.dumps(folders)}")
        return write_config("\n".join(lines) + "\n")

    return config


def scan(cli: CLI, config: Path, *extra: str) -> dict[str, object]:
    result = cli("--config", str(config), "scan", "--json", *extra)
    assert result.status == 0, result.err
    return json.loads(result.out)  # type: ignore[no-any-return]


def requests(cli: CLI, config: Path) -> list[dict[str, object]]:
    return json.loads(cli("--config", str(config), "requests", "list", "--json").out)  # type: ignore[no-any-return]


def searches(server: Dovecot, user: str) -> list[str]:
    return [c for c in server.commands(user) if c.startswith("UID SEARCH")]


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def fill(server: Dovecot, user: str, noise: int = 0) -> dict[str, int]:
    """A mailbox as people have them: noise, Meta notifications, and a few replies."""
    uids = {}
    for i in range(noise):
        sender = (
            "News <news@example.com>",
            "Facebook <notification@facebookmail.com>",
            "GitHub <noreply@github.com>",
        )[i % 3]
        body = "Someone commented on your post." if "facebook" in sender else f"Newsletter {i}"
        server.append(
            user,
            "INBOX",
            make_mail(sender=sender, subject=f"Note {i}", body=body, to=f"{user}@example.org"),
        )
    sender = "Facebook <notification@facebookmail.com>"
    uids["code"] = server.append(
        user,
        "INBOX",
        make_mail(
            sender=sender, subject="Your confirmation code", body=CODE, to=f"{user}@example.org"
        ),
    )
    uids["honoured"] = server.append(
        user, "INBOX", make_mail(sender=sender, to=f"{user}@example.org")
    )
    uids["tp"] = server.append(
        user,
        "INBOX",
        make_mail(
            sender="Meta Privacy <noreply@support.facebook.com>",
            subject="Your request",
            body=RECEIVED_TP,
            to=f"{user}@example.org",
        ),
        flags=[b"\\Seen"],
    )
    return uids


def test_first_scan_records_each_reply_once_and_a_second_scan_sends_no_search(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    fill(server, user, noise=300)
    config = account()
    flags_before = server.flags(user, "INBOX")
    first = scan(cli, config)
    assert first["recorded"] == 3
    assert first["examined"] < 120  # the server-side search kept the 200 other mails away
    states = {(r["platform"], r["kind"]): r["state"] for r in requests(cli, config)}
    assert states == {
        ("facebook", "objection"): "honoured",
        ("facebook", "third_party"): "received",
    }
    assert searches(server, user), "the first scan searches"
    assert all("FROM" in s and "SINCE" in s for s in searches(server, user))

    server.clear_commands(user)
    second = scan(cli, config)
    assert (second["examined"], second["recorded"]) == (0, 0)
    assert searches(server, user) == [], "nothing arrived, so no SEARCH is sent"
    assert not any(c.startswith("UID FETCH") for c in server.commands(user))
    assert server.flags(user, "INBOX") == flags_before


def test_only_new_mail_is_fetched(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    fill(server, user)
    config = account()
    scan(cli, config)
    server.clear_commands(user)
    new_uid = server.append(user, "INBOX", sample("meta/en/tp-rejected.eml"))
    result = scan(cli, config)
    assert result["examined"] == 1 and result["recorded"] == 1
    (search,) = searches(server, user)
    assert search.startswith(f"UID SEARCH UID {new_uid}:*") and "SINCE" not in search
    fetches = [c for c in server.commands(user) if c.startswith("UID FETCH")]
    assert fetches and all(f"UID FETCH {new_uid} " in f for f in fetches)


def test_uidvalidity_change_rescans_without_duplicates(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    fill(server, user)
    config = account()
    assert scan(cli, config)["recorded"] == 3
    server.reset_uidvalidity(user, "INBOX")
    server.clear_commands(user)
    again = scan(cli, config)
    assert again["examined"] == 3 and again["recorded"] == 0 and again["duplicates"] == 3
    assert any("SINCE" in s for s in searches(server, user))


def test_junk_folder_is_scanned_by_default(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    server.append(user, "Junk", make_mail(to=f"{user}@example.org"))
    result = scan(cli, account())
    folders = {f["folder"]: f["recorded"] for f in result["folders"]}  # type: ignore[index, union-attr]
    assert folders.get("Junk") == 1


def test_mail_in_inbox_and_junk_is_recorded_once(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    data = make_mail(to=f"{user}@example.org", message_id="<twice@www.facebook.com>")
    server.append(user, "INBOX", data)
    server.append(user, "Junk", data)
    result = scan(cli, account())
    assert (result["recorded"], result["duplicates"]) == (1, 1)


def test_flags_are_untouched_even_for_unread_mail(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    fill(server, user)
    before = {f: server.flags(user, f) for f in ("INBOX", "Junk")}
    assert any(not flags for flags in before["INBOX"].values()), "some mail is unread"
    scan(cli, account())
    assert {f: server.flags(user, f) for f in ("INBOX", "Junk")} == before
    commands = server.commands(user)
    assert not any(
        c.startswith(("SELECT", "STORE", "UID STORE", "EXPUNGE", "MOVE", "COPY")) for c in commands
    )
    assert any(c.startswith("EXAMINE") for c in commands)


def test_tls_with_ca_file_and_starttls(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    fill(server, user)
    assert scan(cli, account(security="tls", ca=True))["recorded"] == 3
    assert scan(cli, account(security="starttls", ca=True))["recorded"] == 0


def test_untrusted_certificate_is_one_clear_sentence(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    result = cli("--config", str(account(security="tls")), "scan")
    assert result.status == 1
    assert "the certificate of 127.0.0.1" in result.err and "cannot be trusted" in result.err
    assert "ca_file" in result.err and "Traceback" not in result.err


def test_wrong_password(server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]) -> None:
    result = cli("--config", str(account(password="wrong-guess-xyz")), "scan")
    assert result.status == 1
    assert f"refused the login of {user}" in result.err
    assert "wrong-guess-xyz" not in result.err + result.out


def test_server_down(server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = cli("--config", str(account(port=port)), "scan")
    assert result.status == 1
    assert f"127.0.0.1:{port} refused the connection" in result.err


def test_missing_folder_is_reported_and_the_others_are_scanned(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    fill(server, user)
    config = account(folders=["INBOX", "Does/Not/Exist"])
    result = cli("--config", str(config), "scan", "--json")
    assert result.status == 1
    assert "'Does/Not/Exist' cannot be opened" in result.err
    assert json.loads(result.out)["recorded"] == 3


def test_the_reconciliation_scan_goes_on_past_a_missing_folder_too(
    server: Dovecot, user: str, account: Callable[..., Path], rule_set: RuleSet, tmp_path: Path
) -> None:
    """The daemon's scan (every folder under its watcher's lock) reports and goes on, as
    `scan` does; the missing folder comes first, where it used to stop the scan."""
    from optout_mail import wiring
    from optout_mail.config import load_config
    from optout_mail.ledger import Ledger
    from optout_mail.pipeline import run_source

    fill(server, user)
    settings = load_config(account(folders=["Does/Not/Exist", "INBOX"]))
    (source,) = wiring.account_sources(settings, rule_set)
    locked: list[str] = []

    def lock_for(folder: str) -> threading.Lock:
        locked.append(folder)
        return threading.Lock()

    summary = ScanSummary()
    with Ledger(tmp_path / "ledger.sqlite3") as ledger, pytest.raises(SourceError) as raised:
        run_source(
            source.locked(lock_for),
            rules=rule_set,
            ledger=ledger,
            clock=lambda: datetime.now(UTC),
            summary=summary,
        )
    assert "'Does/Not/Exist' cannot be opened" in raised.value.message
    assert "the other folders were scanned" in (raised.value.hint or "")
    assert locked == ["Does/Not/Exist", "INBOX"]
    assert summary.total("recorded") == 3
    assert source.problems == [raised.value.message.removeprefix("account home: ")]


def test_a_second_account_failing_does_not_stop_the_first(
    server: Dovecot, user: str, cli: CLI, write_config: Callable[[str], Path]
) -> None:
    fill(server, user)
    config = write_config(
        f'[accounts.good]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword = "pw-{user}-secret"\n'
        f'[accounts.bad]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "plain"\n'
        f'username = "{user}"\npassword = "nope"\n'
        "[notifications]\nenabled = false\n"
    )
    result = cli("--config", str(config), "scan", "--json")
    assert result.status == 1
    assert json.loads(result.out)["recorded"] == 3
    assert "1 of 2 accounts could not be scanned" in result.err


def test_requests_are_dated_by_the_mail(
    server: Dovecot, user: str, cli: CLI, account: Callable[..., Path]
) -> None:
    when = datetime(2025, 5, 20, 9, 30, tzinfo=UTC)
    server.append(user, "INBOX", make_mail(to=f"{user}@example.org", date=when))
    config = account()
    scan(cli, config)
    (request,) = requests(cli, config)
    assert str(request["filed_at"]).startswith("2025-05-20")
    assert request["account"] == f"{user}@example.org"


def test_password_from_a_command(
    server: Dovecot, user: str, cli: CLI, write_config: Callable[[str], Path]
) -> None:
    fill(server, user)
    base = (
        f'[notifications]\nenabled = false\n[accounts.home]\nhost = "127.0.0.1"\n'
        f'port = {server.port}\nsecurity = "plain"\nusername = "{user}"\n'
    )
    good = write_config(base + f'password_command = ["printf", "pw-{user}-secret\\nsecond line"]\n')
    assert scan(cli, good)["recorded"] == 3
    failing = write_config(base + 'password_command = "false"\n')
    result = cli("--config", str(failing), "scan")
    assert result.status == 1
    assert "password_command 'false' failed with status 1" in result.err
