"""A private, throw-away Dovecot 2.3 IMAP server for the test suite.

`Dovecot` owns one temp directory holding the generated config, a self-signed CA and server
certificate, the passwd-file users, their Maildirs, rawlogs and the log; `close()` kills the
process group and removes it all. Nothing in /etc or /var is read or written, no systemd.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from imapclient import IMAPClient

__all__ = ["HELPER_ID", "Dovecot", "ImapUser", "TlsMode", "dovecot_available"]

TlsMode = Literal["plain", "starttls", "implicit"]

#: Sent as IMAP ``ID`` name by the helper's own sessions so `Dovecot.commands()` can skip them.
HELPER_ID = "imapserver-test-helper"

_SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
_DEBIAN_INTERNAL_USER = "dovecot"  # created by the dovecot-core package
_DEBIAN_LOGIN_USER = "dovenull"  # created by the dovecot-core package
_ROOT_MAIL_USER = "nobody"  # owner of the Maildirs when the tests run as root
_START_TIMEOUT = 10.0
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")
_TIMESTAMP = re.compile(rb"^\d+\.\d+ ")


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SBIN_PATH)


def dovecot_available() -> bool:
    """True when the Dovecot binaries (Debian ``dovecot-imapd``) and ``openssl`` are installed."""
    if not (_which("dovecot") and _which("doveadm") and _which("openssl")):
        return False
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_DEBIAN_INTERNAL_USER)
            pwd.getpwnam(_DEBIAN_LOGIN_USER)
            pwd.getpwnam(_ROOT_MAIL_USER)
        except KeyError:
            return False
    else:
        try:
            pwd.getpwuid(os.geteuid())
            grp.getgrgid(os.getegid())
        except KeyError:  # Dovecot needs names for default_internal_user/_group
            return False
    return True


@dataclass(frozen=True)
class ImapUser:
    """One passwd-file user of the private server."""

    name: str
    password: str
    uid: int
    gid: int
    home: Path

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(args: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed with {proc.returncode}:\n{proc.stdout}{proc.stderr}"
        )
    return proc.stdout


def _make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """Create a CA and a "localhost"/127.0.0.1 server certificate with the openssl CLI.

    Returns (ca.pem, server.pem, server.key). EC keys keep this at a few tens of ms.
    """
    openssl = _which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is not installed")
    directory.mkdir(mode=0o700, exist_ok=True)
    ca_key, ca_pem = directory / "ca.key", directory / "ca.pem"
    key, csr, pem = directory / "server.key", directory / "server.csr", directory / "server.pem"
    ext = directory / "server.ext"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(
        [
            openssl,
            "req",
            "-x509",
            *ec,
            "-keyout",
            str(ca_key),
            "-out",
            str(ca_pem),
            "-days",
            "3",
            "-subj",
            "/CN=optout-mail test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]
    )
    _run(
        [
            openssl,
            "req",
            "-new",
            *ec,
            "-keyout",
            str(key),
            "-out",
            str(csr),
            "-subj",
            "/CN=localhost",
        ]
    )
    ext.write_text(
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectAltName = DNS:localhost,IP:127.0.0.1\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid,issuer\n"
    )
    _run(
        [
            openssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca_pem),
            "-CAkey",
            str(ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(pem),
        ]
    )
    return ca_pem, pem, key


def _split_commands(data: bytes) -> list[bytes]:
    """Split a rawlog ``.in`` file into command lines, skipping literal payloads.

    Dovecot prefixes every line with ``<unix time>.<usec> ``; that is removed first.
    """
    stream = b"\n".join(_TIMESTAMP.sub(b"", line, count=1) for line in data.split(b"\n"))
    out: list[bytes] = []
    current = b""
    pos = 0
    while pos < len(stream):
        end = stream.find(b"\n", pos)
        if end < 0:  # incomplete last line (still being written)
            break
        line = stream[pos:end].rstrip(b"\r")
        pos = end + 1
        literal = _LITERAL.search(line)
        if literal:
            current += line[: literal.start()] + b"{...}"
            pos += int(literal.group(1))
            continue
        out.append(current + line)
        current = b""
    return out


class Dovecot:
    """A private Dovecot serving 127.0.0.1: plain+STARTTLS on `port`, implicit TLS on `tls_port`.

    Use as a context manager or call `close()`. Users come from `add_user()`; every user has
    INBOX and ``Junk`` (special-use ``\\Junk``). Client->server traffic of every post-login
    session is recorded (Dovecot ``rawlog_dir``), see `commands()`.

    With `oauth2_url` (an RFC 7662 introspection endpoint, e.g. `tests.oauth2server`) the
    server also offers ``AUTH=XOAUTH2`` and ``AUTH=OAUTHBEARER``: an ``oauth2`` passdb checks
    each bearer token there. Passwords keep working (the helpers below log in with them).
    """

    host = "127.0.0.1"

    def __init__(
        self, *, idle_notify_interval: int = 2, start: bool = True, oauth2_url: str | None = None
    ) -> None:
        dovecot, doveadm = _which("dovecot"), _which("doveadm")
        if dovecot is None or doveadm is None:
            raise RuntimeError("Dovecot is not installed (Debian package dovecot-imapd)")
        self._dovecot = dovecot
        self._doveadm = doveadm
        self.idle_notify_interval = idle_notify_interval
        self.oauth2_url = oauth2_url
        self.as_root = os.geteuid() == 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._users: dict[str, ImapUser] = {}
        self._extra_mailboxes: dict[str, str] = {}
        self._command_marks: dict[Path, int] = {}
        self._frozen: set[int] = set()
        self._pick_ports()
        self.root = Path(tempfile.mkdtemp(prefix="optout-dovecot-"))
        # Last resort when close() is never called (crash, ^C): runs at GC or interpreter exit.
        self._pgid: list[int] = []
        self._finalizer = weakref.finalize(self, _emergency_cleanup, self._pgid, self.root)
        try:
            self._prepare_dirs()
            self.ca_file, self._cert, self._key = _make_certificates(self.root / "tls")
            self._write_passwd()
            self._write_oauth2()
            self._write_config()
            if start:
                self._first_start()
        except BaseException:
            self.close()
            raise

    def _pick_ports(self) -> None:
        self.port = _free_port()
        self.tls_port = _free_port()
        while self.tls_port == self.port:
            self.tls_port = _free_port()
        self._instance_name = f"dovecot-test-{self.port}"  # shows in ps, log and proctitles

    def _first_start(self) -> None:
        """start(), retrying on fresh ports if another process grabbed a picked one meanwhile."""
        for attempt in range(3):
            try:
                self.start()
                return
            except RuntimeError as exc:
                if attempt == 2 or "Address already in use" not in str(exc):
                    raise
                self._pick_ports()
                self._write_config()

    # ------------------------------------------------------------------ layout & config

    @property
    def config_file(self) -> Path:
        return self.root / "dovecot.conf"

    @property
    def log_file(self) -> Path:
        return self.root / "dovecot.log"

    @property
    def _passwd_file(self) -> Path:
        return self.root / "users.passwd"

    def _mail_owner(self) -> tuple[int, int]:
        if self.as_root:
            entry = pwd.getpwnam(_ROOT_MAIL_USER)
            return entry.pw_uid, entry.pw_gid
        return os.geteuid(), os.getegid()

    def _prepare_dirs(self) -> None:
        # Dovecot's unprivileged users (dovecot, dovenull, nobody) must traverse the tree.
        self.root.chmod(0o755)
        for name in ("run", "state", "mail", "rawlog"):
            (self.root / name).mkdir(mode=0o755)

    @property
    def _oauth2_file(self) -> Path:
        return self.root / "oauth2.conf"

    def _write_oauth2(self) -> None:
        """The oauth2 passdb's settings: every token is checked by POSTing it to `oauth2_url`
        (RFC 7662 introspection); the answer must say active = true and name the user."""
        if not self.oauth2_url:
            return
        self._oauth2_file.write_text(
            "introspection_mode = post\n"
            f"introspection_url = {self.oauth2_url}\n"
            "force_introspection = yes\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
            "timeout_msecs = 5000\n"
        )
        self._oauth2_file.chmod(0o644)

    def _write_passwd(self) -> None:
        lines = [
            f"{u.name}:{{PLAIN}}{u.password}:{u.uid}:{u.gid}::{u.home}::\n"
            for u in self._users.values()
        ]
        tmp = self._passwd_file.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.chmod(0o644)
        # Dovecot re-reads the file when its mtime (in whole seconds) or inode changes; two
        # users added within one second would otherwise leave the second one unknown.
        self._passwd_generation = getattr(self, "_passwd_generation", 0) + 1
        stamp = time.time() + self._passwd_generation
        os.utime(tmp, (stamp, stamp))
        tmp.replace(self._passwd_file)  # atomic

    def _write_config(self) -> None:
        r = self.root
        if self.as_root:
            internal_user, login_user = _DEBIAN_INTERNAL_USER, _DEBIAN_LOGIN_USER
            internal_group = _DEBIAN_INTERNAL_USER
            chroot = unprivileged = ""
        else:
            internal_user = login_user = pwd.getpwuid(os.geteuid()).pw_name
            internal_group = grp.getgrgid(os.getegid()).gr_name
            # Dovecot cannot chroot or switch users without root.
            chroot = "  chroot =\n"
            unprivileged = textwrap.dedent("""\
                service auth {
                  user = $default_internal_user
                }
                service auth-worker {
                  user = $default_internal_user
                }
                """)
        mail_uid, _ = self._mail_owner()
        extra = "".join(
            f"  mailbox {_quote(name)} {{\n    special_use = {use}\n  }}\n"
            for name, use in self._extra_mailboxes.items()
        )
        # oauth2 mode: passwords for PLAIN/LOGIN, bearer tokens for XOAUTH2/OAUTHBEARER.
        password_mechanisms = oauth2 = ""
        if self.oauth2_url:
            password_mechanisms = "  mechanisms = plain login\n"
            oauth2 = (
                "passdb {\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                f"  args = {self._oauth2_file}\n}}\n"
            )
        dh = Path("/usr/share/dovecot/dh.pem")
        dh_line = f"ssl_dh = <{dh}\n" if dh.exists() else ""
        config = f"""\
# Generated by tests/imapserver.py - private test instance, do not edit.
base_dir = {r}/run
state_dir = {r}/state
instance_name = {self._instance_name}
log_path = {self.log_file}
log_timestamp = "%Y-%m-%d %H:%M:%S "
protocols = imap
listen = 127.0.0.1
shutdown_clients = yes
verbose_proctitle = yes
auth_verbose = yes
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2_url else ""}
disable_plaintext_auth = no
# No 2 s delay after a failed login (the anvil auth penalty is switched off below).
auth_failure_delay = 0
default_internal_user = {internal_user}
default_login_user = {login_user}
default_internal_group = {internal_group}
first_valid_uid = {min(mail_uid, 500)}
mail_location = maildir:~/Maildir
ssl = yes
ssl_cert = <{self._cert}
ssl_key = <{self._key}
{dh_line}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self._passwd_file}
{password_mechanisms}}}
{oauth2}userdb {{
  driver = passwd-file
  args = username_format=%u {self._passwd_file}
}}

namespace inbox {{
  inbox = yes
  separator = /
  mailbox Junk {{
    special_use = \\Junk
    auto = subscribe
  }}
{extra}}}

protocol imap {{
  imap_idle_notify_interval = {self.idle_notify_interval} secs
  mail_max_userip_connections = 100
  rawlog_dir = {r}/rawlog/%u
}}

service imap-login {{
{chroot}  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}

service anvil {{
{chroot}  # Unreachable socket = no auth penalty: a wrong-password test must not slow later logins.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{unprivileged}"""
        self.config_file.write_text(config)

    # ------------------------------------------------------------------ process control

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start Dovecot (again, on the same ports and mail) and wait until it accepts logins."""
        if self.running:
            return
        self._frozen.clear()
        with open(self.root / "dovecot.stderr", "ab") as stderr:
            self._proc = subprocess.Popen(
                [self._dovecot, "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # own process group: close() can kill every child
            )
        self._pgid[:] = [self._proc.pid]
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                self._proc = None
                raise RuntimeError(f"dovecot exited during startup:\n{self.log_tail()}")
            if self._greets():
                return
            if time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(
                    f"dovecot did not accept connections within {_START_TIMEOUT:.0f} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.02)

    def _greets(self) -> bool:
        """The plain listener sends its greeting (imap-login waits for auth to be ready).

        The master binds every listener before it starts any child, so the TLS port is up too.
        """
        try:
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                greeting = sock.recv(4096)
                if greeting.startswith(b"* OK"):
                    sock.sendall(b"z LOGOUT\r\n")
                    with contextlib.suppress(OSError):
                        sock.recv(4096)
                    return True
        except OSError:
            pass
        return False

    def stop(self) -> None:
        """Stop Dovecot, disconnecting all clients; mail, users and ports are kept."""
        if self._proc is None:
            return
        self._thaw_all()
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        self._kill()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        self._pgid.clear()
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the whole process group
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)

    def close(self) -> None:
        """Stop everything and remove the temp directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
        self._finalizer.detach()

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for path in (self.log_file, self.root / "dovecot.stderr"):
            with contextlib.suppress(OSError):
                parts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(parts) or "(dovecot wrote no log)"

    def log_lines(self) -> list[str]:
        """All lines of Dovecot's own log (logins, disconnects, errors)."""
        try:
            return self.log_file.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def doveadm(self, *args: str, check: bool = True) -> str:
        """Run ``doveadm -c CONF ARGS`` against this instance and return its stdout."""
        return _run([self._doveadm, "-c", str(self.config_file), *args], check=check)

    # ------------------------------------------------------------------ users

    def add_user(self, name: str, password: str) -> ImapUser:
        """Add (or replace) a user; takes effect immediately, also while running."""
        for value in (name, password):
            if not value or any(c in value for c in ":\n\r\0"):
                raise ValueError(f"unsupported character in user name or password: {value!r}")
        if "/" in name or name in {".", ".."}:
            raise ValueError(f"unsupported user name: {name!r}")
        uid, gid = self._mail_owner()
        home = self.root / "mail" / name
        rawlog = self.root / "rawlog" / name
        for directory in (home, rawlog):
            directory.mkdir(mode=0o700, exist_ok=True)
            os.chown(directory, uid, gid)
        user = ImapUser(name=name, password=password, uid=uid, gid=gid, home=home)
        self._users[name] = user
        self._write_passwd()
        if self.running:
            self._await_login(name, password)
        return user

    def _await_login(self, name: str, password: str, timeout: float = 5.0) -> None:
        # The auth process notices a changed passwd-file only on its next check (about once a
        # second), so a freshly added user can be refused for a moment.
        deadline = time.monotonic() + timeout
        while True:
            out = self.doveadm("auth", "test", name, password, check=False)
            if "auth succeeded" in out or time.monotonic() > deadline:
                return
            time.sleep(0.1)

    def user(self, name: str) -> ImapUser:
        return self._users[name]

    @property
    def users(self) -> dict[str, ImapUser]:
        return dict(self._users)

    # ------------------------------------------------------------------ clients

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this server's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(
        self,
        user: str | None = None,
        *,
        tls: TlsMode = "plain",
        timeout: float = 10.0,
    ) -> IMAPClient:
        """An IMAPClient connected with `tls`; logged in when `user` is given."""
        if tls == "implicit":
            client = IMAPClient(
                self.host,
                self.tls_port,
                ssl=True,
                ssl_context=self.ssl_context(),
                timeout=timeout,
            )
        else:
            client = IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
            if tls == "starttls":
                client.starttls(self.ssl_context())
        if user is not None:
            client.login(user, self._users[user].password)
        return client

    @contextlib.contextmanager
    def _admin(self, user: str) -> Iterator[IMAPClient]:
        """A helper session, tagged with ID so `commands()` leaves it out."""
        client = self.client(user)
        try:
            client.id_({"name": HELPER_ID})
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.logout()

    # ------------------------------------------------------------------ mail helpers

    def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Iterable[bytes | str] = (),
        internaldate: dt.datetime | None = None,
    ) -> int:
        """APPEND `raw` to `folder` of `user`; returns the new message's UID."""
        with self._admin(user) as client:
            response = client.append(folder, raw, flags=tuple(flags), msg_time=internaldate)
        match = _APPENDUID.search(response)
        if match is None:
            raise RuntimeError(f"no APPENDUID in {response!r}")
        return int(match.group(2))

    def flags(self, user: str, folder: str) -> dict[int, tuple[bytes, ...]]:
        """UID -> flags of every message in `folder` (EXAMINE; ``\\Recent`` is left out)."""
        with self._admin(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            if not uids:
                return {}
            data = client.fetch(uids, ["FLAGS"])
        return {
            uid: tuple(f for f in item[b"FLAGS"] if f != b"\\Recent") for uid, item in data.items()
        }

    def fetch_raw(self, user: str, folder: str) -> dict[int, bytes]:
        """UID -> full message (BODY.PEEK[], flags stay untouched)."""
        with self._admin(user) as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            if not uids:
                return {}
            data = client.fetch(uids, ["BODY.PEEK[]"])
        return {uid: bytes(item[b"BODY[]"]) for uid, item in data.items()}

    def uidvalidity(self, user: str, folder: str) -> int:
        with self._admin(user) as client:
            status = client.folder_status(folder, [b"UIDVALIDITY"])
        return int(status[b"UIDVALIDITY"])

    def create_folder(self, user: str, name: str, special_use: str | None = None) -> None:
        """CREATE and SUBSCRIBE folder `name` (``/`` separates levels) for `user`.

        Dovecot 2.3 ignores RFC 6154 ``CREATE ... (USE (...))``, so a `special_use` such as
        ``"\\Junk"`` is put into the generated config (namespace ``mailbox`` block) and Dovecot
        is reloaded: it then applies to that folder name for every user, in sessions that
        start afterwards.
        """
        if special_use is not None:
            if not re.fullmatch(r"\\[A-Za-z]+", special_use):
                raise ValueError(f"not a special-use flag: {special_use!r}")
            if self._extra_mailboxes.get(name) != special_use:
                self._extra_mailboxes[name] = special_use
                self._write_config()
                self.reload()
        with self._admin(user) as client:
            client.create_folder(name)
            client.subscribe_folder(name)
        if special_use is not None and self.running:
            self._await_special_use(user, name, special_use)

    def _await_special_use(self, user: str, name: str, special_use: str) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            with self._admin(user) as client:
                listed = {folder: flags for flags, _sep, folder in client.list_folders()}
            if special_use.encode() in listed.get(name, ()):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} did not get {special_use} after reload:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def reload(self) -> None:
        """Make the master re-read the generated config (SIGHUP); existing sessions keep theirs."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGHUP)

    def reset_uidvalidity(self, user: str, folder: str) -> int:
        """Give `folder` a new UIDVALIDITY (messages stay, as after a server-side rebuild).

        Uses ``doveadm mailbox update --uid-validity``; returns the new value.
        """
        old = self.uidvalidity(user, folder)
        new = max(old + 1, int(time.time()))
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(new), folder)
        if self.uidvalidity(user, folder) == old:
            raise RuntimeError(f"UIDVALIDITY of {user}/{folder} did not change")
        return new

    # ------------------------------------------------------------------ connections

    def kick(self, user: str) -> None:
        """Disconnect every session of `user` (server sends BYE, then closes)."""
        self._thaw_all()
        self.doveadm("kick", user)

    def imap_pids(self, user: str) -> list[int]:
        """PIDs of the post-login ``imap`` processes serving `user`."""
        pids: list[int] = []
        prefix = f"{self._instance_name}/imap [{user} ".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if not cmdline.startswith(prefix):
                    continue
                if os.getpgid(int(entry.name)) != (self._proc.pid if self._proc else -1):
                    continue
            except OSError:
                continue
            pids.append(int(entry.name))
        return sorted(pids)

    def freeze(self, user: str) -> list[int]:
        """SIGSTOP `user`'s imap processes: the TCP peer stays up but never answers."""
        pids = self.imap_pids(user)
        if not pids:
            raise RuntimeError(f"{user} has no imap session to freeze")
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
            self._frozen.add(pid)
        return pids

    def thaw(self, user: str | None = None) -> None:
        """SIGCONT what `freeze()` stopped (all users when `user` is None)."""
        if user is None:
            self._thaw_all()
            return
        for pid in self.imap_pids(user):
            if pid in self._frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
                self._frozen.discard(pid)

    def _thaw_all(self) -> None:
        for pid in self._frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self._frozen.clear()

    # ------------------------------------------------------------------ recorded commands

    def _rawlog_files(self, user: str) -> list[Path]:
        """The user's client->server rawlogs, one per session, oldest session first."""

        def started(path: Path) -> tuple[float, str]:
            with contextlib.suppress(OSError, ValueError), path.open("rb") as file:
                return float(file.readline().split(b" ", 1)[0]), path.name
            return float("inf"), path.name

        return sorted((self.root / "rawlog" / user).glob("*.in"), key=started)

    def commands(self, user: str, *, include_helper: bool = False) -> list[str]:
        """Commands clients sent after logging in as `user`, without tags, oldest first.

        E.g. ``['EXAMINE INBOX', 'UID SEARCH UID 5:*', 'LOGOUT']``; literals show as ``{...}``,
        IDLE's ``DONE`` appears as is. Pre-login traffic (CAPABILITY, STARTTLS, LOGIN) is not
        recorded. Sessions of this helper are left out unless `include_helper`. Lines appear
        as soon as Dovecot reads them (also during a live session); sessions are listed one
        after the other in the order they started, not interleaved.
        """
        result: list[str] = []
        for path in self._rawlog_files(user):
            try:
                data = path.read_bytes()
            except OSError:
                continue
            session = _split_commands(data)
            if not include_helper and any(HELPER_ID.encode() in line for line in session):
                continue
            start = self._command_marks.get(path, 0)
            session = _split_commands(data[start:]) if start else session
            for line in session:
                text = line.decode("utf-8", errors="replace")
                _tag, sep, rest = text.partition(" ")
                result.append(rest if sep and text.upper() != "DONE" else text)
        return result

    def clear_commands(self, user: str) -> None:
        """Forget what `commands()` has recorded for `user` so far."""
        for path in self._rawlog_files(user):
            with contextlib.suppress(OSError):
                self._command_marks[path] = path.stat().st_size


def _emergency_cleanup(pgid: list[int], root: Path) -> None:
    for pid in pgid:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
