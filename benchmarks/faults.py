"""Faults injected into a real `optout-mail run` against a private Dovecot; what survives.

For each fault the script makes N runs. A run appends Meta replies (samples/meta/en/received.eml,
re-dated to now, each with its own Message-ID, address and request number, so every mail is a
request of its own and pops up once), injects the fault, and times how long the next mail takes
to reach the ledger after the fault ended. At the end of a fault it counts LOST mails (appended,
never recorded) and DOUBLED ones (a Message-ID recorded twice, or a popup shown twice for one
mail, counted from the private notification server). Prints a markdown table, writes
benchmarks/results/faults.json, exits 0 only if every fault was survived with nothing lost or
doubled.

    .venv/bin/python benchmarks/faults.py            # 5 runs per fault, about 10 minutes
    .venv/bin/python benchmarks/faults.py --quick    # 2 runs per fault, about 4-5 minutes
    .venv/bin/python benchmarks/faults.py --only stall --runs 1

Needs Debian dovecot-imapd, dbus-daemon and python3-dbusmock (as the daemon tests do); the
disk-full fault needs root for `mount -t tmpfs` (else a loop file system, else it is skipped).
Every wait is bounded. FAULTS_LOG=1 prints the end of the daemon log after every fault (it is
printed anyway for a fault that was not survived cleanly).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.daemonrun import why_not  # noqa: E402
from tests.imapserver import Dovecot  # noqa: E402
from tests.notification_daemon import NotificationServer  # noqa: E402

SAMPLES = ROOT / "samples"
RESULTS = ROOT / "benchmarks" / "results" / "faults.json"
TEMPLATE = (SAMPLES / "meta" / "en" / "received.eml").read_bytes()
TEMPLATE_REQUEST = b"7730461829"
RECORD_WAIT = 45.0  # the longest a mail may take to be recorded after a fault ended
READY = "up to date, waiting for new mail"
POPUP_ADDRESS = re.compile(r"\(([\w.+-]+@example\.net)\)")
PY = sys.executable


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- mails

_counter = iter(range(1, 10**9))


def meta_mail(tag: str) -> tuple[str, bytes]:
    """A fresh Instagram "we received your objection" for an address and request of its own."""
    n = next(_counter)
    msgid = f"<fault-{tag}-{n}-{os.getpid()}@www.instagram.com>"
    address = f"{tag}-{n}@example.net"
    head, sep, body = TEMPLATE.partition(b"\n\n")
    lines = []
    for line in head.split(b"\n"):
        if line.startswith(b"Date:"):
            line = b"Date: " + format_datetime(datetime.now(UTC)).encode()
        elif line.startswith(b"Message-ID:"):
            line = b"Message-ID: " + msgid.encode()
        elif line.startswith(b"To:"):
            line = b"To: " + address.encode()
        lines.append(line)
    body = body.replace(TEMPLATE_REQUEST, str(8_000_000_000 + n).encode())
    return msgid, b"\n".join(lines) + sep + body


def hostile_mails() -> list[tuple[str, bytes]]:
    """A 20 MB mail, a 2000-deep MIME nest, a mail with 5000 headers: all from Meta's sender
    with its Authentication-Results, so that the IMAP search picks them and they are parsed."""
    _, template = meta_mail("hostile")
    head = template.partition(b"\nMIME-Version:")[0].replace(b"@www.instagram.com>", b"-x@h>")
    big = head.replace(b"-x@h>", b"-big@h>") + b"\nMIME-Version: 1.0\n\n"
    big += (b"We received your objection. " * 2 + b"\n") * (20 * 1024 * 1024 // 57)
    depth = 2000
    parts = [head.replace(b"-x@h>", b"-nest@h>"), b"\nMIME-Version: 1.0\n"]
    parts.append(b'Content-Type: multipart/mixed; boundary="b0"\n\n')
    for level in range(1, depth):
        parts.append(
            f'--b{level - 1}\nContent-Type: multipart/mixed; boundary="b{level}"\n\n'.encode()
        )
    parts.append(
        f"--b{depth - 1}\nContent-Type: text/plain\n\nWe received your objection.\n".encode()
    )
    parts.extend(f"--b{level}--\n".encode() for level in reversed(range(depth)))
    many = head.replace(b"-x@h>", b"-headers@h>") + b"\n"
    many += b"".join(f"X-Filler-{i}: value {i}\n".encode() for i in range(5000))
    many += b"MIME-Version: 1.0\n\nWe received your objection.\n"
    return [("20 MB", big), ("2000-deep MIME", b"".join(parts)), ("5000 headers", many)]


# ---------------------------------------------------------------------------------- the rig


class Rig:
    """One fault's world: a Dovecot user, a data dir, a notification server, the daemon."""

    def __init__(self, server: Dovecot, name: str, popups: NotificationServer) -> None:
        self.server = server
        self.tag = name
        self.user = f"{name}-{os.getpid()}"
        server.add_user(self.user, f"pw-{self.user}")
        self.popups = popups
        self.tmp = Path(tempfile.mkdtemp(prefix=f"optout-fault-{name}-"))
        self.data = self.tmp / "data"
        self.config = self.tmp / "config.toml"
        self.log = self.tmp / "daemon.log"
        self.log.touch()
        self.sent: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, **popups.env}
        for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_STATE_HOME", "state")):
            (self.tmp / sub).mkdir()
            self.env[var] = str(self.tmp / sub)
        self.env.pop("NOTIFY_SOCKET", None)
        self.env.pop("WATCHDOG_USEC", None)
        self.write_config()

    def write_config(self) -> None:
        self.config.write_text(
            f'data_dir = "{self.data}"\npoll_interval = 300\n'
            f'[accounts.home]\nhost = "127.0.0.1"\nport = {self.server.port}\n'
            f'security = "plain"\nusername = "{self.user}"\npassword = "pw-{self.user}"\n'
            'timeout = 5\ntrusted_authserv_ids = ["mx.example.org"]\n'
        )

    @property
    def ledger(self) -> Path:
        return self.data / "ledger.sqlite3"

    # -- mail

    def append(self, count: int = 1) -> list[str]:
        ids = []
        for _ in range(count):
            msgid, raw = meta_mail(self.tag)
            self.server.append(self.user, "INBOX", raw)
            self.sent.append(msgid)
            ids.append(msgid)
        return ids

    def recorded(self) -> Counter[str] | None:
        """Message-ID -> events, read-only; None while the file cannot be read."""
        if not self.ledger.exists() or self.ledger.stat().st_size == 0:
            return None
        try:
            uri = f"file:{self.ledger}?mode=ro"
            with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=2)) as db:
                rows = db.execute("SELECT message_id FROM events").fetchall()
        except sqlite3.Error:
            return None
        return Counter(row[0] for row in rows)

    def wait_recorded(self, ids: list[str], since: float, timeout: float = RECORD_WAIT) -> float:
        """Seconds from `since` (monotonic) until every one of `ids` is in the ledger; inf when
        not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.recorded()
            if seen is not None and all(seen[i] for i in ids):
                return time.monotonic() - since
            time.sleep(0.05)
        return float("inf")

    # -- processes

    def cli(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "-m", "optout_mail", "--config", str(self.config), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def scan(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                [PY, "-m", "optout_mail", "--config", str(self.config), "scan"],
                env=self.env,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )

    def start(self, *, wait: bool = True, env: dict[str, str] | None = None) -> None:
        before = self.count(READY)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [PY, "-m", "optout_mail", "--config", str(self.config), "run"],
                env={**self.env, **(env or {})},
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        if wait:
            self.wait_log(READY, before + 2)

    def count(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text)

    def wait_log(self, text: str, count: int, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(text) >= count:
                return True
            if self.proc is not None and self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                return proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
                return -9
        return proc.returncode

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    # -- counting

    def popup_counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for call in self.popups.received(timeout=0):
            match = POPUP_ADDRESS.search(call.summary + " " + call.body)
            if match and match[1].startswith(f"{self.tag}-"):
                counts[match[1]] += 1
        return counts

    def close(self) -> None:
        self.stop()
        self.server.thaw()
        self.server.start()
        subprocess.run(["rm", "-rf", str(self.tmp)], check=False)


@dataclass
class Run:
    seconds: float
    ok: bool = True
    note: str = ""


@dataclass
class FaultResult:
    fault: str
    runs: list[Run] = field(default_factory=list)
    sent: int = 0
    lost: int = 0
    doubled_events: int = 0
    doubled_popups: int = 0
    skipped: str = ""
    error: str = ""

    @property
    def doubled(self) -> int:
        return self.doubled_events + self.doubled_popups

    @property
    def survived(self) -> bool:
        finite = all(r.ok and r.seconds != float("inf") for r in self.runs)
        return not self.skipped and not self.error and bool(self.runs) and finite

    @property
    def good(self) -> bool:
        return self.survived and self.lost == 0 and self.doubled == 0


# ---------------------------------------------------------------------------------- faults

Fault = Callable[[Rig, int], Run]


def kicks(rig: Rig, run: int) -> Run:
    if run == 0:
        rig.start()
    rig.wait_recorded(rig.append(2), time.monotonic())
    for _ in range(10):  # each kick ends sessions that are back from the previous one
        ready = rig.count(READY)
        rig.server.kick(rig.user)
        rig.wait_log(READY, ready + 2, timeout=15)
    ended = time.monotonic()
    ids = rig.append()
    return Run(rig.wait_recorded(ids, ended), rig.alive())


def server_restart(rig: Rig, run: int) -> Run:
    if run == 0:
        rig.start()
    rig.wait_recorded(rig.append(2), time.monotonic())
    rig.server.stop()
    time.sleep(5)
    rig.server.start()
    ended = time.monotonic()
    ids = rig.append()
    return Run(rig.wait_recorded(ids, ended), rig.alive())


def stall(rig: Rig, run: int) -> Run:
    if run == 0:
        rig.start()
    rig.wait_recorded(rig.append(2), time.monotonic())
    rig.server.freeze(rig.user)
    ids = rig.append()  # a new helper session: another, live imap process
    time.sleep(20)
    early = rig.wait_recorded(ids, time.monotonic(), timeout=0.1) != float("inf")
    rig.server.thaw(rig.user)
    ended = time.monotonic()
    note = "recorded during the stall" if early else ""
    return Run(rig.wait_recorded(ids, ended), rig.alive(), note)


def uidvalidity(rig: Rig, run: int) -> Run:
    if run == 0:
        rig.start()
    rig.wait_recorded(rig.append(2), time.monotonic())
    rig.server.reset_uidvalidity(rig.user, "INBOX")
    ended = time.monotonic()
    ids = rig.append()
    return Run(rig.wait_recorded(ids, ended), rig.alive())


def kill_scan(rig: Rig, run: int) -> Run:
    rig.append(40)
    proc = rig.scan()
    time.sleep(random.uniform(0.2, 1.4))  # a scan of 40 mails takes about 1.5 s here
    midway = proc.poll() is None
    proc.kill()
    proc.wait(timeout=10)
    ended = time.monotonic()
    rescan = rig.scan()
    try:
        code = rescan.wait(timeout=RECORD_WAIT)
    except subprocess.TimeoutExpired:
        rescan.kill()
        code = -9
    seconds = rig.wait_recorded(rig.sent, ended, timeout=5)
    note = "killed mid-scan" if midway else "scan had finished"
    return Run(seconds, code == 0, note)


def kill_daemon(rig: Rig, run: int) -> Run:
    rig.start()
    rig.wait_recorded(rig.append(1), time.monotonic())
    proc = rig.proc
    assert proc is not None
    timer = threading.Timer(random.uniform(0.0, 1.5), proc.kill)
    timer.start()
    for _ in range(8):
        rig.append()
        time.sleep(0.2)
    timer.join()
    proc.wait(timeout=10)
    rig.proc = None
    rig.start(wait=False)
    ended = time.monotonic()
    seconds = rig.wait_recorded(rig.sent, ended)
    ok = rig.alive()
    code = rig.stop()
    return Run(seconds, ok and code == 0)


def two_writers(rig: Rig, run: int) -> Run:
    if run == 0:
        rig.start()
    stop = threading.Event()
    codes: list[int] = []

    def scans() -> None:
        while not stop.is_set():
            proc = rig.scan()
            try:
                codes.append(proc.wait(timeout=RECORD_WAIT))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(-9)

    writer = threading.Thread(target=scans)
    writer.start()
    for _ in range(20):
        rig.append()
        time.sleep(0.25)
    ended = time.monotonic()
    seconds = rig.wait_recorded(rig.sent, ended)
    stop.set()
    writer.join(timeout=RECORD_WAIT + 5)
    ok = rig.alive() and all(c == 0 for c in codes)
    return Run(seconds, ok, f"{len(codes)} scan(s) beside run")


def _mount_small(target: Path, size_mb: int) -> str | None:
    """Mount a small file system at `target`; how, or None when it cannot be done."""
    if os.geteuid() != 0:
        return None
    tmpfs = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700", "tmpfs", str(target)]
    if subprocess.run(tmpfs, capture_output=True, check=False).returncode == 0:
        return "tmpfs"
    image = target.parent / "disk.img"
    with image.open("wb") as file:
        file.truncate(size_mb * 1024 * 1024)
    mkfs = subprocess.run(["mkfs.ext4", "-q", str(image)], capture_output=True, check=False)
    loop = ["mount", "-o", "loop", str(image), str(target)]
    if (
        mkfs.returncode == 0
        and subprocess.run(loop, capture_output=True, check=False).returncode == 0
    ):
        return "loop ext4"
    return None


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    chunk = 1 << 20
    with filler.open("wb", buffering=0) as file:
        while chunk >= 512:
            try:
                file.write(b"\0" * chunk)
                file.flush()
                os.fsync(file.fileno())
            except OSError:
                chunk //= 2
    return filler


def disk_full(rig: Rig, run: int) -> Run:
    if run == 0:
        rig.start()
    rig.wait_recorded(rig.append(2), time.monotonic())
    filler = _fill(rig.data)
    ids = rig.append()
    time.sleep(8)  # the daemon tries to record it on a full disk
    alive = rig.alive()
    early = rig.wait_recorded(ids, time.monotonic(), timeout=0.1) != float("inf")
    filler.unlink()
    ended = time.monotonic()
    note = "recorded on the full disk" if early else ""
    return Run(rig.wait_recorded(ids, ended), alive and rig.alive(), note)


def _corrupt(ledger: Path) -> None:
    """Overwrite the root page of the events table with garbage, after a checkpoint."""
    with contextlib.closing(sqlite3.connect(ledger, timeout=10)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
        size = db.execute("PRAGMA page_size").fetchone()[0]
    with ledger.open("r+b") as file:
        file.seek((page - 1) * size)
        file.write(random.randbytes(size))


HEALTH_ENV = {"WATCHDOG_USEC": "4000000"}  # a health check every 2 s instead of every 60 s


def corrupt_ledger(rig: Rig, run: int) -> Run:
    rig.start(env=HEALTH_ENV)
    rig.wait_recorded(rig.append(1), time.monotonic())
    backup = rig.cli("ledger", "backup")
    rig.wait_recorded(rig.append(1), time.monotonic())  # recorded after the backup
    _corrupt(rig.ledger)
    ids = rig.append()  # arrives while the ledger is damaged
    proc = rig.proc
    assert proc is not None
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    rig.stop()
    restore = rig.cli("ledger", "restore", "--yes")
    ended = time.monotonic()
    rig.start(env=HEALTH_ENV, wait=False)
    seconds = rig.wait_recorded([*rig.sent, *ids], ended)
    ok = backup.returncode == 0 and code == 1 and restore.returncode == 0 and rig.alive()
    rig.stop()
    return Run(seconds, ok, f"run exited {code}, restore exited {restore.returncode}")


def empty_ledger(rig: Rig, run: int) -> Run:
    rig.start()
    rig.wait_recorded(rig.append(1), time.monotonic())
    rig.cli("ledger", "backup")
    rig.stop()
    rig.ledger.write_bytes(b"")
    ids = rig.append()
    rig.start(wait=False)
    proc = rig.proc
    assert proc is not None
    try:
        code: int | None = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
        rig.stop()
    rig.proc = None
    refused = code not in (0, None) and rig.ledger.stat().st_size == 0
    scan = rig.cli("scan")
    restore = rig.cli("ledger", "restore", "--yes")
    ended = time.monotonic()
    rig.start(wait=False)
    seconds = rig.wait_recorded(ids, ended)
    ok = refused and scan.returncode != 0 and restore.returncode == 0 and rig.alive()
    rig.stop()
    return Run(seconds, ok, f"run exited {code}, scan exited {scan.returncode}")


def hostile(rig: Rig, run: int) -> Run:
    if run == 0:
        rig.start()
    started = time.monotonic()
    ids = rig.append()
    for _name, raw in hostile_mails():
        rig.server.append(rig.user, "INBOX", raw)
        ids += rig.append()
    ended = time.monotonic()
    seconds = rig.wait_recorded(ids, ended, timeout=RECORD_WAIT + 30)
    return Run(seconds, rig.alive(), f"appending took {ended - started:.1f} s")


FAULTS: dict[str, tuple[str, Fault]] = {
    "kicks": ("10 kicks in a row", kicks),
    "restart": ("server stopped 5 s, restarted", server_restart),
    "stall": ("imap process SIGSTOPped 20 s", stall),
    "uidvalidity": ("UIDVALIDITY changed", uidvalidity),
    "kill-scan": ("SIGKILL of `scan`, then a rescan", kill_scan),
    "kill-run": ("SIGKILL of `run`, then a restart", kill_daemon),
    "two-writers": ("`scan` beside `run`", two_writers),
    "disk-full": ("disk full (data dir), then freed", disk_full),
    "corrupt": ("ledger page overwritten", corrupt_ledger),
    "empty": ("0-byte ledger", empty_ledger),
    "hostile": ("20 MB, 2000-deep, 5000-header mails", hostile),
}


# ---------------------------------------------------------------------------------- driver


def finish(rig: Rig, result: FaultResult) -> None:
    """Count what was lost and doubled, giving the stragglers a bounded while."""
    if rig.proc is None and result.fault not in ("kill-scan",):
        with contextlib.suppress(Exception):
            rig.start(wait=False)
    rig.wait_recorded(rig.sent, time.monotonic(), timeout=20)
    time.sleep(1.0)  # let a late popup arrive
    seen = rig.recorded() or Counter()
    result.sent = len(rig.sent)
    result.lost = sum(1 for i in rig.sent if not seen[i])
    result.doubled_events = sum(1 for i in rig.sent if seen[i] > 1)
    popups = rig.popup_counts()
    result.doubled_popups = sum(1 for n in popups.values() if n > 1)
    if result.doubled_popups:
        twice = [address for address, n in popups.items() if n > 1]
        log(f"{result.fault}: popups shown more than once: {twice}")


@contextlib.contextmanager
def special(rig: Rig, key: str) -> Iterator[str]:
    """Fault-specific set-up: a small file system under the data dir for disk-full."""
    if key != "disk-full":
        yield ""
        return
    rig.data.mkdir(mode=0o700)
    how = _mount_small(rig.data, 8)
    try:
        yield "" if how else "neither mount -t tmpfs nor a loop file system works here"
    finally:
        rig.stop()
        if how:
            subprocess.run(["umount", "-l", str(rig.data)], capture_output=True, check=False)


def run_fault(server: Dovecot, key: str, runs: int) -> FaultResult:
    fault = FAULTS[key][1]
    result = FaultResult(fault=key)
    with NotificationServer() as popups:
        rig = Rig(server, key, popups)
        try:
            with special(rig, key) as skip:
                if skip:
                    result.skipped = skip
                    log(f"{key}: skipped: {skip}")
                    return result
                for n in range(runs):
                    started = time.monotonic()
                    outcome = fault(rig, n)
                    result.runs.append(outcome)
                    log(
                        f"{key} run {n + 1}/{runs}: next mail after {outcome.seconds:.1f} s, "
                        f"{'ok' if outcome.ok else 'FAILED'} {outcome.note} "
                        f"({time.monotonic() - started:.0f} s)"
                    )
                finish(rig, result)
        except Exception as exc:  # one fault's failure must not hide the others' results
            result.error = f"{type(exc).__name__}: {exc}"
            log(f"{key}: {result.error}")
            with contextlib.suppress(Exception):
                finish(rig, result)
        finally:
            if not result.good or os.environ.get("FAULTS_LOG"):
                tail = rig.log.read_text(errors="replace").splitlines()[-40:]
                log(f"{key}: last lines of the daemon log:\n  " + "\n  ".join(tail))
            rig.close()
    log(f"{key}: lost {result.lost}, doubled {result.doubled} of {result.sent}")
    return result


def fmt(seconds: float) -> str:
    return "never" if seconds == float("inf") else f"{seconds:.1f} s"


def table(results: list[FaultResult]) -> str:
    lines = [
        "| fault | runs | time to record the next mail (median / max) | lost | doubled "
        "| survived |",
        "|---|---:|---|---:|---:|---|",
    ]
    for r in results:
        label = FAULTS[r.fault][0]
        if r.skipped:
            lines.append(f"| {label} | 0 | skipped: {r.skipped} | - | - | - |")
            continue
        times = [run.seconds for run in r.runs]
        timing = f"{fmt(statistics.median(times))} / {fmt(max(times))}" if times else "-"
        if r.error:
            timing += f" (error: {r.error})"
        doubled = str(r.doubled)
        if r.doubled:
            doubled += f" ({r.doubled_events} events, {r.doubled_popups} popups)"
        survived = "yes" if r.survived else "no"
        lines.append(
            f"| {label} | {len(r.runs)} | {timing} | {r.lost}/{r.sent} | {doubled} | {survived} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5, help="runs per fault (default 5)")
    parser.add_argument("--quick", action="store_true", help="2 runs per fault")
    parser.add_argument("--only", action="append", choices=sorted(FAULTS), help="repeatable")
    parser.add_argument("--seed", type=int, default=9, help="for the random kill moments")
    args = parser.parse_args()
    runs = 2 if args.quick else args.runs
    random.seed(args.seed)
    reason = why_not()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    results = []
    with Dovecot() as server:
        for key in args.only or list(FAULTS):
            results.append(run_fault(server, key, runs))
    elapsed = time.monotonic() - started
    print(table(results))
    print(f"\n{runs} run(s) per fault, {elapsed:.0f} s in all.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "runs": runs,
        "seconds": round(elapsed),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "faults": [
            {
                **{k: v for k, v in asdict(r).items() if k != "runs"},
                "label": FAULTS[r.fault][0],
                "runs": [
                    {**asdict(run), "seconds": None if run.seconds == float("inf") else run.seconds}
                    for run in r.runs
                ],
                "survived": r.survived,
                "doubled": r.doubled,
            }
            for r in results
        ],
    }
    RESULTS.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(r.good for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
