"""``stockade downloads report|list``: who downloaded what, over the REST API (SPEC §10)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from stockade.cli.client import client, fail
from stockade.cli.output import AsJson, cell, out, print_json, table, when

downloads_app = typer.Typer(
    help="Download reports: by package, channel or user; the raw downloads. Admins see every "
    "channel, channel owners and managers their channels.",
    no_args_is_help=True,
)
BY = ("package", "channel", "user")

Channel = typer.Option(None, "--channel", "-c", help="one channel (that you manage)")
Package = typer.Option(None, "--package", "-p", help="a package name")
User = typer.Option(None, "--user", "-u", help="a user or service account name")
Since = typer.Option(None, help="from this date or time (UTC), like 2026-11-26")
Until = typer.Option(None, help="up to this date or time (UTC, excluded)")


def _when(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).isoformat()
    except ValueError:
        fail(f"{option}: {value!r} is not a date or time like 2026-11-26 or 2026-11-26T08:00")


def _params(**given: str | None) -> dict[str, str]:
    return {k: v for k, v in given.items() if v is not None}


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return f"{value} B"


@downloads_app.command("report")
def downloads_report(
    by: str = typer.Option("package", "--by", "-b", help="package | channel | user"),
    channel: str | None = Channel,
    package: str | None = Package,
    user: str | None = User,
    since: str | None = Since,
    until: str | None = Until,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000),
    csv_file: Path | None = typer.Option(None, "--csv", help="write the report as CSV here"),
    as_json: AsJson = False,
) -> None:
    """Downloads and bytes by package, channel or user, most downloaded first.

    A download is a package file sent in full (status 200); bytes count every byte sent.
    """
    if by not in BY:
        fail(f"--by must be one of {', '.join(BY)} (got {by!r})")
    params = _params(
        by=by,
        channel=channel,
        package=package,
        user=user,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        limit=str(limit),
    )
    api = client()
    if csv_file is not None:
        body = api.try_raw("/downloads/report", params={**params, "format": "csv"})
        try:
            csv_file.write_bytes(body)
        except OSError as exc:
            fail(f"cannot write {csv_file}: {exc.strerror}")
        out.print(f"wrote {csv_file}")
        return
    report: dict[str, Any] = api.get("/downloads/report", params=params)
    if as_json:
        print_json(report)
        return
    _print_report(by, report)


def _print_report(by: str, report: dict[str, Any]) -> None:
    columns = [by, *(["channel"] if by == "package" else []), "downloads", "bytes"]
    grid = table(*columns, title=f"Downloads by {by}")
    for row in report["totals"]:
        extra = [Text(cell(row["channel"]))] if by == "package" else []
        grid.add_row(Text(row["key"]), *extra, str(row["downloads"]), _size(row["bytes"]))
    out.print(grid)
    days = report["per_day"]
    if days:
        total = sum(d["downloads"] for d in days)
        out.print(f"{total} downloads on {len(days)} days, {days[0]['day']} to {days[-1]['day']}")
    else:
        out.print("no downloads in this range")


@downloads_app.command("list")
def downloads_list(
    channel: str | None = Channel,
    package: str | None = Package,
    user: str | None = User,
    since: str | None = Since,
    until: str | None = Until,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=100_000),
    as_json: AsJson = False,
) -> None:
    """The downloads themselves, newest first (kept per the server's retention)."""
    params = _params(
        channel=channel,
        package=package,
        user=user,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
    )
    api = client()
    rows: list[dict[str, Any]] = []
    cursor = None
    while len(rows) < limit:
        page = api.get(
            "/downloads",
            params={
                **params,
                "limit": min(1000, limit - len(rows)),
                **({"cursor": cursor} if cursor else {}),
            },
        )
        rows.extend(page["downloads"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    if as_json:
        print_json(rows)
        return
    grid = table("when (UTC)", "who", "channel", "file", "status", "bytes", "from")
    for r in rows:
        who = r["principal"] + (f" (token {r['token_id']})" if r["token_id"] else "")
        grid.add_row(
            when(r["occurred_at"]),
            Text(who),
            Text(r["channel"]),
            Text(f"{r['subdir']}/{r['filename']}"),
            str(r["status"]),
            _size(r["bytes"]),
            Text(cell(r["ip"])),
        )
    out.print(grid)
    if not rows:
        sys.stderr.write("no downloads match\n")
