"""webhook add|list|show|update|remove|ping|deliveries|redeliver: a channel's notifications."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import quote

import typer

from stockade.cli.client import client, fail
from stockade.cli.output import AsJson, key_values, out, print_json, table, when
from stockade.cli.text import shorten

webhook_app = typer.Typer(
    help="Webhooks of a channel: calls on new vulnerability matches and on matches turned active.",
    no_args_is_help=True,
)
EVENTS = ("vulnerability.matched", "vulnerability.active")


def _print_json(data: object) -> None:
    print_json(data)


def _path(channel: str, hook_id: int | None = None) -> str:
    base = f"/channels/{quote(channel, safe='/')}/webhooks"
    return base if hook_id is None else f"{base}/{hook_id}"


def _events(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    chosen = [e.strip() for v in values for e in v.split(",") if e.strip()]
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        fail(f"unknown event {unknown[0]!r}: one of {', '.join(EVENTS)}")
    return chosen


def _read_secret() -> str:
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        fail("--secret-stdin: no secret on standard input")
    return secret


def _show_secret(data: dict[str, Any]) -> None:
    if data.get("secret"):
        out.print("secret (shown once; the receiver verifies X-Stockade-Signature with it):")
        print(data["secret"])


@webhook_app.command("add")
def add(
    channel: str,
    url: str = typer.Option(..., help="http(s) endpoint the calls are POSTed to"),
    event: list[str] | None = typer.Option(
        None, "--event", help="vulnerability.matched | vulnerability.active (default: both)"
    ),
    description: str = typer.Option("", help="what this endpoint is"),
    secret_stdin: bool = typer.Option(
        False, "--secret-stdin", help="read the signing secret from stdin (default: generated)"
    ),
    disabled: bool = typer.Option(False, "--disabled", help="add it switched off"),
    as_json: AsJson = False,
) -> None:
    """Add a webhook to a channel you manage; prints its secret once."""
    body: dict[str, Any] = {"url": url, "description": description, "enabled": not disabled}
    events = _events(event)
    if events is not None:
        body["events"] = events
    if secret_stdin:
        body["secret"] = _read_secret()
    data = client().post(_path(channel), json=body)
    if as_json:
        _print_json(data)
        return
    out.print(
        f"webhook [bold]{data['id']}[/bold] of {data['channel']} → {data['url']} "
        f"({', '.join(data['events'])})"
    )
    if not secret_stdin:
        _show_secret(data)


@webhook_app.command("list")
def list_(channel: str, as_json: AsJson = False) -> None:
    """The webhooks of a channel (needs manage on it)."""
    data = client().get(_path(channel))
    if as_json:
        _print_json(data)
        return
    grid = table("id", "url", "events", "enabled", "description")
    for h in data:
        grid.add_row(
            str(h["id"]),
            h["url"],
            ", ".join(h["events"]),
            "yes" if h["enabled"] else "no",
            shorten(h["description"], 40),
        )
    out.print(grid)


@webhook_app.command("show")
def show(channel: str, hook_id: int, as_json: AsJson = False) -> None:
    """One webhook (never its secret)."""
    data = client().get(_path(channel, hook_id))
    if as_json:
        _print_json(data)
        return
    key_values(
        f"webhook {data['id']} of {data['channel']}",
        [
            ("url", data["url"]),
            ("events", data["events"]),
            ("enabled", data["enabled"]),
            ("description", data["description"] or None),
            ("created", f"{when(data['created_at'])} by {data['created_by'] or '-'}"),
        ],
    )


@webhook_app.command("update")
def update(
    channel: str,
    hook_id: int,
    url: str | None = typer.Option(None),
    event: list[str] | None = typer.Option(None, "--event"),
    description: str | None = typer.Option(None),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled"),
    secret_stdin: bool = typer.Option(False, "--secret-stdin", help="a new secret from stdin"),
    rotate_secret: bool = typer.Option(False, "--rotate-secret", help="generate a new secret"),
) -> None:
    """Change a webhook (only the options given); a new secret is printed once."""
    body: dict[str, Any] = {
        k: v
        for k, v in {"url": url, "description": description, "enabled": enabled}.items()
        if v is not None
    }
    events = _events(event)
    if events is not None:
        body["events"] = events
    if secret_stdin and rotate_secret:
        fail("give --secret-stdin or --rotate-secret, not both")
    if secret_stdin:
        body["secret"] = _read_secret()
    if rotate_secret:
        body["rotate_secret"] = True
    if not body:
        fail("nothing to change: give at least one option")
    data = client().patch(_path(channel, hook_id), json=body)
    out.print(f"webhook [bold]{data['id']}[/bold] of {data['channel']} updated")
    if rotate_secret:
        _show_secret(data)


@webhook_app.command("remove")
def remove(
    channel: str, hook_id: int, yes: bool = typer.Option(False, "--yes", help="do not ask")
) -> None:
    """Remove a webhook and its deliveries."""
    if not yes:
        typer.confirm(f"remove webhook {hook_id} of {channel}?", abort=True)
    client().delete(_path(channel, hook_id))
    out.print(f"webhook [bold]{hook_id}[/bold] of {channel} removed")


@webhook_app.command("ping")
def ping(channel: str, hook_id: int) -> None:
    """Queue a `ping` call to try the endpoint; see `deliveries` for how it went."""
    data = client().post(f"{_path(channel, hook_id)}/ping")
    out.print(f"ping queued: delivery {data['delivery_id']}")


@webhook_app.command("deliveries")
def deliveries(
    channel: str,
    hook_id: int,
    limit: int = typer.Option(20, min=1, max=500),
    as_json: AsJson = False,
) -> None:
    """Recent deliveries, newest first, with the outcome of their last attempt."""
    data = client().get(f"{_path(channel, hook_id)}/deliveries", params={"limit": limit})
    if as_json:
        _print_json(data)
        return
    grid = table("delivery", "event", "state", "attempts", "last", "created")
    for d in data:
        last = d["last_error"] or (str(d["last_status_code"]) if d["last_status_code"] else "-")
        grid.add_row(
            d["delivery_id"],
            d["event"],
            d["state"],
            str(d["attempts"]),
            shorten(last, 50),
            when(d["created_at"]),
        )
    out.print(grid)


@webhook_app.command("redeliver")
def redeliver(channel: str, hook_id: int, delivery_id: str) -> None:
    """Send a delivery again (same id and body)."""
    path = f"{_path(channel, hook_id)}/deliveries/{quote(delivery_id, safe='')}/redeliver"
    data = client().post(path)
    out.print(f"delivery {data['delivery_id']} queued again")
