"""login, logout, whoami, token create|list|revoke, conda-config."""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import typer
from rich.console import Console

from stockade.cli.client import ApiClient, CliError, client, fail
from stockade.cli.output import NONE, AsJson, print_json, table, when
from stockade.cli.profile import Profile, forget_profile, load_profile, save_profile

out = Console()
# conda reads a URL token with ``/t/([a-zA-Z0-9-]*)`` (conda/common/url.py, split_anaconda_token)
CONDA_URL_TOKEN = re.compile(r"[A-Za-z0-9-]+")
# path segments that start a Stockade URL below the base: conda channels, the API, conda token URLs
KNOWN_SUFFIXES = ("conda", "api", "t")
TOKEN_IN_URL = re.compile(r"/t/[^/?#]+")
err_console = Console(stderr=True)
token_app = typer.Typer(help="Personal API tokens.", no_args_is_help=True)


def login(
    url: str = typer.Argument(
        ..., help="The server's base URL, e.g. http://127.0.0.1:8000 (not …/conda or …/api)"
    ),
    username: str | None = typer.Option(None, "--username", "-u"),
    password: str | None = typer.Option(None, "--password", "-p", help="Prompted when omitted"),
    token: str | None = typer.Option(None, "--token", help="Use an existing token instead"),
    expires_in_days: int = typer.Option(90, help="Lifetime of the token created for this CLI"),
) -> None:
    """Sign in and store a profile (server URL and a token made for this CLI)."""
    url = base_url(url)
    if token is None:
        username = username or input("username: ")
        password = password or getpass.getpass("password: ")
        created = ApiClient(Profile(url, None), timeout=30).request(
            "POST",
            "/tokens",
            json={"name": f"cli@{os.uname().nodename}", "expires_in_days": expires_in_days},
            auth=(username, password),
        )
        token = created.get("token") if isinstance(created, dict) else None
        if not token:
            fail(f"{url} answered without a token: is it a Stockade server?")
    who = ApiClient(Profile(url, token)).get("/whoami")
    if who["anonymous"]:
        fail("the server did not accept the token")
    path = save_profile(Profile(url, token))
    out.print(f"signed in to {url} as [bold]{who['username']}[/bold] (profile: {path})")


def base_url(url: str) -> str:
    """The server's base URL from what the user typed: ``/conda``, ``/api``, ``/t/TOKEN`` and
    anything after them are cut off, with a note; anything else that is not http(s) fails."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(f"{url!r} is not an http(s) URL: give the server's base URL, e.g. http://host:8000")
    segments = parts.path.split("/")
    cut = next((i for i, s in enumerate(segments) if s in KNOWN_SUFFIXES), len(segments))
    base = f"{parts.scheme}://{parts.netloc}{'/'.join(segments[:cut])}".rstrip("/")
    if cut < len(segments) or parts.query or parts.fragment:
        err_console.print(
            f"note: using {base}, the server's base URL (not {TOKEN_IN_URL.sub('/t/…', url)})",
            markup=False,
            highlight=False,
        )
    return base


def logout() -> None:
    """Forget the stored profile."""
    out.print("profile removed" if forget_profile() else "no profile stored")


def whoami(as_json: AsJson = False) -> None:
    """Show who the CLI acts as."""
    who = client().get("/whoami")
    if as_json:
        print_json(who)
        return
    out.print(f"{who['username']}{' (admin)' if who['admin'] else ''} via {who['via']}")
    if who.get("groups"):
        out.print(f"groups: {', '.join(who['groups'])}")
    roles = [r for r in who.get("roles", []) if r not in ("everyone", "author")]
    if roles:
        out.print(f"roles: {', '.join(roles)}")
    if who.get("token_kind") in ("scope", "resource"):
        out.print(f"token: {who['token_kind']} (restricted)")


@token_app.command("create")
def token_create(
    name: str,
    expires_in_days: int = typer.Option(30, "--expires-in-days", "-e"),
    scope: list[str] = typer.Option(
        [], "--scope", "-s", help="Make a scope token: category:level, e.g. artifacts:read (repeat)"
    ),
    channel: list[str] = typer.Option(
        [],
        "--channel",
        "-c",
        help="Make a resource token: CHANNEL=LEVEL, e.g. team=read or team/*=write (repeat)",
    ),
    user: str | None = typer.Option(None, "--user", "-u", help="Admins: for a service account"),
) -> None:
    """Create a token; the secret is printed once, on stdout."""
    if scope and channel:
        fail("a token has either scopes (--scope) or channels (--channel), not both")
    body: dict[str, object] = {"name": name, "expires_in_days": expires_in_days}
    if scope:
        body.update(kind="scope", scopes=scope)
    elif channel:
        resources: dict[str, str] = {}
        for item in channel:
            target, sep, level = item.partition("=")
            if not sep or not target:
                fail(f"--channel {item!r}: write CHANNEL=LEVEL, e.g. team=read")
            resources[target] = level
        body.update(kind="resource", resources=resources)
    if user:
        body["user"] = user
    data = client().post("/tokens", json=body)
    restriction = ", ".join(data["scopes"]) or ", ".join(
        f"{k}={v}" for k, v in data["resources"].items()
    )
    extra = f" [{restriction}]" if restriction else ""
    err_console.print(
        f"{data['kind']} token {data['id']} ({data['name']}) for {data['owner']}{extra}, "
        f"expires {data['expires_at'][:19]}. Shown once:",
        markup=False,
        highlight=False,
    )
    print(data["token"])


@token_app.command("list")
def token_list(
    user: str | None = typer.Option(None, "--user", "-u", help="Admins: someone else's tokens"),
    as_json: AsJson = False,
) -> None:
    """List tokens (never their secrets) with their last use."""
    params = {"user": user} if user else {}
    data = client().get("/tokens", params=params)
    if as_json:
        print_json(data)
        return
    grid = table("id", "name", "kind", "prefix", "limits", "expires", "last used", "state")
    for t in data:
        limits = ", ".join(t["scopes"]) or ", ".join(f"{k}={v}" for k, v in t["resources"].items())
        state = "revoked" if t["revoked_at"] else "active" if t["active"] else "expired"
        grid.add_row(
            str(t["id"]),
            t["name"],
            t["kind"],
            t["prefix"] + "…",
            limits or NONE,
            when(t["expires_at"]),
            when(t["last_used_at"]),
            state,
        )
    out.print(grid)


@token_app.command("revoke")
def token_revoke(token_id: int) -> None:
    """Revoke a token at once."""
    client().delete(f"/tokens/{token_id}")
    out.print(f"token {token_id} revoked")


def conda_config(
    file: Path = typer.Option(Path.home() / ".condarc", "--file", "-f", help="Where to write"),
    with_token: bool = typer.Option(
        False,
        "--with-token",
        help="Put the profile's token in URLs (channel_alias HOST/t/TOKEN/conda; needs a stk- token)",
    ),
    channel: list[str] = typer.Option([], "--channel", "-c", help="Channels to list, in order"),
    stdout: bool = typer.Option(False, "--stdout", help="Print instead of writing"),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Turn on conda's signature checks (extra_safety_checks, signing_metadata_url_base) "
        "against this server's content-trust keys",
    ),
    trust_dir: Path | None = typer.Option(
        None,
        "--trust-dir",
        help="With --verify: save the server's 1.root.json there (conda's av_data_dir, shown by "
        "`conda info --json`); compare its fingerprint with `stockade signing status`",
    ),
) -> None:
    """Write a .condarc that points conda, mamba and pixi at this server."""
    profile = load_profile()
    if profile is None:
        fail("no server configured: run `stockade login URL` first")
    alias = f"{profile.url}/conda"
    if with_token:
        if not profile.token:
            fail("the profile has no token")
        if not CONDA_URL_TOKEN.fullmatch(profile.token):
            fail(
                "this token has characters conda cannot read in a URL (an older stk_ token): "
                "create a new one (`stockade token create NAME`), `stockade login` with it, "
                "then run this again"
            )
        alias = f"{profile.url}/t/{profile.token}/conda"
    lines = [f"channel_alias: {alias}"]
    if channel:
        lines.append("channels:")
        lines.extend(f"  - {c}" for c in channel)
        lines.append("default_channels: []")
    if verify:
        lines += ["extra_safety_checks: true", f"signing_metadata_url_base: {profile.url}/signing"]
        if trust_dir is not None:
            _save_root(profile.url, trust_dir)
    text = "\n".join(lines) + "\n"
    if stdout:
        print(text, end="")
        return
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    out.print(f"wrote {file}")


def _save_root(url: str, folder: Path) -> None:
    """Save the server's first root (conda chains from it to the newest by itself)."""
    import httpx  # an HTTP client when a request is made, not to show --help

    try:
        response = httpx.get(f"{url}/signing/1.root.json", timeout=30)
    except httpx.HTTPError as exc:
        fail(f"cannot fetch {url}/signing/1.root.json: {exc}")
    if response.status_code == 404:
        fail("the server has no signing keys yet (`stockade signing init`)")
    if response.status_code != 200:
        fail(f"{url}/signing/1.root.json answered {response.status_code}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "1.root.json").write_bytes(response.content)
    keys = response.json().get("signed", {}).get("delegations", {}).get("root", {}).get("pubkeys")
    out.print(
        f"saved {folder / '1.root.json'} (root keys {', '.join(k[:16] + '…' for k in keys or [])})"
    )


__all__ = ["CliError", "conda_config", "login", "logout", "token_app", "whoami"]
