"""`status` (one screen: every request and its deadline, what is due next, the daemon's state
from DATA_DIR/status.json and its lock) and `config show` (the effective configuration and
where each value came from: the file, an environment variable, or the default; secrets masked).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from optout_mail.commands.state import State, now, pass_state

if TYPE_CHECKING:
    from pydantic import BaseModel

    from optout_mail.model import RequestView

MASK = "********"
SECRET_KEYS = frozenset({"password", "token", "secret"})


# ---------------------------------------------------------------------------------------------
# status


def _when(request: RequestView, today: datetime) -> tuple[str, int | None]:
    """What the request's deadline means today, and the days left (negative: overdue)."""
    from optout_mail.lifecycle import WAITING_FOR_META
    from optout_mail.model import State as RequestState

    state = RequestState(request.state)
    if state not in WAITING_FOR_META:
        if state is RequestState.NEEDS_INFO:
            return "Meta waits for your answer", None
        return "answered", None
    days = (datetime.fromisoformat(request.due_at).date() - today.date()).days
    if request.overdue:
        return f"overdue by {max(-days, 1)} day(s)", min(days, -1)
    return f"due {request.due_at[:10]} (in {days} day(s))", days


def daemon_state(data_dir: Path) -> dict[str, Any]:
    from optout_mail import runstatus

    pid = runstatus.daemon_pid(data_dir)
    saved = runstatus.read(data_dir) or {}
    keys = ("started_at", "stopped_at", "last_scan_at", "last_scan", "watched", "last_error")
    info = {key: saved.get(key) for key in keys}
    return {"running": pid is not None, "pid": pid, **info}


def _daemon_lines(daemon: Mapping[str, Any]) -> Iterator[str]:
    if daemon["running"]:
        yield f"Daemon: running (pid {daemon['pid']}) since {daemon['started_at'] or '?'}"
    elif daemon["started_at"] and not daemon["stopped_at"]:
        yield f"Daemon: NOT running; it started {daemon['started_at']} and did not stop cleanly"
    else:
        stopped = f" (stopped {daemon['stopped_at']})" if daemon["stopped_at"] else ""
        yield f"Daemon: not running{stopped}; start it: systemctl --user start optout-mail"
    if daemon["watched"]:
        yield f"  watching {', '.join(daemon['watched'])}"
    if daemon["last_scan_at"]:
        yield f"  last scan {daemon['last_scan_at']} ({daemon['last_scan']})"
    error = daemon["last_error"]
    if isinstance(error, dict):
        yield f"  last error {error.get('at')} at {error.get('where')}: {error.get('message')}"


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_state
def status_command(state: State, as_json: bool) -> None:
    """One screen: your requests and their deadlines, what is due next, the daemon's state.

    \b
    Examples:
      optout-mail status
      optout-mail status --json | jq .next_due
    """
    from optout_mail.ledger import Ledger

    settings = state.settings()
    moment = now()
    rows: list[RequestView] = []
    if settings.ledger_path.exists():
        with Ledger(settings.ledger_path) as ledger:
            rows = ledger.requests(now=moment)
    requests = []
    for request in rows:
        when, days = _when(request, moment)
        requests.append(
            {
                "id": request.id,
                "platform": request.platform,
                "account": request.account,
                "kind": request.kind.value,
                "state": request.state.value,
                "filed_at": request.filed_at,
                "due_at": request.due_at,
                "overdue": request.overdue,
                "days_left": days,
                "when": when,
            }
        )
    upcoming = [r for r in requests if r["days_left"] is not None and not r["overdue"]]
    next_due = min(upcoming, key=lambda r: str(r["due_at"]), default=None)
    daemon = daemon_state(settings.data_dir)
    if as_json:
        report = {"requests": requests, "next_due": next_due, "daemon": daemon}
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    if not requests:
        click.echo("No requests yet: `optout-mail requests add` records one you filed.")
    for r in requests:
        filed_on = str(r["filed_at"])[:10]
        line = f"#{r['id']:<3} {r['platform']:<10} {r['state']:<10} filed on {filed_on}"
        click.echo(f"{line}  {r['when']}")
    overdue = [r for r in requests if r["overdue"]]
    if overdue:
        click.echo(f"{len(overdue)} overdue: Meta missed the legal deadline (GDPR Art. 12(3)).")
    if next_due is not None:
        click.echo(f"Next: #{next_due['id']} {next_due['platform']}, {next_due['when']}.")
    for line in _daemon_lines(daemon):
        click.echo(line)


# ---------------------------------------------------------------------------------------------
# config show


def _leaves(model: BaseModel, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(key path, value) of every setting, accounts and nested tables included."""
    from pydantic import BaseModel

    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _leaves(value, (*path, name))
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, BaseModel) for v in value.values())
        ):
            for key, item in sorted(value.items()):
                yield from _leaves(item, (*path, name, key))
        else:
            yield (*path, name), value


def source_of(
    path: tuple[str, ...], data: Mapping[str, Any], env: Mapping[str, str], file: Path | None
) -> tuple[str, str | None]:
    """Where the value at `path` came from: ("env", NAME), ("file", PATH) or ("default", None).
    The environment wins over the file, as when the config is loaded."""
    from optout_mail.config import ENV_PREFIX

    names = {name.upper(): name for name in env}
    for depth in range(len(path), 0, -1):
        wanted = ENV_PREFIX + "__".join(part.upper() for part in path[:depth])
        if wanted in names:
            return "env", names[wanted]
    node: Any = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return "default", None
        node = node[part]
    return "file", str(file)


def _shown(key: str, value: Any) -> Any:
    from pydantic import SecretStr

    if isinstance(value, SecretStr) or (key in SECRET_KEYS and value is not None):
        return MASK
    if isinstance(value, list):
        return [_shown("", v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(k, v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)  # paths, dates


@click.group("config")
def config_group() -> None:
    """The configuration as optout-mail sees it.

    \b
    Example:
      optout-mail config show
    """


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="A JSON object: file and values.")
@pass_state
def config_show(state: State, as_json: bool) -> None:
    """Show the effective configuration and where each value came from (the config file, an
    environment variable, or the default). Passwords are masked, never printed.

    \b
    Examples:
      optout-mail config show
      OPTOUT_MAIL_POLL_INTERVAL=600 optout-mail config show --json
    """
    from optout_mail.config import resolve_config_path

    settings = state.settings()
    path, _ = resolve_config_path(state.config_path, os.environ)
    data: dict[str, Any] = {}
    if path.is_file():
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    file = path if path.is_file() else None
    values = []
    for key_path, value in _leaves(settings):
        source, origin = source_of(key_path, data, os.environ, file)
        if key_path == ("data_dir",) and state.data_dir is not None:
            source, origin = "option", "--data-dir"
        values.append(
            {
                "key": ".".join(key_path),
                "value": _shown(key_path[-1], value),
                "source": source,
                "origin": origin,
            }
        )
    if as_json:
        report = {"config_file": str(path), "exists": file is not None, "values": values}
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    click.echo(f"Config file: {path}{'' if file else ' (does not exist)'}")
    width = max((len(str(v["key"])) for v in values), default=0)
    for v in values:
        origin = f"{v['source']} {v['origin']}" if v["origin"] else v["source"]
        click.echo(
            f"  {v['key']!s:<{width}}  {json.dumps(v['value'], ensure_ascii=False)}  ({origin})"
        )
