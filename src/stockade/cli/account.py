"""login, logout, whoami, token create|list|revoke, conda-config."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console
from rich.table import Table

from stockade.cli.client import ApiClient, CliError, client, describe_problem, fail
from stockade.cli.profile import Profile, forget_profile, load_profile, save_profile

out = Console()
token_app = typer.Typer(help="Personal API tokens.", no_args_is_help=True)


def login(
    url: str = typer.Argument(..., help="The server, e.g. http://127.0.0.1:8000"),
    username: str | None = typer.Option(None, "--username", "-u"),
    password: str | None = typer.Option(None, "--password", "-p", help="Prompted when omitted"),
    token: str | None = typer.Option(None, "--token", help="Use an existing token instead"),
    expires_in_days: int = typer.Option(90, help="Lifetime of the token created for this CLI"),
) -> None:
    """Sign in and store a profile (server URL and a token made for this CLI)."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(f"{url!r} is not an http(s) URL")
    if token is None:
        username = username or input("username: ")
        password = password or getpass.getpass("password: ")
        try:
            response = httpx.post(
                f"{url}/api/v1/tokens",
                json={"name": f"cli@{os.uname().nodename}", "expires_in_days": expires_in_days},
                auth=(username, password),
                timeout=30,
            )
        except httpx.HTTPError as exc:
            fail(f"cannot reach {url}: {exc.__class__.__name__}")
        if response.status_code != 201:
            fail(describe_problem(response))
        token = response.json()["token"]
    who = ApiClient(Profile(url, token)).get("/whoami")
    if who["anonymous"]:
        fail("the server did not accept the token")
    path = save_profile(Profile(url, token))
    out.print(f"signed in to {url} as [bold]{who['username']}[/bold] (profile: {path})")


def logout() -> None:
    """Forget the stored profile."""
    out.print("profile removed" if forget_profile() else "no profile stored")


def whoami() -> None:
    """Show who the CLI acts as."""
    who = client().get("/whoami")
    out.print(f"{who['username']}{' (admin)' if who['admin'] else ''} via {who['via']}")


@token_app.command("create")
def token_create(
    name: str,
    expires_in_days: int = typer.Option(30, "--expires-in-days", "-e"),
) -> None:
    """Create a token; it is printed once."""
    data = client().post("/tokens", json={"name": name, "expires_in_days": expires_in_days})
    out.print(f"token {data['id']} ({data['name']}), expires {data['expires_at']}:")
    print(data["token"])


@token_app.command("list")
def token_list() -> None:
    """List your tokens with their last use."""
    table = Table("id", "name", "prefix", "created", "expires", "last used", "revoked")
    for t in client().get("/tokens"):
        table.add_row(
            str(t["id"]),
            t["name"],
            t["prefix"] + "…",
            t["created_at"][:19],
            t["expires_at"][:19],
            (t["last_used_at"] or "-")[:19],
            (t["revoked_at"] or "-")[:19],
        )
    out.print(table)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token at once."""
    client().delete(f"/tokens/{token_id}")
    out.print(f"token {token_id} revoked")


def conda_config(
    file: Path = typer.Option(Path.home() / ".condarc", "--file", "-f", help="Where to write"),
    with_token: bool = typer.Option(False, "--with-token", help="Put the profile's token in URLs"),
    channel: list[str] = typer.Option([], "--channel", "-c", help="Channels to list, in order"),
    stdout: bool = typer.Option(False, "--stdout", help="Print instead of writing"),
) -> None:
    """Write a .condarc that points conda, mamba and pixi at this server."""
    profile = load_profile()
    if profile is None:
        fail("no server configured: run `stockade login URL` first")
    alias = f"{profile.url}/conda"
    if with_token:
        if not profile.token:
            fail("the profile has no token")
        alias = f"{profile.url}/t/{profile.token}/conda"
    lines = [f"channel_alias: {alias}"]
    if channel:
        lines.append("channels:")
        lines.extend(f"  - {c}" for c in channel)
        lines.append("default_channels: []")
    text = "\n".join(lines) + "\n"
    if stdout:
        print(text, end="")
        return
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    out.print(f"wrote {file}")


__all__ = ["CliError", "conda_config", "login", "logout", "token_app", "whoami"]
