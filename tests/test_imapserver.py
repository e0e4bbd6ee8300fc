"""Tests of the private Dovecot helper (tests/imapserver.py) with real imapclient sessions."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import ssl
import time
from collections.abc import Callable, Iterator

import imapclient
import imapclient.imapclient
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, LoginError
from tests.imapserver import Dovecot, TlsMode, _split_commands, dovecot_available

pytestmark = [
    pytest.mark.imap,
    pytest.mark.skipif(not dovecot_available(), reason="needs Debian dovecot-imapd and openssl"),
]

Connect = Callable[..., IMAPClient]

MESSAGE = (
    b"From: Meta Privacy <noreply@support.facebook.com>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: Your objection request\r\n"
    b"Message-ID: <objection-1@support.facebook.com>\r\n"
    b"Date: Mon, 03 Nov 2025 10:00:00 +0000\r\n"
    b"\r\n"
    b"We have received your request.\r\n"
)


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with Dovecot() as srv:
        for name in ("alice", "bob", "carol", "dave", "erin", "frank", "grace"):
            srv.add_user(name, f"{name}-pw")
        yield srv


@pytest.fixture
def connect(server: Dovecot) -> Iterator[Connect]:
    """Open logged-in clients that are closed (even if kicked or broken) after the test."""
    clients: list[IMAPClient] = []

    def _connect(
        user: str | None = None, tls: TlsMode = "plain", timeout: float = 10.0
    ) -> IMAPClient:
        client = server.client(user, tls=tls, timeout=timeout)
        clients.append(client)
        return client

    yield _connect
    server.thaw()
    for client in clients:
        try:
            client.logout()
        except Exception:  # kicked, frozen or already logged out
            with contextlib.suppress(OSError):
                client.shutdown()


def test_starts_fast_and_close_removes_everything() -> None:
    started = time.monotonic()
    with Dovecot() as srv:
        elapsed = time.monotonic() - started
        root, port = srv.root, srv.port
        assert srv.running
        assert srv.config_file.is_file()
        assert srv.ca_file.is_file()
    assert elapsed < 2.0
    assert not root.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_startup_failure_reports_dovecot_log() -> None:
    with Dovecot(start=False) as srv:
        srv.config_file.write_text(srv.config_file.read_text() + "\nno_such_setting = 1\n")
        with pytest.raises(RuntimeError, match="no_such_setting"):
            srv.start()
        assert not srv.running


def test_plain_login_offers_starttls_idle_condstore(server: Dovecot, connect: Connect) -> None:
    client = connect()
    assert b"STARTTLS" in client.capabilities()
    client.login("alice", "alice-pw")
    caps = client.capabilities()
    assert {b"IDLE", b"CONDSTORE", b"UIDPLUS", b"SPECIAL-USE"} <= set(caps)
    assert client.folder_exists("INBOX")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_implicit_tls_login_with_ca(server: Dovecot, host: str) -> None:
    context = ssl.create_default_context(cafile=str(server.ca_file))
    client = IMAPClient(host, server.tls_port, ssl=True, ssl_context=context, timeout=10)
    try:
        assert isinstance(client.socket(), ssl.SSLSocket)
        client.login("alice", "alice-pw")
    finally:
        client.logout()


def test_starttls_login(server: Dovecot) -> None:
    client = IMAPClient(server.host, server.port, ssl=False, timeout=10)
    try:
        client.starttls(ssl.create_default_context(cafile=str(server.ca_file)))
        assert isinstance(client.socket(), ssl.SSLSocket)
        client.login("alice", "alice-pw")
    finally:
        client.logout()


def test_tls_without_the_ca_is_rejected(server: Dovecot) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(server.host, server.tls_port, ssl=True, timeout=10)


def test_wrong_password_raises_login_error(server: Dovecot, connect: Connect) -> None:
    client = connect()
    with pytest.raises(LoginError):
        client.login("alice", "wrong")


def test_add_user_rejects_passwd_file_syntax(server: Dovecot) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        server.add_user("mallory", "pass:word")


def test_append_and_peek_leave_flags_unchanged(server: Dovecot, connect: Connect) -> None:
    when = dt.datetime(2025, 11, 3, 10, 0, 5, tzinfo=dt.UTC)
    unseen = server.append("bob", "INBOX", MESSAGE, internaldate=when)
    flagged = server.append("bob", "INBOX", MESSAGE, flags=[imapclient.SEEN, imapclient.FLAGGED])
    assert flagged > unseen
    before = server.flags("bob", "INBOX")
    assert imapclient.SEEN not in before[unseen]
    assert {imapclient.SEEN, imapclient.FLAGGED} <= set(before[flagged])

    client = connect("bob")
    client.select_folder("INBOX")  # read-write on purpose: PEEK alone must not set \Seen
    data = client.fetch([unseen, flagged], ["BODY.PEEK[]", "INTERNALDATE"])
    assert data[unseen][b"BODY[]"] == MESSAGE
    assert data[unseen][b"INTERNALDATE"].astimezone(dt.UTC) == when
    client.unselect_folder()

    assert server.flags("bob", "INBOX") == before
    assert server.fetch_raw("bob", "INBOX")[flagged] == MESSAGE


def test_junk_has_special_use(server: Dovecot, connect: Connect) -> None:
    client = connect("alice")
    assert client.find_special_folder(imapclient.imapclient.JUNK) == "Junk"


def test_create_folder_with_and_without_special_use(server: Dovecot, connect: Connect) -> None:
    server.create_folder("carol", "Meta/Replies")
    server.create_folder("carol", "Archive", special_use="\\Archive")
    client = connect("carol")
    folders = {name: flags for flags, _sep, name in client.list_folders()}
    assert "Meta/Replies" in folders
    assert client.find_special_folder(imapclient.imapclient.ARCHIVE) == "Archive"
    assert server.append("carol", "Meta/Replies", MESSAGE) == 1


def test_reset_uidvalidity_changes_it_and_keeps_mail(server: Dovecot, connect: Connect) -> None:
    uid = server.append("dave", "Junk", MESSAGE)
    old = connect("dave").select_folder("Junk", readonly=True)[b"UIDVALIDITY"]
    new = server.reset_uidvalidity("dave", "Junk")
    seen = connect("dave").select_folder("Junk", readonly=True)[b"UIDVALIDITY"]
    assert seen == new != old
    assert list(server.flags("dave", "Junk")) == [uid]


def test_idle_sees_new_mail_and_still_here(server: Dovecot, connect: Connect) -> None:
    client = connect("erin")
    client.select_folder("INBOX", readonly=True)
    client.idle()
    server.append("erin", "INBOX", MESSAGE)
    responses = client.idle_check(timeout=5)
    deadline = time.monotonic() + 5
    while not any(r[1:2] == (b"EXISTS",) for r in responses) and time.monotonic() < deadline:
        responses += client.idle_check(timeout=1)
    assert (1, b"EXISTS") in responses
    started = time.monotonic()
    responses = client.idle_check(timeout=server.idle_notify_interval + 3)
    assert (b"OK", b"Still here") in responses
    assert time.monotonic() - started < server.idle_notify_interval + 1.5
    client.idle_done()


def test_kick_ends_idle_with_bye(server: Dovecot, connect: Connect) -> None:
    client = connect("frank")
    client.select_folder("INBOX", readonly=True)
    client.idle()
    server.kick("frank")
    responses = client.idle_check(timeout=5)
    assert any(r[0] == b"BYE" for r in responses), responses
    with pytest.raises(IMAPClientAbortError):
        client.idle_done()


def test_freeze_makes_a_silent_peer(server: Dovecot, connect: Connect) -> None:
    client = connect("grace", timeout=0.5)
    client.select_folder("INBOX", readonly=True)
    assert server.imap_pids("grace")
    server.freeze("grace")
    with pytest.raises(TimeoutError):
        client.noop()
    server.thaw("grace")


def test_stop_start_keeps_ports_and_mail(server: Dovecot) -> None:
    uid = server.append("alice", "Junk", MESSAGE)
    port, tls_port = server.port, server.tls_port
    server.stop()
    assert not server.running
    with pytest.raises(ConnectionRefusedError):
        IMAPClient(server.host, port, ssl=False, timeout=2)
    server.start()
    assert (server.port, server.tls_port) == (port, tls_port)
    assert uid in server.flags("alice", "Junk")
    assert server.fetch_raw("alice", "Junk")[uid] == MESSAGE


def test_commands_records_client_traffic(server: Dovecot, connect: Connect) -> None:
    server.append("bob", "Junk", MESSAGE)
    server.clear_commands("bob")
    client = connect("bob")
    client.select_folder("Junk", readonly=True)
    uids = client.search(["UID", "1:*", "FROM", "facebookmail.com"])
    client.fetch([1], ["BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)]"])
    client.append("Junk", MESSAGE)
    client.logout()
    assert uids == []
    commands = server.commands("bob")
    assert commands[0] == 'EXAMINE "Junk"'
    assert "UID SEARCH UID 1:* FROM facebookmail.com" in commands
    assert "UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (FROM SUBJECT)])" in commands
    assert 'APPEND "Junk" () {...}' in commands  # the literal itself is skipped
    assert commands[-1] == "LOGOUT"
    assert not any("imapserver-test-helper" in c for c in commands)  # helper sessions hidden
    server.flags("bob", "Junk")
    assert server.commands("bob") == commands
    helper = server.commands("bob", include_helper=True)[len(commands) :]
    assert helper[0] == 'ID ("name" "imapserver-test-helper")'
    server.clear_commands("bob")
    assert server.commands("bob") == []


def test_split_commands_strips_timestamps_and_literals() -> None:
    rawlog = (
        b'1700000000.000001 A1 APPEND "INBOX" {12}\r\n'
        b"1700000000.000002 123 4567\r\n"
        b"1700000000.000002 \r\n"
        b"1700000000.000003 \r\n"
        b"1700000000.000004 A2 IDLE\r\n"
        b"1700000000.000005 DONE\r\n"
        b"1700000000.000006 A3 NOO"
    )
    assert _split_commands(rawlog) == [b'A1 APPEND "INBOX" {...}', b"A2 IDLE", b"DONE"]


def test_oauth2_mode_checks_bearer_tokens_at_the_endpoint() -> None:
    from tests.oauth2server import TokenEndpoint

    with TokenEndpoint() as endpoint, Dovecot(oauth2_url=endpoint.introspection_url) as srv:
        srv.add_user("olga", "olga-pw")
        srv.add_user("pavel", "pavel-pw")
        token = endpoint.issue("olga")
        logins: list[Callable[[IMAPClient], object]] = [
            lambda c: c.oauth2_login("olga", token),
            lambda c: c.oauthbearer_login("olga", token),
            lambda c: c.login("olga", "olga-pw"),  # passwords keep working beside tokens
        ]
        for login in logins:
            client = srv.client()
            assert b"AUTH=XOAUTH2" in client.capabilities()
            login(client)
            client.logout()
        endpoint.expire("olga")
        client = srv.client()
        with pytest.raises(LoginError):
            client.oauth2_login("olga", token)
        client.oauth2_login("olga", endpoint.issue("olga"))  # a fresh one, same connection
        client.logout()
        client = srv.client()
        with pytest.raises(LoginError):  # olga's token does not log in pavel
            client.oauth2_login("pavel", endpoint.issue("olga"))
        client.shutdown()
    assert (token, False) in endpoint.introspections
