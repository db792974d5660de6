"""cve feed add|list|show|update|delete, cve sync, cve list|show|curate|history,
cve import|export, cve names list|add|remove|import."""

from __future__ import annotations

import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.status import Status
from rich.table import Column
from rich.text import Text

from stockade.cli.client import ApiClient, CliError, answer_problem, client, fail, unreachable
from stockade.cli.cve_view import feed_status, print_advisory, print_feed
from stockade.cli.output import NONE, AsJson, print_json, score_cell, table
from stockade.cli.report_view import severity_text
from stockade.cli.text import shorten

out = Console()
cve_app = typer.Typer(help="Vulnerabilities: feeds, matches, curation.", no_args_is_help=True)
feed_app = typer.Typer(
    help="Vulnerability feeds (NVD, CVE 5, OSV; KEV, EPSS; cve.zip).", no_args_is_help=True
)
cve_app.add_typer(feed_app, name="feed")
SYNC_POLL_S = 0.5


def _print_json(data: object) -> None:
    print_json(data)


def _feed_line(feed: dict[str, Any]) -> str:
    status = feed["last_status"] or "never synced"
    when = (feed["last_sync_at"] or "")[:19]
    return (
        f"feed [bold]{feed['name']}[/bold] ({feed['format']}) {feed['url']}: {status}"
        f"{' at ' + when if when else ''}; {feed['advisories']} advisories"
    )


@feed_app.command("add")
def feed_add(
    name: str,
    url: str = typer.Option(
        ..., help="file:///folder, file:///file.json, https://…, or airgap: (bundle feeds)"
    ),
    fmt: str = typer.Option(..., "--format", help="osv | nvd | cve5 | kev | epss | bundle"),
    schedule: str = typer.Option("0 * * * *", help="cron expression (default hourly)"),
    disabled: bool = typer.Option(False, "--disabled", help="add it without a schedule"),
    check: bool = typer.Option(
        True,
        "--check/--no-check",
        help="check the source first (exists, answers with something of the format); "
        "--no-check for a source that is offline on purpose",
    ),
) -> None:
    """Add a feed. Its source is checked first: one the server cannot read is refused and
    nothing is added. It syncs at its schedule; `stockade cve sync NAME` syncs it now."""
    body = {"name": name, "url": url, "format": fmt, "schedule": schedule, "enabled": not disabled}
    body["check"] = check
    data = client().post("/cve/feeds", json=body)
    out.print(_feed_line(data), highlight=False)


@feed_app.command("list")
def feed_list(as_json: AsJson = False) -> None:
    """Feeds with their last sync."""
    data = client().get("/cve/feeds")
    if as_json:
        _print_json(data)
        return
    grid = table("name", "format", "url", "schedule", "last sync", "status", "advisories")
    for f in data:
        grid.add_row(
            f["name"],
            f["format"],
            f["url"],
            f["schedule"] if f["enabled"] else "disabled",
            (f["last_sync_at"] or "")[:19],
            feed_status(f) if f["last_status"] else "",
            str(f["advisories"]),
        )
    out.print(grid)


@feed_app.command("show")
def feed_show(name: str, as_json: AsJson = False) -> None:
    """One feed: its source, schedule, last sync and error, advisories."""
    data = client().get(f"/cve/feeds/{name}")
    if as_json:
        _print_json(data)
        return
    print_feed(data)


@feed_app.command("update")
def feed_update(
    name: str,
    url: str | None = typer.Option(None),
    fmt: str | None = typer.Option(None, "--format"),
    schedule: str | None = typer.Option(None),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled"),
    check: bool = typer.Option(
        True, "--check/--no-check", help="check a new URL or format first, as `feed add` does"
    ),
) -> None:
    """Change a feed (a new URL or format is checked first, unless --no-check)."""
    body = {
        k: v
        for k, v in {"url": url, "format": fmt, "schedule": schedule, "enabled": enabled}.items()
        if v is not None
    }
    if not check:
        body["check"] = False
    out.print(_feed_line(client().patch(f"/cve/feeds/{name}", json=body)), highlight=False)


@feed_app.command("delete")
def feed_delete(name: str) -> None:
    """Remove a feed (its advisories stay)."""
    client().delete(f"/cve/feeds/{name}")
    out.print(f"feed {name} deleted", highlight=False)


def follow_sync(api: ApiClient, name: str, timeout_s: float = 3600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with Status(f"syncing {name}…", console=out):
        while True:
            feed: dict[str, Any] = api.get(f"/cve/feeds/{name}")
            if feed["last_status"] != "queued":
                return feed
            if time.monotonic() > deadline:
                fail(f"feed {name}: the sync did not end within {timeout_s:.0f}s")
            time.sleep(SYNC_POLL_S)


@cve_app.command("sync")
def sync(
    name: str,
    follow: bool = typer.Option(False, "--follow", "-f", help="wait until the sync ends"),
) -> None:
    """Sync a feed now; with --follow, wait and print the outcome (exit 1 if it failed or its
    source did not answer)."""
    api = client()
    api.post(f"/cve/feeds/{name}/sync")
    out.print(f"sync of feed [bold]{name}[/bold] queued", highlight=False)
    if not follow:
        return
    feed = follow_sync(api, name)
    out.print(_feed_line(feed), highlight=False)
    if feed["last_error"]:
        out.print(feed["last_error"], highlight=False, markup=False)
    if feed["last_status"] in ("failed", "unreachable"):
        raise typer.Exit(1)


@cve_app.command("list")
def list_cves(
    channel: str | None = typer.Option(None, help="only advisories matching this channel"),
    package: str | None = typer.Option(None, help="only advisories matching this conda name"),
    severity: str | None = typer.Option(None, help="comma-separated: low,medium,high,critical"),
    status: str | None = typer.Option(None, help="comma-separated match statuses"),
    kev: bool | None = typer.Option(None, "--kev/--no-kev"),
    query: str | None = typer.Option(None, "--query", "-q", help="id, alias or summary text"),
    limit: int = typer.Option(100, min=1, max=10_000, help="rows at most"),
    as_json: AsJson = False,
) -> None:
    """Vulnerabilities; with --channel/--package/--status, the matched versions on each row."""
    params: dict[str, Any] = {
        "channel": channel,
        "package": package,
        "severity": _csv(severity),
        "status": _csv(status),
        "kev": None if kev is None else str(kev).lower(),
        "q": query,
    }
    rows = _pages(client(), {k: v for k, v in params.items() if v is not None}, limit)
    if as_json:
        _print_json(rows)
        return
    grid = table(Column("advisory", no_wrap=True), "score", "severity", "matched", "summary")
    for r in rows:
        matched = ", ".join(
            f"{p['name']} {p['version']} ({p['status']})" for p in r["packages"] or []
        )
        grid.add_row(
            Text(r["id"]).append("".join(f"\n{a}" for a in r["aliases"][:3]), style="dim"),
            score_cell(r["best_score"]),
            severity_text(r["severity"]),
            matched or NONE,
            shorten(r["summary"], 60) or NONE,  # the start of the details when no summary
        )
    out.print(grid)


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _pages(api: ApiClient, params: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Rows up to ``limit``, page after page (the API sends the next cursor as a header)."""
    import httpx  # loaded when a request is made, not to show --help

    rows: list[dict[str, Any]] = []
    after: str | None = "0"
    with api.http() as http:  # transient answers retried (cli/retry.py)
        while after is not None and len(rows) < limit:
            size = min(500, limit - len(rows))
            try:
                response = http.get("/cves", params={**params, "after": after, "limit": size})
            except httpx.HTTPError as exc:
                fail(unreachable(api.profile.url, exc))
            try:
                rows += ApiClient.decode(response)
            except CliError as exc:
                fail(str(exc))
            after = response.headers.get("x-next-cursor")
    return rows[:limit]


@cve_app.command("show")
def show(vuln_id: str, as_json: AsJson = False) -> None:
    """An advisory: scores, dates, CWEs, summary and details, references, affected ranges, and the
    artifacts it affects."""
    data = client().get(f"/cves/{vuln_id}")
    if as_json:
        _print_json(data)
        return
    print_advisory(data)


@cve_app.command("curate")
def curate(
    vuln_id: str,
    package: str = typer.Option(..., help="conda package name"),
    version: str = typer.Option(..., help="exact version"),
    status: str = typer.Option(..., help="active | mitigated | cleared | disputed | reported"),
    note: str = typer.Option(..., help="why (kept in the history)"),
    builds: str | None = typer.Option(None, help="glob of build strings (default: every build)"),
) -> None:
    """Set the status of a vulnerability for a package version (or some of its builds)."""
    body = {"package": package, "version": version, "status": status, "note": note}
    if builds is not None:
        body["builds"] = builds
    data = client().post(f"/cves/{vuln_id}/curations", json=body)
    which = f" builds {data['builds']}" if data["builds"] else ""
    out.print(
        f"{data['vulnerability']}: {data['package']} {data['version']}{which} → {data['status']}",
        highlight=False,
    )


@cve_app.command("history")
def history(vuln_id: str, as_json: AsJson = False) -> None:
    """Every curation decision on a vulnerability, oldest first."""
    data = client().get(f"/cves/{vuln_id}/curations")
    if as_json:
        _print_json(data)
        return
    grid = table("at", "by", "package", "version", "builds", "status", "note")
    for c in data:
        grid.add_row(
            c["created_at"][:19],
            c["created_by"] or "",
            c["package"],
            c["version"],
            c["builds"] or "*",
            c["status"],
            c["note"],
        )
    out.print(grid)


# ------------------------------------------------------------------------- import, export, names

names_app = typer.Typer(help="The name map: conda names to purls and CPE vendor:product.")
cve_app.add_typer(names_app, name="names")
_FEED_SUFFIXES = (".json", ".yaml", ".yml")


def _zip_folder(folder: Path, target: Path) -> int:
    """The feed files of ``folder`` (recursively, no hidden ones) into the zip ``target``."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in _FEED_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as out:
        for path in files:
            out.write(path, path.relative_to(folder).as_posix())
    return len(files)


def _detect(path: Path) -> str | None:
    if path.is_dir():
        for item in sorted(path.rglob("*")):
            if item.is_file() and item.suffix.lower() in _FEED_SUFFIXES:
                found = _format_of(item.name, item.read_bytes())
                if found in ("osv", "nvd", "cve5"):
                    return found
        return None
    with path.open("rb") as fh:
        head = fh.read(4)
    if head == b"PK\x03\x04":
        return None  # a zip: the server tells a cve.zip (manifest) from a zip of feed files
    return _format_of(path.name, path.read_bytes())


def _send(api: ApiClient, url: str, path: Path, params: dict[str, str]) -> Any:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    size = path.stat().st_size
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task(f"uploading {path.name}", total=size)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while block := fh.read(1 << 20):
                    progress.update(task, advance=len(block))
                    yield block

        return api.request(
            "POST",
            url,
            params=params,
            content=chunks(),
            headers={"content-type": "application/zip", "content-length": str(size)},
        )


@cve_app.command("import")
def import_cves(
    path: Path = typer.Argument(..., help="a cve.zip, a folder of feed files, or one feed file"),
    fmt: str | None = typer.Option(None, "--format", help="bundle | osv | nvd | cve5 (detected)"),
    as_json: AsJson = False,
) -> None:
    """Import vulnerability data through the server, all or nothing, and match it."""
    if not path.exists():
        fail(f"{path}: no such file or folder")
    if fmt is not None and fmt not in ("bundle", "osv", "nvd", "cve5"):
        fail("--format is bundle, osv, nvd or cve5")
    fmt = fmt or _detect(path)
    if path.is_file() and path.suffix.lower() != ".zip" and fmt in (None, "bundle"):
        fail(f"{path.name}: cannot tell its feed format; pass --format osv|nvd|cve5")
    api = client()
    params = {"format": fmt} if fmt else {}
    with tempfile.TemporaryDirectory(prefix="stockade-import-") as folder:
        body = path
        if path.is_dir() or path.suffix.lower() != ".zip":
            body = Path(folder) / "feeds.zip"
            if path.is_dir():
                if not _zip_folder(path, body):
                    fail(f"{path}: no feed file (.json, .yaml, .yml) in this folder")
            else:
                with zipfile.ZipFile(body, "w", compression=zipfile.ZIP_DEFLATED) as zout:
                    zout.write(path, path.name)
        result = _send(api, "/cve/imports", body, params)
    if as_json:
        _print_json(result)
        return
    out.print(
        f"imported {result['format']}: {result['added']} added, {result['updated']} updated, "
        f"{result['unchanged']} unchanged; {result['enrichment']} KEV/EPSS rows, "
        f"{result['name_map']} name-map entries; matches +{result['matches_added']} "
        f"-{result['matches_removed']}",
        highlight=False,
    )


@cve_app.command("export")
def export_cves(file: Path = typer.Argument(..., help="where to write the cve.zip")) -> None:
    """Write every advisory, KEV/EPSS and the admin name map as a cve.zip (for an air gap)."""
    import httpx  # loaded when a request is made, not to show --help

    api = client()
    target = file.parent / f".{file.name}.part"
    try:
        with (
            api.http() as http,  # transient answers retried (cli/retry.py)
            http.stream("GET", "/cve/export") as response,
        ):
            if response.status_code >= 400 or "html" in response.headers.get("content-type", ""):
                response.read()
                fail(answer_problem(response) or "no answer")
            with target.open("wb") as fh:
                for block in response.iter_bytes(1 << 20):
                    fh.write(block)
    except httpx.HTTPError as exc:
        target.unlink(missing_ok=True)
        fail(unreachable(api.profile.url, exc))
    except OSError as exc:
        target.unlink(missing_ok=True)
        fail(f"{file}: {exc.strerror}")
    target.replace(file)
    out.print(f"wrote {file} ({file.stat().st_size} bytes)", highlight=False)


def _entry_line(entry: dict[str, Any]) -> str:
    what = "suppresses" if entry["suppressed"] else "maps"
    return f"#{entry['id']} {entry['conda_name']} {what} {entry['identifier']} ({entry['origin']})"


@names_app.command("list")
def names_list(
    package: str | None = typer.Option(None, "--package", help="conda name"),
    identifier: str | None = typer.Option(None, help="purl or vendor:product"),
    origin: str | None = typer.Option(None, help="shipped | metadata | admin"),
    as_json: AsJson = False,
) -> None:
    """Name-map entries (every page)."""
    api = client()
    params = {
        k: v
        for k, v in {"conda_name": package, "identifier": identifier, "origin": origin}.items()
        if v
    }
    rows: list[dict[str, Any]] = []
    after = 0
    while True:
        page = api.get("/cve/name-map", params={**params, "after": after, "limit": 1000})
        rows += page
        if len(page) < 1000:
            break
        after = page[-1]["id"]
    if as_json:
        _print_json(rows)
        return
    grid = table("id", "conda name", "identifier", "origin", "note")
    for r in rows:
        shown = ("not " if r["suppressed"] else "") + r["identifier"]
        grid.add_row(str(r["id"]), r["conda_name"], shown, r["origin"], r["note"])
    out.print(grid)


@names_app.command("add")
def names_add(
    conda_name: str,
    identifier: str = typer.Argument(..., help="pkg:pypi/torch or vendor:product"),
    note: str = typer.Option("", help="why"),
) -> None:
    """Map a conda name to a purl or CPE vendor:product (matching follows at once)."""
    body = {"conda_name": conda_name, "identifier": identifier, "note": note}
    data = client().post("/cve/name-map", json=body)
    out.print(f"{_entry_line(data['entry'])}; matches +{data['matches_added']}", highlight=False)


@names_app.command("remove")
def names_remove(entry_id: int) -> None:
    """Remove an admin entry, or suppress a shipped or learned one."""
    data = client().delete(f"/cve/name-map/{entry_id}")
    if data["removed"]:
        out.print(f"entry #{entry_id} removed; matches -{data['matches_removed']}", highlight=False)
    else:
        out.print(
            f"{_entry_line(data['entry'])}; matches -{data['matches_removed']}", highlight=False
        )


@names_app.command("import")
def names_import(
    file: Path = typer.Argument(..., help="CSV (conda,identifier,note) or JSON"),
) -> None:
    """Add every entry of a file, all or nothing (each bad row is named)."""
    if not file.is_file():
        fail(f"{file}: not a file")
    data = client().post(
        "/cve/name-map/import",
        content=file.read_bytes(),
        headers={"content-type": "application/octet-stream"},
    )
    out.print(
        f"{data['added']} entries added ({data['already_there']} already there); "
        f"matches +{data['matches_added']} -{data['matches_removed']}",
        highlight=False,
    )


def _format_of(name: str, data: bytes) -> str | None:
    """The format of a feed file (the bundle reader, loaded only when a command reads one)."""
    from stockade.vulns.bundle import detect_format

    return detect_format(name, data)
