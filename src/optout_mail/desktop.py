"""Desktop pop-ups: the only module that talks to the freedesktop notification server.

notify-py's ``Notify`` API driven by our own jeepney backend (urgency/category hints, escaped body,
True only when the server accepted the call); ``send()`` never raises, it logs and returns False.
"""

from __future__ import annotations

import atexit
import contextlib
import html
import logging
import os
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import notifypy.notify
from jeepney import (  # type: ignore[import-untyped]
    DBusAddress,
    MessageType,
    new_method_call,
)
from jeepney.io.blocking import open_dbus_connection  # type: ignore[import-untyped]
from jeepney.wrappers import DBusErrorResponse  # type: ignore[import-untyped]
from notifypy import BaseNotifier, Notify

from optout_mail.model import Popup, Urgency

__all__ = ["DesktopNotifier", "Popup", "Probe", "Urgency", "probe"]

_log = logging.getLogger(__name__)

# notify-py logs through loguru's global logger (to stderr by default). Notify() disables it only
# when the notifypyEnableLogging variable is unset; switch it off here and again before each use.
notifypy.notify.logger.disable("notifypy")


DESKTOP_ENTRY: Final = "optout-mail"
"""Basename of the .desktop file; lets the server group and style our pop-ups."""

_URGENCY_BYTE: Final[dict[str, int]] = {"low": 0, "normal": 1, "critical": 2}
_SERVER: Final = DBusAddress(
    "/org/freedesktop/Notifications",
    bus_name="org.freedesktop.Notifications",
    interface="org.freedesktop.Notifications",
)
_INT32_MAX: Final = 2**31 - 1


class DesktopNotifier:
    """Sends :class:`Popup` objects to the session's notification server. Thread-safe."""

    def __init__(
        self,
        app_name: str = "optout-mail",
        timeout_ms: int = 15000,
        *,
        reply_timeout_s: float = 3.0,
    ) -> None:
        """``timeout_ms``: how long the pop-up stays (-1 = server default, 0 = until dismissed).

        ``reply_timeout_s`` bounds connecting to the bus plus waiting for the server's answer.
        """
        if not -1 <= timeout_ms <= _INT32_MAX:
            raise ValueError(f"timeout_ms must be -1 or a non-negative int32, got {timeout_ms}")
        if reply_timeout_s <= 0:
            raise ValueError(f"reply_timeout_s must be positive, got {reply_timeout_s}")
        self.app_name = app_name
        self.timeout_ms = timeout_ms
        self.reply_timeout_s = reply_timeout_s
        self._lock = threading.Lock()
        self._failing = False

    def send(self, popup: Popup) -> bool:
        """Show ``popup``; True only if the notification server accepted it. Never raises."""
        outcome = _Outcome()
        try:
            delivered = self._send(popup, outcome)
        except Exception as exc:  # notify-py API misuse or a notify-py bug: still never raise
            outcome.error = f"{type(exc).__name__}: {exc}"
            delivered = False
        if delivered:
            self._note_success(outcome)
        else:
            self._note_failure(outcome.error or "notify-py reported failure")
        return delivered

    def _send(self, popup: Popup, outcome: _Outcome) -> bool:
        notifypy.notify.logger.disable("notifypy")  # see module top
        icon = _icon_path()
        notification = Notify(
            default_notification_title=_dbus_text(popup.title),
            default_notification_message=_dbus_text(popup.body),
            default_notification_application_name=_dbus_text(self.app_name),
            default_notification_urgency=popup.urgency,
            default_notification_icon=icon,
            # Everything below is handed by notify-py to the notifier's constructor.
            use_custom_notifier=_JeepneyNotifier,
            outcome=outcome,
            category=_dbus_text(popup.category),
            expire_timeout=self.timeout_ms,
            reply_timeout=self.reply_timeout_s,
            send_icon=icon is not None,
        )
        # block=True: notify-py runs the notifier in a thread and joins it (up to 35 s; our
        # notifier finishes within about reply_timeout_s).
        return bool(notification.send(block=True))

    def _note_success(self, outcome: _Outcome) -> None:
        with self._lock:
            recovered, self._failing = self._failing, False
        if recovered:
            _log.info("desktop notifications are delivered again")
        _log.debug("desktop notification accepted by the server (id %s)", outcome.server_id)

    def _note_failure(self, reason: str) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            _log.warning(
                "desktop notification not delivered: %s "
                "(further failures are logged at DEBUG until one succeeds)",
                reason,
            )
        else:
            _log.debug("desktop notification not delivered: %s", reason)


@dataclass
class _Outcome:
    """Filled in by the notifier thread; read by :meth:`DesktopNotifier.send` after the join."""

    error: str | None = None
    server_id: int | None = None


class _JeepneyNotifier(BaseNotifier):  # type: ignore[misc]
    """notify-py backend speaking org.freedesktop.Notifications over jeepney.

    Unlike notify-py's own Linux backends it sends urgency/category/desktop-entry hints and an
    expire timeout, does not quote the app name, and checks that the reply is a method return.
    """

    def __init__(self, **kwargs: Any) -> None:
        # KeyError here (notify-py stopped forwarding kwargs) surfaces as a logged failure.
        self._outcome: _Outcome = kwargs["outcome"]
        self._category: str = kwargs["category"]
        self._expire_timeout: int = kwargs["expire_timeout"]
        self._reply_timeout: float = kwargs["reply_timeout"]
        self._send_icon: bool = kwargs["send_icon"]

    def send_notification(
        self,
        *,
        notification_title: str,
        notification_subtitle: str,
        application_name: str,
        notification_urgency: str,
        notification_icon: str,
        **_ignored: Any,  # notification_audio: no sounds from a mail watcher
    ) -> bool:
        # Runs in notify-py's worker thread: an exception here would become an unhandled thread
        # exception, so catch everything and report through the outcome.
        try:
            return self._notify(
                title=notification_title,
                body=notification_subtitle,
                app_name=application_name,
                urgency=notification_urgency,
                icon=notification_icon if self._send_icon else "",
            )
        except Exception as exc:
            self._outcome.error = _describe(exc)
            return False

    def _notify(self, *, title: str, body: str, app_name: str, urgency: str, icon: str) -> bool:
        address = _session_bus_address()
        if address is None:
            self._outcome.error = (
                "no session bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus)"
            )
            return False
        deadline = time.monotonic() + self._reply_timeout
        with open_dbus_connection(address, auth_timeout=self._reply_timeout) as conn:
            if _supports_body_markup(conn, deadline):
                body = html.escape(body, quote=False)
            hints = {
                "urgency": ("y", _URGENCY_BYTE.get(urgency, 1)),
                "category": ("s", self._category),
                "desktop-entry": ("s", DESKTOP_ENTRY),
            }
            call = new_method_call(
                _SERVER,
                "Notify",
                "susssasa{sv}i",
                (app_name, 0, icon, title, body, [], hints, self._expire_timeout),
            )
            reply = conn.send_and_get_reply(call, timeout=_remaining(deadline))
        if reply.header.message_type != MessageType.method_return:
            self._outcome.error = _describe(DBusErrorResponse(reply))
            return False
        self._outcome.server_id = int(reply.body[0]) if reply.body else None
        return True


@dataclass(frozen=True)
class Probe:
    """What `probe` found: the session bus, and the notification server on it."""

    bus: str | None  # the session bus address; None when there is none
    server: str | None  # e.g. "dunst 1.9.0 (knopwob)" when a server answered
    problem: str | None  # why there is no server, when there is none


def probe(timeout_s: float = 3.0) -> Probe:
    """Ask the notification server who it is (GetServerInformation). Never raises."""
    address = _session_bus_address()
    if address is None:
        return Probe(
            None, None, "no session bus (DBUS_SESSION_BUS_ADDRESS unset, no $XDG_RUNTIME_DIR/bus)"
        )
    deadline = time.monotonic() + timeout_s
    try:
        with open_dbus_connection(address, auth_timeout=timeout_s) as conn:
            call = new_method_call(_SERVER, "GetServerInformation")
            reply = conn.send_and_get_reply(call, timeout=_remaining(deadline))
    except Exception as exc:
        return Probe(address, None, _describe(exc))
    if reply.header.message_type != MessageType.method_return:
        return Probe(address, None, _describe(DBusErrorResponse(reply)))
    name, vendor, version = [*reply.body, "", "", ""][:3]
    return Probe(address, f"{name} {version} ({vendor})".replace(" ()", ""), None)


def _supports_body_markup(conn: Any, deadline: float) -> bool:
    """Whether the server parses body markup (then ``& < >`` must be escaped).

    Servers without the capability show the body verbatim, so escaping would show ``&amp;``.
    On an error reply we assume markup (what dunst, GNOME, KDE, xfce and mako all do); the
    Notify call that follows reports the real problem.
    """
    reply = conn.send_and_get_reply(
        new_method_call(_SERVER, "GetCapabilities"), timeout=_remaining(deadline)
    )
    if reply.header.message_type != MessageType.method_return or not reply.body:
        return True
    capabilities: list[str] = reply.body[0]
    return "body-markup" in capabilities


def _session_bus_address() -> str | None:
    """DBUS_SESSION_BUS_ADDRESS, else ``$XDG_RUNTIME_DIR/bus`` if it exists (as libdbus/GDBus)."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "").strip()
    if address:
        return address
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime_dir and Path(runtime_dir, "bus").is_socket():
        return f"unix:path={Path(runtime_dir, 'bus')}"
    return None


def _remaining(deadline: float) -> float:
    # A non-positive timeout still polls once in jeepney; keep it strictly positive.
    return max(deadline - time.monotonic(), 0.001)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DBusErrorResponse):
        message = exc.data[0] if exc.data else ""
        return f"notification server error {exc.name}: {message}".rstrip(": ")
    if isinstance(exc, TimeoutError):
        return f"timed out talking to the session bus ({exc or 'no reply'})"
    return f"{type(exc).__name__}: {exc}"


def _dbus_text(text: str) -> str:
    """D-Bus strings must be valid UTF-8 without NUL (mail subjects can hold lone surrogates)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


_icon_lock = threading.Lock()
_icon_stack = contextlib.ExitStack()  # holds as_file() extractions until interpreter exit
atexit.register(_icon_stack.close)
_icon_file: Path | None = None


def _icon_path() -> str | None:
    """Real file path of the packaged icon.png (notify-py and servers need a file, not a name).

    ``as_file`` returns the file itself for a normal install and extracts a temporary copy for
    zip imports; the copy is kept until interpreter exit.
    """
    global _icon_file
    with _icon_lock:
        if _icon_file is None or not _icon_file.is_file():
            try:
                traversable = resources.files(__package__ or "optout_mail").joinpath("icon.png")
                _icon_file = _icon_stack.enter_context(resources.as_file(traversable))
            except (OSError, ModuleNotFoundError) as exc:
                _log.debug("optout-mail icon unavailable, pop-ups go without: %s", exc)
                return None
        return str(_icon_file.resolve()) if _icon_file.is_file() else None
