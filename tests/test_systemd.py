"""The systemd user units in systemd/: their contract with the program, and systemd's verdict.

The contract tests read the unit files as text. The verification tests run
``systemd-analyze --user --man=no --recursive-errors=no verify`` on the files as shipped, with
HOME pointing to a temporary home whose ``.local/bin/optout-mail`` is the console script of
this environment (verify insists that ExecStart's program exists, and ``%h`` is taken from
$HOME). No user manager needs to run: verify loads the units in a private, test-mode manager;
it only needs $XDG_RUNTIME_DIR (a temporary directory here). ``--recursive-errors=no`` makes
every warning about the given units (unknown key, unparsable value, missing program) a
non-zero exit status and ignores the units they pull in from the machine
(graphical-session.target, timers.target); ``--man=no`` skips checking the
``Documentation=man:`` pages, which minimal Debian images do not install.

Debian package: systemd (for systemd-analyze). Missing, the verification tests skip, or fail
when $CI is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optout_mail.cli import ExitStatus
from optout_mail.cli import cli as cli_group

ROOT = Path(__file__).resolve().parents[1]
UNIT_DIR = ROOT / "systemd"
SERVICE = "optout-mail.service"
SCAN_SERVICE = "optout-mail-scan.service"
SCAN_TIMER = "optout-mail-scan.timer"
UNITS = (SERVICE, SCAN_SERVICE, SCAN_TIMER)
EXEC_PREFIX = "%h/.local/bin/optout-mail"  # pipx's default place

Unit = dict[str, dict[str, list[str]]]

# Enforced by a per-user service manager (seccomp, prctl, umask): both services set all of them.
HARDENING = {
    "NoNewPrivileges": "yes",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service",
    "SystemCallErrorNumber": "EPERM",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "UMask": "0077",
}
# Left out on purpose (the comment in optout-mail.service says why): in a user unit these need
# PrivateUsers=yes, which fails the unit where unprivileged user namespaces are unavailable or
# restricted; MemoryDenyWriteExecute= breaks cffi callbacks and JIT password commands.
NOT_IN_USER_UNITS = (
    "PrivateUsers",
    "PrivateTmp",
    "ProtectSystem",
    "ProtectHome",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "PrivateDevices",
    "PrivateNetwork",
    "PrivateIPC",
    "PrivateMounts",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "CapabilityBoundingSet",
    "MemoryDenyWriteExecute",
)


def parse_unit(path: Path) -> Unit:
    """section -> key -> its values in file order (systemd keys may repeat)."""
    unit: Unit = {}
    section: dict[str, list[str]] | None = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: continuation lines not expected"
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        assert section is not None, f"{path.name}:{number}: setting before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not a key=value line: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= should be set once, found {values}"
    return values[0]


def words(unit: Unit, section: str, key: str) -> list[str]:
    return [word for value in unit.get(section, {}).get(key, []) for word in value.split()]


@pytest.fixture(scope="module")
def units() -> dict[str, Unit]:
    return {name: parse_unit(UNIT_DIR / name) for name in UNITS}


# ---------------------------------------------------------------------------------------------
# the contract, read from the files


def test_the_daemon_service(units: dict[str, Unit]) -> None:
    unit = units[SERVICE]
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "main"
    assert one(unit, "Service", "ExecStart") == f"{EXEC_PREFIX} run"
    assert one(unit, "Service", "ExecReload") == "kill -HUP $MAINPID"
    assert one(unit, "Service", "WatchdogSec") == "120"
    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "RestartSec") == "30"
    assert one(unit, "Service", "TimeoutStopSec") == "15"
    assert words(unit, "Service", "RestartPreventExitStatus") == [str(int(ExitStatus.CONFIG))]


def test_the_daemon_lives_in_the_graphical_session(units: dict[str, Unit]) -> None:
    unit = units[SERVICE]
    assert "graphical-session.target" in words(unit, "Unit", "PartOf")
    assert "graphical-session.target" in words(unit, "Unit", "After")
    assert words(unit, "Install", "WantedBy") == ["graphical-session.target"]


def test_the_scan_service(units: dict[str, Unit]) -> None:
    unit = units[SCAN_SERVICE]
    assert one(unit, "Service", "Type") == "oneshot"
    assert one(unit, "Service", "ExecStart") == f"{EXEC_PREFIX} scan"
    assert "Restart" not in unit["Service"]
    assert "Install" not in unit, "started by optout-mail-scan.timer, not enabled itself"


def test_the_scan_timer(units: dict[str, Unit]) -> None:
    unit = units[SCAN_TIMER]
    assert Path(SCAN_TIMER).stem == Path(SCAN_SERVICE).stem  # the timer's implicit Unit=
    assert unit["Timer"].get("Unit", [SCAN_SERVICE]) == [SCAN_SERVICE]
    assert one(unit, "Timer", "OnBootSec") == "5min"
    assert one(unit, "Timer", "OnCalendar") == "*:0/30"  # wall clock: Persistent= applies
    assert one(unit, "Timer", "Persistent") == "true"
    assert one(unit, "Timer", "RandomizedDelaySec") == "2min"
    assert words(unit, "Install", "WantedBy") == ["timers.target"]


@pytest.mark.parametrize("name", [SERVICE, SCAN_SERVICE])
def test_services_share_config_secrets_and_hardening(units: dict[str, Unit], name: str) -> None:
    service = units[name]["Service"]
    assert service["EnvironmentFile"] == ["-%h/.config/optout-mail/env"]  # '-': optional
    for key, value in HARDENING.items():
        assert service.get(key) == [value], f"{name}: {key}={value} expected"
    present = sorted(set(NOT_IN_USER_UNITS) & set(service))
    assert not present, f"{name}: not honoured or unsafe in a user unit: {present}"


@pytest.mark.parametrize("name", UNITS)
def test_every_unit_is_described_and_explains_where_the_program_is(
    units: dict[str, Unit], name: str
) -> None:
    unit = units[name]
    assert one(unit, "Unit", "Description")
    documentation = words(unit, "Unit", "Documentation")
    assert documentation
    assert all(
        url.startswith(("man:", "https://", "http://", "file:", "info:")) for url in documentation
    )
    text = (UNIT_DIR / name).read_text(encoding="utf-8")
    header = text[: text.index("\n[")]
    assert "systemctl --user edit" in header
    assert ".local/bin/optout-mail" in header


@pytest.mark.parametrize("name", [SERVICE, SCAN_SERVICE])
def test_exec_start_names_a_real_command(units: dict[str, Unit], name: str) -> None:
    program, *args = one(units[name], "Service", "ExecStart").split()
    assert program == EXEC_PREFIX
    assert len(args) == 1 and args[0] in cli_group.commands


# ---------------------------------------------------------------------------------------------
# systemd-analyze verify


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze") or shutil.which("systemd-analyze", path="/usr/bin:/bin")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing; CI must install Debian's systemd package")
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return path


def _console_script() -> Path:
    """Something executable to stand in for ~/.local/bin/optout-mail: ideally the real one."""
    for candidate in (Path(sys.executable).parent / "optout-mail", shutil.which("optout-mail")):
        if candidate is not None and os.access(candidate, os.X_OK):
            return Path(candidate)
    return Path(sys.executable)


def _verify(
    analyze: str, tmp_path: Path, unit_files: list[Path], *, install: bool = True
) -> tuple[int, str]:
    """Run verify as described in the module docstring; return (exit status, its output)."""
    home = tmp_path / "unit-home"
    (home / ".config").mkdir(parents=True, exist_ok=True)
    if install:
        program = home / ".local" / "bin" / "optout-mail"
        program.parent.mkdir(parents=True, exist_ok=True)
        if not program.exists():
            program.symlink_to(_console_script())
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),  # %h
        "XDG_RUNTIME_DIR": str(runtime),  # without it: "Failed to initialize manager"
        "XDG_CONFIG_HOME": str(home / ".config"),  # no drop-ins from the real home
        "LC_ALL": "C",
    }
    done = subprocess.run(
        [
            analyze,
            "--user",
            "--man=no",
            "--recursive-errors=no",
            "verify",
            *(str(f) for f in unit_files),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done.returncode, (done.stdout + done.stderr).strip()


def test_systemd_analyze_verifies_the_units_cleanly(systemd_analyze: str, tmp_path: Path) -> None:
    status, output = _verify(systemd_analyze, tmp_path, [UNIT_DIR / name for name in UNITS])
    assert (status, output) == (0, "")


def _copy_with(tmp_path: Path, name: str, old: str, new: str) -> list[Path]:
    target = tmp_path / "units"
    target.mkdir(exist_ok=True)
    for unit in UNITS:
        shutil.copy(UNIT_DIR / unit, target / unit)
    text = (target / name).read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {name}"
    (target / name).write_text(text.replace(old, new), encoding="utf-8")
    return [target / unit for unit in UNITS]


@pytest.mark.parametrize(
    ("name", "old", "new", "complaint"),
    [
        (SERVICE, "\nRestart=on-failure", "\nRestrt=on-failure", "Unknown key 'Restrt'"),
        (SERVICE, "\nType=notify", "\nType=notfy", "Failed to parse service type"),
        (SCAN_SERVICE, "=@system-service", "=@system-servic", "Unknown system call group"),
        (SCAN_TIMER, "OnBootSec=5min", "OnBootSec=5mins", "Failed to parse timer value"),
    ],
    ids=["unknown-key", "bad-type", "bad-syscall-group", "bad-timespan"],
)
def test_systemd_analyze_reports_a_broken_unit(
    systemd_analyze: str, tmp_path: Path, name: str, old: str, new: str, complaint: str
) -> None:
    status, output = _verify(systemd_analyze, tmp_path, _copy_with(tmp_path, name, old, new))
    assert status != 0
    assert complaint in output
    assert name in output


def test_systemd_analyze_wants_the_program_in_home(systemd_analyze: str, tmp_path: Path) -> None:
    status, output = _verify(systemd_analyze, tmp_path, [UNIT_DIR / SERVICE], install=False)
    assert status != 0
    assert f"{tmp_path / 'unit-home'}/.local/bin/optout-mail is not executable" in output
