"""stockade search: packages across the channels you can read, and where a package is."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from stockade.cli.client import client, fail
from stockade.cli.output import NONE, AsJson, print_json, table

out = Console()
Many = list[str] | None


def search(
    query: str = typer.Argument("", help="a name, a prefix, a name with a typo, or words"),
    where: bool = typer.Option(
        False, "--where", help="QUERY is a package name: every channel, version and build of it"
    ),
    channel: Many = typer.Option(None, "--channel", help="only this channel (repeatable)"),
    subdir: Many = typer.Option(None, "--subdir", help="with a build for this platform"),
    license_: Many = typer.Option(None, "--license", help="with a build under this licence"),
    severity: Many = typer.Option(
        None, "--severity", help="worst open CVE of a build: none|low|medium|high|critical"
    ),
    scan: Many = typer.Option(None, "--scan", help="scan verdict: clean, suspicious, …"),
    signature: Many = typer.Option(
        None, "--signature", help="signed, upstream-verified, …, unsigned"
    ),
    has_downloads: bool | None = typer.Option(
        None, "--downloaded/--never-downloaded", help="downloaded at least once, or never"
    ),
    limit: int = typer.Option(20, min=1, max=200, help="how many hits"),
    as_json: AsJson = False,
) -> None:
    """Search every channel you can read: exact name first, then prefix, names containing the
    text, words of summaries and descriptions, then names close to a typo; ties by downloads."""
    if where:
        _where(query, as_json)
        return
    params: dict[str, Any] = {
        "q": query,
        "channel": channel or [],
        "subdir": subdir or [],
        "license": license_ or [],
        "severity": severity or [],
        "scan": scan or [],
        "signature": signature or [],
        "limit": limit,
    }
    if has_downloads is not None:
        params["has_downloads"] = has_downloads
    if not query and not any(v for k, v in params.items() if k not in ("q", "limit")):
        fail("say what to look for: a QUERY, a filter, or both", code=2)
    hits = client().get("/search", params=params)
    if as_json:
        print_json(hits)
        return
    if not hits:
        out.print("nothing matches in the channels you can read")
        return
    rows = table("package", "channel", "latest", "platforms", "match", "downloads", "summary")
    for h in hits:
        rows.add_row(  # what the server says is text, never markup (a summary is anyone's)
            Text(h["name"]),
            Text(h["channel"]),
            Text(h["latest_version"]),
            Text(", ".join(h["subdirs"])),
            Text(h["match"]),
            str(h["downloads"]),
            Text(h["summary"]) if h["summary"] else NONE,
        )
    out.print(rows)


def _where(name: str, as_json: bool) -> None:
    if not name:
        fail("say which package: stockade search --where NAME", code=2)
    held = client().get(f"/search/where/{quote(name, safe='')}")
    if as_json:
        print_json(held)
        return
    if not held:
        out.print(f"no channel you can read serves {escape(name)}")
        return
    rows = table("channel", "version", "build", "platform", "scan", "signature", "worst CVE")
    for h in held:
        worst = (
            f"{h['cve_severity']} ({h['open_vulnerabilities']} open)" if h["cve_severity"] else NONE
        )
        rows.add_row(
            *(Text(h[k]) for k in ("channel", "version", "build", "subdir", "scan_status")),
            Text(h["signature"]),
            worst,
        )
    out.print(rows)
