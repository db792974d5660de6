"""scan [--artifact ID | --channel C | --all] | scan status | scan rules list|add|remove."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stockade.cli.client import ApiClient, client, fail
from stockade.cli.output import AsJson, cell, key_values, out, print_json, table, when

scan_app = typer.Typer(
    help="Malware scanning: scan again (an artifact, a channel, everything), the queue's state, "
    "and admins' own YARA rules. Needs security:manage (status: security:read).",
    no_args_is_help=True,
)
rules_app = typer.Typer(
    help="Admins' own YARA rule sets, compiled with the shipped ones. Adding or removing one "
    "rescans every artifact in the background.",
    no_args_is_help=True,
)
scan_app.add_typer(rules_app, name="rules")
MAX_RULES_FILE = 1024 * 1024


@scan_app.callback(invoke_without_command=True)
def scan(
    ctx: typer.Context,
    artifact: int | None = typer.Option(None, "--artifact", min=1, help="one artifact, by id"),
    channel: str | None = typer.Option(None, "--channel", help="every artifact of a channel"),
    all_: bool = typer.Option(False, "--all", help="every artifact"),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="return once queued instead of showing progress until done"
    ),
    timeout: float = typer.Option(
        3600, min=1, help="seconds to wait for the queue to drain before giving up (exit 1)"
    ),
) -> None:
    """Queue scans of one artifact, a channel or everything, then show progress until the
    scan queue drains (--no-wait: return at once)."""
    if ctx.invoked_subcommand is not None:
        if artifact is not None or channel is not None or all_:
            fail(f"give --artifact, --channel or --all without `{ctx.invoked_subcommand}`")
        return
    given = [x for x in (artifact is not None, channel is not None, all_) if x]
    if len(given) != 1:
        fail("give exactly one of --artifact ID, --channel NAME or --all")
    body: dict[str, object] = {"all": True}
    if artifact is not None:
        body = {"artifact_id": artifact}
    if channel is not None:
        body = {"channel": channel}
    api = client()
    queued = api.post("/scans", json=body)["queued"]
    out.print(f"{queued} scan(s) queued")
    if not no_wait and queued:
        follow_queue(api, timeout)


def follow_queue(api: ApiClient, timeout: float) -> None:
    """A progress bar of the scan queue (``/scans/status``) until it is empty."""
    deadline = time.monotonic() + timeout
    status = api.get("/scans/status")
    start = max(status["queued"], 1)
    columns = (
        TextColumn("scanning"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task("scan", total=start, info="")
        while True:
            start = max(start, status["queued"])
            progress.update(
                task,
                total=start,
                completed=start - status["queued"],
                info=f"{status['running']} running, {status['held']} held",
            )
            if status["queued"] == 0:
                break
            if time.monotonic() > deadline:
                fail(f"{status['queued']} scan(s) still queued after {timeout:g}s")
            time.sleep(0.5)
            status = api.get("/scans/status")
    out.print(f"done: {status['held']} file(s) held in the quarantine queue")


@scan_app.command("status")
def status(as_json: AsJson = False) -> None:
    """The scan queue (queued, running), the held files and the scanners in force."""
    data = client().get("/scans/status")
    if as_json:
        print_json(data)
        return
    key_values(
        "scanning",
        [
            ("queued", data["queued"]),
            ("running", data["running"]),
            ("held", data["held"]),
            ("artifacts", data["total"]),
            ("fingerprint", data["fingerprint"][:16]),
        ],
    )
    grid = table("scanner", "version")
    for name, version in sorted(data["scanners"].items()):
        grid.add_row(name, version)
    out.print(grid)


@rules_app.command("list")
def rules_list(as_json: AsJson = False) -> None:
    """Admins' rule sets (the shipped rules are in `scan status`)."""
    data = client().get("/scan-rules")
    if as_json:
        print_json(data)
        return
    if not data:
        out.print("no rule sets of your own yet")
        return
    grid = table("name", "rules", "enabled", "added")
    for rule in data:
        grid.add_row(
            rule["name"], str(rule["rules"]), cell(rule["enabled"]), when(rule["created_at"])
        )
    out.print(grid)


@rules_app.command("add")
def rules_add(
    name: str = typer.Argument(..., help="a name for the rule set"),
    file: Path = typer.Argument(..., help="YARA source; each rule needs meta: verdict"),
) -> None:
    """Add a YARA rule set (compiled first: a broken one is refused); everything is rescanned."""
    source = _read_rules(file)
    data = client().post("/scan-rules", json={"name": name, "source": source})
    out.print(
        f"rule set {data['name']} added ({data['rules']} rule(s)); rescanning in the background"
    )


def _read_rules(file: Path) -> str:
    try:
        if file.stat().st_size > MAX_RULES_FILE:
            fail(f"{file} is larger than {MAX_RULES_FILE // 1024} KiB")
        source = file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text")
    if not source.strip():
        fail(f"{file} is empty")
    return source


@rules_app.command("remove")
def rules_remove(name: str, yes: bool = typer.Option(False, "--yes", help="do not ask")) -> None:
    """Remove a rule set; everything is rescanned without it."""
    if not yes:
        typer.confirm(f"remove rule set {name}?", abort=True)
    client().delete(f"/scan-rules/{quote(name, safe='')}")
    out.print(f"rule set {name} removed")
