"""ldap test, ldap sync: check the LDAP / Active Directory connection and import users now."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from stockade.cli.client import client
from stockade.cli.output import AsJson, print_json

out = Console(highlight=False, soft_wrap=True)
app = typer.Typer(
    help="LDAP / Active Directory: test the connection, synchronize users and groups.",
    no_args_is_help=True,
)


def _names(values: list[str], limit: int = 20) -> str:
    shown = ", ".join(values[:limit])
    return shown + (f", … ({len(values) - limit} more)" if len(values) > limit else "")


def _print_user(user: dict[str, Any]) -> None:
    state = "active" if user["active"] else "DISABLED in the directory"
    out.print(f"user [bold]{user['username']}[/bold] ({state}): {user['dn']}")
    out.print(f"  email: {user['email'] or '-'}   name: {user['display_name'] or '-'}")
    out.print(f"  groups: {_names(user['groups']) or '-'}")
    out.print(f"  roles from ldap.group_roles: {_names(user['roles']) or '-'}")


@app.command("test")
def check_connection(
    user: str | None = typer.Option(
        None, "--user", "-u", help="Also look this user up and show their groups"
    ),
    as_json: AsJson = False,
) -> None:
    """Bind to the directory as the server does, and count its users and groups."""
    data = client().post("/ldap/test", json={"username": user})
    if as_json:
        print_json(data)
        return
    out.print(
        f"connected to {data['url']} as {data['bound_as']} (TLS: {data['tls']}) "
        f"in {data['elapsed_ms']} ms"
    )
    out.print(f"{data['users']} users ({data['disabled_users']} disabled), {data['groups']} groups")
    if user and data["user"] is None:
        out.print(f"user [bold]{user}[/bold] not found in the directory")
    elif data["user"] is not None:
        _print_user(data["user"])


@app.command("sync")
def sync_now(as_json: AsJson = False) -> None:
    """Import users and groups from the directory now; users it no longer has are disabled."""
    data = client().post("/ldap/sync")
    if as_json:
        print_json(data)
        return
    out.print(
        f"synchronized {data['users']} users and {data['groups']} groups: "
        f"{len(data['created'])} created, {len(data['updated'])} updated, "
        f"{len(data['disabled'])} disabled, {len(data['skipped'])} skipped"
    )
    for label in ("created", "updated", "disabled", "skipped"):
        if data[label]:
            out.print(f"  {label}: {_names(data[label])}")
    if data["skipped"]:
        out.print("  (skipped: the name belongs to another account here)")
