"""user …, service-account …, group …, role …, audit …: identity administration over the API."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from stockade.cli import output
from stockade.cli.client import client, fail
from stockade.cli.output import AsJson, key_values, print_json, table, when
from stockade.cli.text import shorten

out = output.out
user_app = typer.Typer(help="Users (local, LDAP, OIDC) and service accounts.", no_args_is_help=True)
group_app = typer.Typer(help="Groups and their members.", no_args_is_help=True)
role_app = typer.Typer(help="Built-in and custom roles, and who holds them.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log: query, export, verify.", no_args_is_help=True)

CATEGORIES = (
    "channels, subchannels, mirrors, artifacts, policies, cves, users, roles, audit, system"
)


def _json(data: object) -> None:
    print_json(data)


def _yes(value: bool) -> str:
    return "yes" if value else ""


# users -----------------------------------------------------------------------------------------


@user_app.command("list")
def user_list(
    kind: str | None = typer.Option(None, help="user | service"),
    query: str | None = typer.Option(None, "--query", "-q", help="part of the username"),
    as_json: AsJson = False,
) -> None:
    """List users and service accounts."""
    params = {k: v for k, v in {"kind": kind, "q": query}.items() if v}
    data = client().get("/users", params=params)
    if as_json:
        _json(data)
        return
    grid = table("username", "kind", "source", "email", "admin", "active", "last sign-in")
    for u in data:
        grid.add_row(
            Text(u["username"]),
            u["kind"],
            u["source"],
            Text(u["email"] or ""),
            _yes(u["is_admin"]),
            "yes" if u["is_active"] else "[red]disabled[/red]",
            when(u["last_login_at"]),
        )
    out.print(grid)


@user_app.command("show")
def user_show(username: str, as_json: AsJson = False) -> None:
    """A user with their groups and roles."""
    u = client().get(f"/users/{username}")
    if as_json:
        _json(u)
        return
    key_values(
        u["username"],
        [
            ("kind", f"{u['kind']} ({u['source']})"),
            ("email", u["email"]),
            ("admin", u.get("is_admin")),
            ("active", u["is_active"]),
            ("disabled", u["disabled_reason"] or None),
            ("groups", u["groups"]),
            ("roles", u["roles"]),
            ("last sign-in", when(u.get("last_login_at"))),
        ],
    )


@user_app.command("create")
def user_create(
    username: str,
    password: str | None = typer.Option(None, "--password", "-p", help="Prompted when omitted"),
    email: str | None = typer.Option(None),
    admin: bool = typer.Option(False, "--admin", help="Give the admin role"),
) -> None:
    """Create a local user."""
    if password is None:
        password = getpass.getpass("password for the new user: ")
    data = client().post(
        "/users",
        json={"username": username, "password": password, "email": email, "admin": admin},
    )
    out.print(f"user [bold]{data['username']}[/bold] created{' (admin)' if admin else ''}")


@user_app.command("update")
def user_update(
    username: str,
    email: str | None = typer.Option(None),
    display_name: str | None = typer.Option(None),
    reset_password: bool = typer.Option(False, "--reset-password", help="Prompt for a new one"),
    revoke_tokens: bool = typer.Option(
        False, "--revoke-tokens", help="With --reset-password: also revoke all the user's tokens"
    ),
) -> None:
    """Change a user's email, display name or password.

    A new password ends the user's other web sessions (a reset by an admin: all of them). For your
    own password you are asked for the current one.
    """
    body: dict[str, Any] = {}
    if email is not None:
        body["email"] = email
    if display_name is not None:
        body["display_name"] = display_name
    if revoke_tokens and not reset_password:
        fail("--revoke-tokens goes with --reset-password")
    api = client()
    if reset_password:
        if api.get("/whoami").get("username") == username:
            body["current_password"] = getpass.getpass("current password: ")
        body["password"] = getpass.getpass("new password: ")
        body["revoke_tokens"] = revoke_tokens
    if not body:
        fail("nothing to change: give --email, --display-name or --reset-password")
    api.patch(f"/users/{username}", json=body)
    out.print(f"user {username} updated")
    if revoke_tokens:
        out.print("its tokens were revoked (yours too, if this was your account: log in again)")


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable a user: their sessions end and their tokens stop working at once."""
    client().patch(f"/users/{username}", json={"is_active": False})
    out.print(f"user {username} disabled")


@user_app.command("enable")
def user_enable(username: str) -> None:
    client().patch(f"/users/{username}", json={"is_active": True})
    out.print(f"user {username} enabled")


@user_app.command("delete")
def user_delete(
    username: str, yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask")
) -> None:
    """Delete a user, their tokens and grants."""
    if not yes:
        typer.confirm(f"delete user {username}?", abort=True)
    client().delete(f"/users/{username}")
    out.print(f"user {username} deleted")


@user_app.command("create-service")
def service_create(
    name: str, description: str | None = typer.Option(None, help="What it is for")
) -> None:
    """Create a service account (for CI); then `stockade token create NAME --user ACCOUNT`."""
    client().post("/service-accounts", json={"name": name, "description": description})
    out.print(
        f"service account [bold]{name}[/bold] created; give it a token with "
        f"`stockade token create ci --user {name}`"
    )


# groups ----------------------------------------------------------------------------------------


@group_app.command("list")
def group_list(as_json: AsJson = False) -> None:
    data = client().get("/groups")
    if as_json:
        _json(data)
        return
    grid = table("name", "source", "members", "description")
    for g in data:
        grid.add_row(g["name"], g["source"], str(g["members"]), shorten(g["description"], 60))
    out.print(grid)


@group_app.command("show")
def group_show(name: str, as_json: AsJson = False) -> None:
    g = client().get(f"/groups/{name}")
    if as_json:
        _json(g)
        return
    members = [
        m["username"] + (f" ({m['source']})" if m["source"] != "local" else "")
        for m in g["member_list"]
    ]
    key_values(
        g["name"],
        [
            ("source", g["source"]),
            ("description", g["description"] or None),
            ("roles", g["roles"]),
            ("members", members),
        ],
    )


@group_app.command("create")
def group_create(name: str, description: str | None = typer.Option(None)) -> None:
    client().post("/groups", json={"name": name, "description": description})
    out.print(f"group [bold]{name}[/bold] created")


@group_app.command("delete")
def group_delete(name: str, yes: bool = typer.Option(False, "--yes", "-y")) -> None:
    if not yes:
        typer.confirm(f"delete group {name}?", abort=True)
    client().delete(f"/groups/{name}")
    out.print(f"group {name} deleted")


@group_app.command("add")
def group_add(name: str, usernames: list[str]) -> None:
    """Add users to a local group."""
    api = client()
    for username in usernames:
        api.put(f"/groups/{name}/members/{username}")
    out.print(f"added {', '.join(usernames)} to {name}")


@group_app.command("remove")
def group_remove(name: str, usernames: list[str]) -> None:
    """Remove users from a local group."""
    api = client()
    for username in usernames:
        api.delete(f"/groups/{name}/members/{username}")
    out.print(f"removed {', '.join(usernames)} from {name}")


# roles -----------------------------------------------------------------------------------------


def _levels(items: list[str]) -> dict[str, str]:
    levels: dict[str, str] = {}
    for item in items:
        category, sep, level = item.partition("=")
        if not sep:
            fail(f"--grant {item!r}: write CATEGORY=LEVEL, e.g. artifacts=write ({CATEGORIES})")
        levels[category] = level
    return levels


@role_app.command("list")
def role_list(as_json: AsJson = False) -> None:
    data = client().get("/roles")
    if as_json:
        _json(data)
        return
    grid = table("name", "built in", "levels", "description")
    for r in data:
        levels = ", ".join(f"{c}={v}" for c, v in r["levels"].items() if v != "none")
        grid.add_row(r["name"], _yes(r["builtin"]), levels or "-", r["description"] or "")
    out.print(grid)


@role_app.command("show")
def role_show(name: str, as_json: AsJson = False) -> None:
    r = client().get(f"/roles/{name}")
    if as_json:
        _json(r)
        return
    holders = [
        f"{h['kind']} {h['name']}" + (f" ({h['source']})" if h["source"] != "local" else "")
        for h in r["holders"]
    ]
    key_values(
        r["name"],
        [
            ("built in", r["builtin"]),
            ("description", r.get("description") or None),
            ("permissions", r["permissions"]),
            ("held by", holders),
        ],
    )


@role_app.command("create")
def role_create(
    name: str,
    grant: list[str] = typer.Option(
        [],
        "--grant",
        "-g",
        help=f"CATEGORY=LEVEL (none|read|write|manage); categories: {CATEGORIES}",
    ),
    description: str | None = typer.Option(None),
) -> None:
    """Create a custom role, e.g. `role create auditor -g audit=read -g channels=read`."""
    client().post(
        "/roles", json={"name": name, "permissions": _levels(grant), "description": description}
    )
    out.print(f"role [bold]{name}[/bold] created")


@role_app.command("update")
def role_update(
    name: str,
    grant: list[str] = typer.Option([], "--grant", "-g", help="CATEGORY=LEVEL; replaces all"),
    description: str | None = typer.Option(None),
) -> None:
    body: dict[str, Any] = {}
    if grant:
        body["permissions"] = _levels(grant)
    if description is not None:
        body["description"] = description
    if not body:
        fail("nothing to change: give --grant or --description")
    client().patch(f"/roles/{name}", json=body)
    out.print(f"role {name} updated")


@role_app.command("delete")
def role_delete(name: str, yes: bool = typer.Option(False, "--yes", "-y")) -> None:
    if not yes:
        typer.confirm(f"delete role {name}?", abort=True)
    client().delete(f"/roles/{name}")
    out.print(f"role {name} deleted")


def _holder(user: str | None, group: str | None) -> dict[str, str]:
    if (user is None) == (group is None):
        fail("give exactly one of --user or --group")
    return {"user": user} if user else {"group": group or ""}


@role_app.command("assign")
def role_assign(
    name: str,
    user: str | None = typer.Option(None, "--user", "-u"),
    group: str | None = typer.Option(None, "--group", "-g"),
) -> None:
    """Give a role to a user or a group."""
    client().post(f"/roles/{name}/assignments", json=_holder(user, group))
    out.print(f"role {name} assigned")


@role_app.command("unassign")
def role_unassign(
    name: str,
    user: str | None = typer.Option(None, "--user", "-u"),
    group: str | None = typer.Option(None, "--group", "-g"),
) -> None:
    client().delete(f"/roles/{name}/assignments", params=_holder(user, group))
    out.print(f"role {name} unassigned")


# audit -----------------------------------------------------------------------------------------


def _when(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        fail(f"{option}: {value!r} is not a date or time like 2026-11-26 or 2026-11-26T08:00")


@audit_app.command("query")
def audit_query(
    actor: str | None = typer.Option(None, "--actor", "-a"),
    type_: str | None = typer.Option(None, "--type", "-t", help="exact, or a prefix like auth."),
    target: str | None = typer.Option(None, "--target"),
    outcome: str | None = typer.Option(None, help="success | failure | denied"),
    since: str | None = typer.Option(None, help="ISO date/time"),
    until: str | None = typer.Option(None, help="ISO date/time"),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100_000),
    as_json: AsJson = False,
) -> None:
    """Audit events, newest first."""
    params = {
        "actor": actor,
        "type": type_,
        "target": target,
        "outcome": outcome,
        "since": _when(since, "--since"),
        "until": _when(until, "--until"),
    }
    params = {k: v for k, v in params.items() if v is not None}
    api = client()
    events: list[dict[str, Any]] = []
    cursor = None
    while len(events) < limit:
        page = api.get(
            "/audit",
            params={
                **params,
                "limit": min(1000, limit - len(events)),
                **({"cursor": cursor} if cursor else {}),
            },
        )
        events.extend(page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if as_json:
        _json(events)
        return
    table = Table("seq", "when (UTC)", "type", "outcome", "actor", "ip", "target", "change")
    table.columns[2].no_wrap = True
    table.columns[7].overflow = "fold"
    for e in events:
        target_text = f"{e['target_type'] or ''} {e['target_name'] or ''}".strip()
        table.add_row(
            str(e["seq"]),
            e["occurred_at"][5:19].replace("T", " "),
            e["event_type"],
            e["outcome"] if e["outcome"] == "success" else f"[red]{e['outcome']}[/red]",
            escape(e["actor"]),
            e["ip"] or "",
            escape(target_text),
            escape(_change(e)),
        )
    out.print(table)


def _change(event: dict[str, Any]) -> str:
    """before -> after for the fields that changed, then the details, as short key=value text."""
    before, after = event["before"] or {}, event["after"] or {}
    parts = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        parts.append(
            f"{key}: {_short(old)} -> {_short(new)}" if key in before else f"{key}={_short(new)}"
        )
    parts += [f"{k}={_short(v)}" for k, v in (event["details"] or {}).items()]
    return "; ".join(parts)


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return shorten(text, 40)


@audit_app.command("export")
def audit_export(
    output: Path | None = typer.Argument(None, help="File to write (over the API)"),
    fmt: str | None = typer.Option(
        None,
        "--format",
        "-f",
        help="json (lines) | csv; default json, with --to the audit.export_format setting",
    ),
    since: str | None = typer.Option(None),
    until: str | None = typer.Option(None),
    to: Path | None = typer.Option(
        None,
        "--to",
        help="Run the scheduled folder export once, on the server, into this folder: new "
        "events only, files named by seq range, with their hashes (audit.* settings)",
    ),
) -> None:
    """Export events (oldest first) to a file over the API, or with --to FOLDER, on the server,
    the events not yet exported there (as the scheduled audit export does)."""
    if to is not None:
        if output is not None or since or until:
            fail("--to exports every new event: give no file, --since or --until with it")
        if fmt not in (None, "json", "jsonl", "csv"):
            fail("--format must be json (lines) or csv")
        from stockade.cli.audit_files import export_to_folder  # the database layer: only here

        export_to_folder(to, None if fmt is None else "csv" if fmt == "csv" else "jsonl")
        return
    if output is None:
        fail("give a file to write, or --to FOLDER")
    fmt = fmt or "json"
    if fmt not in ("json", "csv"):
        fail("--format must be json or csv")
    params = {"format": fmt, "since": _when(since, "--since"), "until": _when(until, "--until")}
    api = client()
    body = api.try_raw("/audit/export", params={k: v for k, v in params.items() if v})
    output.write_bytes(body)
    out.print(f"wrote {output}")


@audit_app.command("verify-export")
def audit_verify_export(
    paths: list[Path] = typer.Argument(..., help="Exported files, or folders of them"),
) -> None:
    """Check the hash chain of exported audit files offline; exit 1 at the first break."""
    from stockade.cli.audit_files import verify_export  # the database layer: only here

    verify_export(paths)


@audit_app.command("verify")
def audit_verify(as_json: AsJson = False) -> None:
    """Check the hash chain of the whole log; exit 1 at the first broken event."""
    report = client().get("/audit/verify")
    if as_json:
        _json(report)
        if not report["ok"]:
            raise typer.Exit(1)
        return
    if report["ok"]:
        out.print(
            f"audit chain intact: {report['checked']} events, head {report['head'][:16]}…"
            if report["head"]
            else "audit chain intact: no events"
        )
        return
    fail(
        f"audit chain broken at event {report['broken_at']}: {report['problem']} "
        f"({report['checked']} events checked before it)"
    )
