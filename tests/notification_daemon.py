"""Test helper: a private D-Bus session bus and a real notification server on it.

``PrivateBus`` runs its own ``dbus-daemon`` (socket in a fresh temp dir, no service
activation, never the user's bus). ``NotificationServer`` adds python-dbusmock's
``notification_daemon`` template, run by the system Python (Debian ``python3-dbusmock``), and
reads back every ``Notify`` call it received through dbusmock's ``GetCalls``: typed values, so
the urgency hint's D-Bus signature (``y``) is visible, unlike in dbusmock's text log.

Debian packages: ``dbus-daemon`` and ``python3-dbusmock``. The client side uses jeepney (a
project dependency).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from jeepney import DBusAddress, MessageType, new_method_call  # type: ignore[import-untyped]
from jeepney.bus_messages import message_bus  # type: ignore[import-untyped]
from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]

SYSTEM_PYTHON = "/usr/bin/python3"
NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
_MOCK = DBusAddress(
    "/org/freedesktop/Notifications",
    bus_name=NOTIFICATIONS_NAME,
    interface="org.freedesktop.DBus.Mock",
)
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""
# No <servicedir>/<standard_session_servicedirs/>: calling an absent service fails at once with
# ServiceUnknown instead of trying to D-Bus-activate the machine's real notification daemon.


def missing_tools() -> str | None:
    """Why the helper cannot run here (for ``pytest.skip``), or None when it can."""
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon not installed (Debian package dbus-daemon)"
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import dbusmock"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import dbusmock (Debian package python3-dbusmock)"
    return None


@dataclass(frozen=True)
class Received:
    """One ``org.freedesktop.Notifications.Notify`` call as the server received it."""

    app_name: str
    replaces_id: int
    icon: str
    summary: str
    body: str
    actions: list[str]
    hints: dict[str, tuple[str, Any]]  # name -> (D-Bus signature, value), e.g. ("y", 2)
    expire_timeout: int
    timestamp: int  # seconds, as logged by dbusmock

    @property
    def urgency(self) -> int | None:
        hint = self.hints.get("urgency")
        return None if hint is None else int(hint[1])

    @property
    def category(self) -> str | None:
        hint = self.hints.get("category")
        return None if hint is None else str(hint[1])


class PrivateBus:
    """A throw-away session bus: ``dbus-daemon`` with its socket in its own temp dir."""

    def __init__(self, *, startup_timeout: float = 10.0) -> None:
        self.startup_timeout = startup_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="optout-dbus-"))
        self.socket_path = self.dir / "bus"
        self.address = ""
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Variables to add to a process's environment so it uses this bus."""
        return {"DBUS_SESSION_BUS_ADDRESS": self.address}

    def start(self) -> PrivateBus:
        config = self.dir / "bus.conf"
        config.write_text(_BUS_CONFIG.format(socket=self.socket_path), encoding="utf-8")
        with (self.dir / "dbus-daemon.log").open("wb") as errors:
            self._proc = subprocess.Popen(
                ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,  # e.g. "Failed to set fd limit" when run as root: harmless
            )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.startup_timeout)
        line = self._proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("unix:"):
            self.stop()
            raise RuntimeError(f"dbus-daemon did not start (printed {line!r})")
        self.address = line
        return self

    def stop(self) -> None:
        """Stop the daemon and delete the temp dir. Idempotent."""
        if self._proc is not None:
            _terminate(self._proc)
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def has_owner(self, name: str) -> bool:
        with open_dbus_connection(self.address, auth_timeout=2.0) as conn:
            reply = conn.send_and_get_reply(message_bus.NameHasOwner(name), timeout=2.0)
        return bool(reply.body[0])

    def __enter__(self) -> PrivateBus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class NotificationServer:
    """python-dbusmock's notification daemon on a :class:`PrivateBus` (its own unless given)."""

    def __init__(
        self,
        bus: PrivateBus | None = None,
        *,
        capabilities: list[str] | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self._own_bus = bus is None
        self.bus = bus if bus is not None else PrivateBus()
        self.capabilities = capabilities  # None: dbusmock's defaults (include body-markup)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def address(self) -> str:
        return self.bus.address

    @property
    def env(self) -> dict[str, str]:
        """Variables to add to a process's environment so it talks to this server."""
        return self.bus.env

    @property
    def log_path(self) -> Path:
        """dbusmock's own text log (one line per method call; strings unescaped, types lost)."""
        return self.bus.dir / "dbusmock.log"

    def start(self) -> NotificationServer:
        if self._own_bus:
            self.bus.start()
        command = [SYSTEM_PYTHON, "-m", "dbusmock", "--template", "notification_daemon"]
        command += ["-l", str(self.log_path)]
        if self.capabilities is not None:
            command += ["-p", json.dumps({"capabilities": " ".join(self.capabilities)})]
        env = {**os.environ, **self.bus.env}
        with (self.bus.dir / "dbusmock.out").open("wb") as output:
            self._proc = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
        deadline = time.monotonic() + self.startup_timeout
        while not self.bus.has_owner(NOTIFICATIONS_NAME):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                output_text = (self.bus.dir / "dbusmock.out").read_text(errors="replace")
                self.stop()
                raise RuntimeError(f"dbusmock notification daemon did not start:\n{output_text}")
            time.sleep(0.02)
        return self

    def received(self, min_count: int = 0, timeout: float = 2.0) -> list[Received]:
        """All Notify calls so far, oldest first; waits up to ``timeout`` for ``min_count``."""
        deadline = time.monotonic() + timeout
        while True:
            calls = [_parse(call) for call in self._get_calls() if call[1] == "Notify"]
            if len(calls) >= min_count or time.monotonic() > deadline:
                return calls
            time.sleep(0.02)

    def clear(self) -> None:
        """Forget the calls received so far."""
        self._call_mock("ClearCalls")

    def pause(self) -> None:
        """SIGSTOP the server: it stays on the bus but never answers (timeout tests)."""
        if self._proc is not None and not self._paused:
            self._proc.send_signal(signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        if self._proc is not None and self._paused:
            self._proc.send_signal(signal.SIGCONT)
            self._paused = False

    def stop(self) -> None:
        """Stop the server (and the bus if it is ours). Idempotent."""
        if self._proc is not None:
            self.resume()
            _terminate(self._proc)
            self._proc = None
        if self._own_bus:
            self.bus.stop()

    def _get_calls(self) -> list[tuple[int, str, list[tuple[str, Any]]]]:
        calls: list[tuple[int, str, list[tuple[str, Any]]]] = self._call_mock("GetCalls")[0]
        return calls

    def _call_mock(self, method: str) -> tuple[Any, ...]:
        with open_dbus_connection(self.address, auth_timeout=2.0) as conn:
            reply = conn.send_and_get_reply(new_method_call(_MOCK, method), timeout=5.0)
        if reply.header.message_type != MessageType.method_return:
            raise RuntimeError(f"dbusmock {method} failed: {reply.body}")
        body: tuple[Any, ...] = reply.body
        return body

    def __enter__(self) -> NotificationServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _parse(call: tuple[int, str, list[tuple[str, Any]]]) -> Received:
    timestamp, _, variants = call
    app_name, replaces_id, icon, summary, body, actions, hints, expire = (v for _, v in variants)
    return Received(
        app_name=app_name,
        replaces_id=replaces_id,
        icon=icon,
        summary=summary,
        body=body,
        actions=list(actions),
        hints=dict(hints),
        expire_timeout=expire,
        timestamp=timestamp,
    )


def _terminate(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
