"""The systemd user service for `init` and `doctor`: the bundled unit rewritten to start the
program that is running now, installed into ~/.config/systemd/user, and `systemctl --user`
asked about it. Without systemctl or a user manager, everything says so instead of failing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "optout-mail.service"
SYSTEMCTL_TIMEOUT = 30.0


def bundled_unit() -> Path | None:
    """systemd/optout-mail.service: inside the wheel, or the top-level folder of a checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "systemd" / UNIT_NAME, package.parents[1] / "systemd" / UNIT_NAME):
        if candidate.is_file():
            return candidate
    return None


def user_unit_path() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "systemd" / "user" / UNIT_NAME


def running_program() -> list[str]:
    """How to start this very program again: its console script, else `python -m`."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if script is not None and script.name == "optout-mail" and script.is_file():
        return [str(script.absolute())]  # not resolved: pipx's symlink survives upgrades
    found = shutil.which("optout-mail")
    if found and Path(found).parent == Path(sys.executable).parent:
        return [found]
    return [sys.executable, "-m", "optout_mail"]


def _unit_word(word: str) -> str:
    """One ExecStart= argument: `%` doubled, quoted when it holds blanks or quotes."""
    word = word.replace("%", "%%")
    if any(c in word for c in " \t\"'\\"):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return word


def render_unit(template: str, program: list[str], config: Path | None) -> str:
    """The bundled unit with ExecStart= starting `program run` (and OPTOUT_MAIL_CONFIG set
    when the config is not in the default place)."""
    lines = []
    for line in template.splitlines():
        if line.startswith("ExecStart="):
            line = "ExecStart=" + " ".join(_unit_word(w) for w in [*program, "run"])
            if config is not None:
                line += "\nEnvironment=" + _unit_word(f"OPTOUT_MAIL_CONFIG={config}")
        lines.append(line)
    return "\n".join(lines) + "\n"


def systemctl(*args: str) -> tuple[int, str]:
    """`systemctl --user ARGS`: (status, what it printed); status 127 without systemctl."""
    program = shutil.which("systemctl")
    if program is None:
        return 127, "systemctl is not installed"
    try:
        done = subprocess.run(
            [program, "--user", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=SYSTEMCTL_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, f"systemctl failed: {exc}"
    return done.returncode, (done.stdout + done.stderr).strip()


def manager_problem() -> str | None:
    """Why there is no systemd user manager to talk to; None when there is one."""
    status, output = systemctl("show-environment")
    if status == 0:
        return None
    return output.splitlines()[-1] if output else f"systemctl --user failed ({status})"


@dataclass(frozen=True)
class UnitState:
    installed: bool
    manager: str | None  # the problem reaching the user manager; None when reachable
    enabled: str  # systemctl is-enabled: enabled, disabled, not-found, ... ("" unknown)
    active: str  # systemctl is-active: active, inactive, failed, ... ("" unknown)


def unit_state() -> UnitState:
    installed = user_unit_path().is_file()
    problem = manager_problem()
    if problem is not None:
        return UnitState(installed, problem, "", "")
    enabled = systemctl("is-enabled", UNIT_NAME)[1].splitlines()
    active = systemctl("is-active", UNIT_NAME)[1].splitlines()
    return UnitState(installed, None, enabled[0] if enabled else "", active[0] if active else "")


def install(config: Path | None) -> tuple[bool, list[str]]:
    """Copy the unit (ExecStart = this program), reload, enable and start it.
    Returns whether it runs, and what to tell the user."""
    problem = manager_problem()
    if problem is not None:
        return False, [
            f"No systemd user service: {problem}.",
            "Start the daemon another way (`optout-mail run` in your session's autostart), or "
            "run `optout-mail init --force --service` later inside your desktop session.",
        ]
    template = bundled_unit()
    if template is None:
        return False, [
            f"{UNIT_NAME} is not part of this installation; copy it from the source "
            "(systemd/) as the README says."
        ]
    target = user_unit_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    unit = render_unit(template.read_text(encoding="utf-8"), running_program(), config)
    target.write_text(unit, encoding="utf-8")
    lines = [f"Installed {target}."]
    for args in (("daemon-reload",), ("enable", "--now", UNIT_NAME)):
        status, output = systemctl(*args)
        if status != 0:
            lines.append(f"`systemctl --user {' '.join(args)}` failed: {output}")
            return False, lines
    lines.append(f"Enabled and started {UNIT_NAME}; its log: journalctl --user -u optout-mail -f")
    return True, lines
