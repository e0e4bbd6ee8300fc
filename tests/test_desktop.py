"""Desktop pop-ups against a real notification server on a private D-Bus session bus."""

from __future__ import annotations

import html
import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from optout_mail.desktop import DesktopNotifier, Popup


def _load_helper() -> ModuleType:
    # --import-mode=importlib does not put tests/ on sys.path; load the helper by file path.
    name = "optout_mail_tests_notification_daemon"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, Path(__file__).with_name("notification_daemon.py")
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


nd = _load_helper()
_MISSING = nd.missing_tools()

pytestmark = [pytest.mark.desktop, pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))]

LOGGER = "optout_mail.desktop"


@pytest.fixture(scope="module")
def server() -> Iterator[nd.NotificationServer]:
    with nd.NotificationServer() as srv:
        yield srv


@pytest.fixture
def on_server(
    server: nd.NotificationServer, monkeypatch: pytest.MonkeyPatch
) -> nd.NotificationServer:
    """The shared server, emptied, with this process pointed at its bus."""
    server.clear()
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", server.address)
    return server


@pytest.fixture
def bare_bus(monkeypatch: pytest.MonkeyPatch) -> Iterator[nd.PrivateBus]:
    """A private session bus with nobody owning org.freedesktop.Notifications."""
    with nd.PrivateBus() as bus:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
        yield bus


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


def test_popup_arrives_with_everything(on_server: nd.NotificationServer) -> None:
    body = "Re: <b>your objection</b> & more"
    popup = Popup(title="Meta replied: <objection> & co", body=body, urgency="critical")

    assert DesktopNotifier().send(popup) is True

    [got] = on_server.received(min_count=1)
    assert got.summary == "Meta replied: <objection> & co"  # summary is plain text: unescaped
    assert got.body == html.escape(body, quote=False)
    assert got.body == "Re: &lt;b&gt;your objection&lt;/b&gt; &amp; more"
    assert got.app_name == "optout-mail"
    assert got.replaces_id == 0
    assert got.actions == []
    assert got.hints["urgency"] == ("y", 2)
    assert got.hints["category"] == ("s", "email.arrived")
    assert got.hints["desktop-entry"] == ("s", "optout-mail")
    assert got.expire_timeout == 15000
    icon = Path(got.icon)
    assert icon.is_absolute()
    assert icon.name == "icon.png"
    assert icon.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize(("urgency", "byte"), [("low", 0), ("normal", 1), ("critical", 2)])
def test_urgency_is_a_byte_hint(on_server: nd.NotificationServer, urgency: str, byte: int) -> None:
    popup = Popup("t", "b", urgency=urgency)  # type: ignore[arg-type]
    assert DesktopNotifier().send(popup) is True
    [got] = on_server.received(min_count=1)
    assert got.hints["urgency"] == ("y", byte)
    assert got.urgency == byte


def test_default_urgency_category_and_custom_app_and_timeout(
    on_server: nd.NotificationServer,
) -> None:
    notifier = DesktopNotifier(app_name="Optout Mail", timeout_ms=0)
    assert notifier.send(Popup("t", "b", category="email")) is True
    [got] = on_server.received(min_count=1)
    assert got.app_name == "Optout Mail"  # no shell quotes (notify-py's notify-send backend)
    assert got.urgency == 1
    assert got.category == "email"
    assert got.expire_timeout == 0


def test_title_starting_with_dash_and_odd_text(on_server: nd.NotificationServer) -> None:
    # "-u" would be an option to notify-send; NUL and lone surrogates are not valid D-Bus text.
    popup = Popup(title="-u critical\x00", body="caf\udce9 \U0001f4e7\nline 2")
    assert DesktopNotifier().send(popup) is True
    [got] = on_server.received(min_count=1)
    assert got.summary == "-u critical"
    assert got.body == "caf? \U0001f4e7\nline 2"


def test_body_not_escaped_when_server_has_no_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    with nd.NotificationServer(capabilities=["body", "icon-static"]) as plain:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", plain.address)
        assert DesktopNotifier().send(Popup("t", "<b>&")) is True
        [got] = plain.received(min_count=1)
    assert got.body == "<b>&"


def test_ten_popups_in_a_row_all_arrive(on_server: nd.NotificationServer) -> None:
    notifier = DesktopNotifier()
    started = time.monotonic()
    results = [notifier.send(Popup(f"title {i}", f"body {i} <&>")) for i in range(10)]
    elapsed = time.monotonic() - started
    assert results == [True] * 10
    got = on_server.received(min_count=10)
    assert [g.summary for g in got] == [f"title {i}" for i in range(10)]
    assert [g.body for g in got] == [f"body {i} &lt;&amp;&gt;" for i in range(10)]
    assert elapsed < 5, f"10 popups took {elapsed:.2f}s"


def test_concurrent_senders(on_server: nd.NotificationServer) -> None:
    notifier = DesktopNotifier()
    results: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        ok = notifier.send(Popup(f"thread {i}", "b"))
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == [True] * 8
    got = on_server.received(min_count=8)
    assert sorted(g.summary for g in got) == sorted(f"thread {i}" for i in range(8))


def test_bus_without_server_returns_false_and_warns_once(
    bare_bus: nd.PrivateBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    notifier = DesktopNotifier()

    assert notifier.send(Popup("t", "b")) is False
    assert notifier.send(Popup("t", "b")) is False
    assert notifier.send(Popup("t", "b")) is False

    [warning] = _records(caplog, logging.WARNING)
    assert "ServiceUnknown" in warning.getMessage()
    assert warning.args  # %-style, formatted lazily
    assert len([r for r in _records(caplog, logging.DEBUG) if "not delivered" in r.msg]) == 2


def test_success_resets_the_warning(
    bare_bus: nd.PrivateBus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    notifier = DesktopNotifier()
    assert notifier.send(Popup("t", "b")) is False

    server = nd.NotificationServer(bare_bus).start()
    try:
        assert notifier.send(Popup("back", "b")) is True
        assert [r.summary for r in server.received(min_count=1)] == ["back"]
    finally:
        server.stop()
    assert any("delivered again" in r.getMessage() for r in _records(caplog, logging.INFO))

    assert notifier.send(Popup("t", "b")) is False  # server gone again: warn again
    assert len(_records(caplog, logging.WARNING)) == 2


def test_no_session_bus_returns_false(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no $XDG_RUNTIME_DIR/bus fallback
    caplog.set_level(logging.DEBUG, logger=LOGGER)

    assert DesktopNotifier().send(Popup("t", "b")) is False
    [warning] = _records(caplog, logging.WARNING)
    assert "no session bus" in warning.getMessage()


def test_dead_bus_address_returns_false(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'gone'}")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert DesktopNotifier().send(Popup("t", "b")) is False
    [warning] = _records(caplog, logging.WARNING)
    assert "FileNotFoundError" in warning.getMessage()


def test_xdg_runtime_dir_bus_fallback(
    on_server: nd.NotificationServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Like libdbus and GDBus: without DBUS_SESSION_BUS_ADDRESS use $XDG_RUNTIME_DIR/bus.
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(on_server.bus.socket_path.parent))
    assert DesktopNotifier().send(Popup("via runtime dir", "b")) is True
    assert [r.summary for r in on_server.received(min_count=1)] == ["via runtime dir"]


def test_unresponsive_server_times_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with nd.NotificationServer() as frozen:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", frozen.address)
        frozen.pause()
        started = time.monotonic()
        assert DesktopNotifier(reply_timeout_s=0.5).send(Popup("t", "b")) is False
        elapsed = time.monotonic() - started
        frozen.resume()
    assert 0.4 < elapsed < 3, elapsed
    [warning] = _records(caplog, logging.WARNING)
    assert "timed out" in warning.getMessage()


def test_notifypy_loguru_output_does_not_leak(
    on_server: nd.NotificationServer,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("notifypyEnableLogging", "1")  # would make notify-py log to stderr
    notifier = DesktopNotifier()
    assert notifier.send(Popup("t", "b")) is True
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/optout-test-bus")
    assert notifier.send(Popup("t", "b")) is False
    out, err = capfd.readouterr()
    assert out == ""
    assert "notifypy" not in err  # our own logging may speak (through pytest); loguru must not
    assert " | " not in err  # loguru's line format


def test_invalid_timeout_rejected() -> None:
    with pytest.raises(ValueError, match="timeout_ms"):
        DesktopNotifier(timeout_ms=-2)
