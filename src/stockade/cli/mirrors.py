"""mirror create|list|show|update|delete|run|stop|runs|logs|exclusions."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from stockade.cli.client import ApiClient, client, fail
from stockade.cli.output import AsJson, key_values, print_json, table, when
from stockade.cli.text import shorten

out = Console()
mirror_app = typer.Typer(help="Mirrors of upstream channels.", no_args_is_help=True)
FINAL = ("completed", "failed", "stopped")


def _print_json(data: object) -> None:
    print_json(data)


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _fields(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


TRUSTED_ROOT_HELP = (
    "the upstream's root.json (a file): upstream signatures are verified against it "
    "(`signed_only` policies keep the verified records)"
)
METADATA_URL_HELP = (
    "where the upstream's key_mgr.json and N.root.json are (default: the source URL)"
)


def _root_text(path: str | None) -> str | None:
    """The text of the --trusted-root file ('' clears it; the server checks the content)."""
    if path is None or path == "":
        return path
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read(1024 * 1024 + 1)
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"--trusted-root: cannot read {path}: {exc}")


@mirror_app.command("create")
def create(
    name: str,
    source: str = typer.Option(
        ...,
        help="upstream channel URL: https://…, http://… or file:///…; or airgap:CHANNEL for "
        "the bundles of CHANNEL dropped into the server's air-gap folder",
    ),
    channel: str | None = typer.Option(None, help="target channel (default: the mirror's name)"),
    mode: str | None = typer.Option(
        None,
        help="active (download during the run) | passive (fetch on first request); default "
        "passive, active for an airgap: source",
    ),
    subdirs: str = typer.Option("linux-64,noarch", help="comma-separated subdirs"),
    schedule: str = typer.Option("0 0 * * *", help="cron expression; '' for manual runs only"),
    token: str | None = typer.Option(
        None, help="upstream token (sent as Bearer to the source's origin only)"
    ),
    proxy: str | None = typer.Option(
        None, help="HTTP(S) proxy; its user:password is stored encrypted, never shown"
    ),
    ca_bundle: str | None = typer.Option(None, help="CA file on the server to verify TLS with"),
    concurrency: int | None = typer.Option(None, min=1, max=64, help="downloads at once"),
    companions: str | None = typer.Option(None, help="local channels guarded against confusion"),
    allow: str | None = typer.Option(None, help="package names allowed past that guard"),
    privacy: str | None = typer.Option(
        None, help="privacy of a channel it creates (default public; a subchannel: its parent's)"
    ),
    trusted_root: str | None = typer.Option(None, "--trusted-root", help=TRUSTED_ROOT_HELP),
    signing_metadata_url: str | None = typer.Option(
        None, "--signing-metadata-url", help=METADATA_URL_HELP
    ),
    check: bool = typer.Option(
        True,
        "--check/--no-check",
        help="check that the source is a channel the server can reach (each subdir's "
        "repodata.json); --no-check for a source that is offline on purpose",
    ),
) -> None:
    """Create a mirror (and its channel if needed). The source is checked first: a channel
    the server cannot reach is refused and nothing is created. Runs follow the schedule; `run`
    starts one."""
    body = _fields(
        name=name,
        source=source,
        channel=channel,
        mode=mode,
        subdirs=_csv(subdirs),
        schedule=schedule,
        token=token,
        proxy=proxy,
        ca_bundle=ca_bundle,
        concurrency=concurrency,
        companions=_csv(companions),
        allowed_names=_csv(allow),
        privacy=privacy,
        check=None if check else False,
        trusted_root=_root_text(trusted_root),
        signing_metadata_url=signing_metadata_url,
    )
    data = client().post("/mirrors", json=body)
    out.print(
        f"mirror [bold]{data['name']}[/bold] → channel {data['channel']} ({data['mode']}, "
        f"{', '.join(data['subdirs'])}); next run: {data['next_run_at'] or 'manual only'}"
    )


@mirror_app.command("update")
def update(
    name: str,
    source: str | None = typer.Option(
        None, help="another origin drops the stored token unless --token is given too"
    ),
    mode: str | None = typer.Option(None),
    subdirs: str | None = typer.Option(None, help="comma-separated subdirs"),
    schedule: str | None = typer.Option(None, help="cron expression; '' for manual runs only"),
    token: str | None = typer.Option(None, help="new token; '' clears it"),
    proxy: str | None = typer.Option(
        None, help="'' clears it; a new proxy drops the stored token unless --token is given"
    ),
    ca_bundle: str | None = typer.Option(None, help="'' clears it"),
    concurrency: int | None = typer.Option(None, min=1, max=64),
    enabled: bool | None = typer.Option(None, "--enabled/--disabled"),
    companions: str | None = typer.Option(None),
    allow: str | None = typer.Option(None, help="package names allowed past the guard"),
    trusted_root: str | None = typer.Option(
        None, "--trusted-root", help=TRUSTED_ROOT_HELP + "; '' clears it"
    ),
    signing_metadata_url: str | None = typer.Option(
        None, "--signing-metadata-url", help=METADATA_URL_HELP + "; '' clears it"
    ),
) -> None:
    """Change a mirror's settings (only the options given)."""
    body = _fields(
        source=source,
        mode=mode,
        subdirs=_csv(subdirs),
        schedule=schedule,
        token=token,
        proxy=proxy,
        ca_bundle=ca_bundle,
        concurrency=concurrency,
        enabled=enabled,
        companions=_csv(companions),
        allowed_names=_csv(allow),
        trusted_root=_root_text(trusted_root),
        signing_metadata_url=signing_metadata_url,
    )
    if not body:
        fail("nothing to change: give at least one option")
    data = client().patch(f"/mirrors/{name}", json=body)
    out.print(f"mirror [bold]{data['name']}[/bold] updated")


@mirror_app.command("list")
def list_(channel: str | None = typer.Option(None), as_json: AsJson = False) -> None:
    """List the mirrors of channels you can read."""
    data = client().get("/mirrors", params=_fields(channel=channel))
    if as_json:
        _print_json(data)
        return
    table = Table("name", "channel", "mode", "schedule", "source", "last run")
    for m in data:
        last = m["last_run"]
        table.add_row(
            m["name"],
            m["channel"],
            m["mode"],
            m["schedule"] or "manual",
            m["source"],
            shorten(f"{last['state']} {last['summary'] or ''}", 60) if last else "never",
        )
    out.print(table)


@mirror_app.command("show")
def show(name: str, as_json: AsJson = False) -> None:
    """Show a mirror, its policies and its last run."""
    data = client().get(f"/mirrors/{name}")
    if as_json:
        _print_json(data)
        return
    key_values(
        data["name"],
        [
            ("channel", data["channel"]),
            ("mode", data["mode"]),
            ("source", data["source"] + ("  (token set)" if data["has_token"] else "")),
            ("proxy", data.get("proxy")),
            ("subdirs", data["subdirs"]),
            ("concurrency", data["concurrency"]),
            ("schedule", data["schedule"] or "manual"),
            ("next run", when(data["next_run_at"])),
            ("enabled", data.get("enabled")),
            ("companions", data.get("companions") or None),
            ("allowed names", data.get("allowed_names") or None),
            ("policies", data["policies"] or "none (everything is kept)"),
            ("trusted root", _root_line(data.get("trusted_root"))),
            ("metadata URL", data.get("signing_metadata_url")),
            ("signatures", data.get("signature_trust") or None),
        ],
    )
    if data["last_run"]:
        _print_run(data["last_run"])


def _root_line(root: dict[str, Any] | None) -> str | None:
    """A trusted root's version, expiry and key fingerprints (public keys, shortened)."""
    if not root:
        return None
    if root.get("error"):
        return f"unreadable: {root['error']}"
    keys = ", ".join(k[:16] + "…" for k in root.get("root_keys") or [])
    key_mgr = ", ".join(k[:16] + "…" for k in root.get("key_mgr_keys") or [])
    return (
        f"version {root.get('version')}, expires {root.get('expiration')}; root keys {keys}; "
        f"key_mgr keys {key_mgr}"
    )


@mirror_app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "--yes", help="do not ask")) -> None:
    """Delete a mirror and the records it brought into its channel."""
    if not yes:
        typer.confirm(f"delete mirror {name} and its records?", abort=True)
    client().delete(f"/mirrors/{name}")
    out.print(f"mirror [bold]{name}[/bold] deleted")


@mirror_app.command("run")
def run(
    name: str,
    now: bool = typer.Option(
        False, "--now", help="start at once (what a run always does; accepted for scripts)"
    ),
    follow: bool = typer.Option(False, "--follow", "-f", help="show live progress until it ends"),
) -> None:
    """Start a run now (202); with --follow, watch it with progress bars until it ends."""
    del now  # runs always start as soon as a worker is free
    api = client()
    data = api.post(f"/mirrors/{name}/runs")
    out.print(f"run {data['id']} of [bold]{name}[/bold] queued")
    if follow:
        final = follow_run(api, data["id"])
        if final["state"] != "completed":
            raise typer.Exit(1)


@mirror_app.command("stop")
def stop(run_id: int) -> None:
    """Stop a run: at once if pending; if running, before its next step that changes anything
    (it ends `stopped` and the channel stays as it was)."""
    data = client().post(f"/runs/{run_id}/stop")
    out.print(f"run {run_id}: {data['state']}{' (stop asked)' if data['stop_requested'] else ''}")


@mirror_app.command("runs")
def runs(
    name: str,
    limit: int = typer.Option(20, min=1, max=200),
    as_json: AsJson = False,
) -> None:
    """A mirror's runs, newest first."""
    data = client().get(f"/mirrors/{name}/runs", params={"limit": limit})
    if as_json:
        _print_json(data)
        return
    table = Table("id", "state", "trigger", "started", "added", "removed", "changed", "summary")
    for r in data:
        c = r["counts"]
        table.add_row(
            str(r["id"]),
            r["state"],
            r["trigger"],
            (r["started_at"] or "-")[:19],
            str(c.get("added", "")),
            str(c.get("removed", "")),
            str(c.get("changed", "")),
            r["summary"] or "",
        )
    out.print(table)


@mirror_app.command("logs")
def logs(run_id: int, follow: bool = typer.Option(False, "--follow", "-f")) -> None:
    """A run's log (with --follow, until the run ends)."""
    api = client()
    after = 0
    while True:
        for line in api.get(f"/runs/{run_id}/logs", params={"after": after}):
            after = line["id"]
            style = {"error": "red", "warning": "yellow"}.get(line["level"], "")
            out.print(
                f"{line['at'][:19]} [{style}]{line['message']}[/{style}]"
                if style
                else f"{line['at'][:19]} {line['message']}",
                highlight=False,
            )
        if not follow or api.get(f"/runs/{run_id}")["state"] in FINAL:
            return
        time.sleep(1)


@mirror_app.command("exclusions")
def exclusions(
    name: str,
    package: str | None = typer.Option(None, help="only this package name"),
    subdir: str | None = typer.Option(None),
    limit: int = typer.Option(100, min=1, max=5000),
    as_json: AsJson = False,
) -> None:
    """Records the last run left out, with the rule that excluded each."""
    data = client().get(
        f"/mirrors/{name}/exclusions", params=_fields(package=package, subdir=subdir, limit=limit)
    )
    if as_json:
        _print_json(data)
        return
    grid = table("file", "excluded by")
    for row in data:
        grid.add_row(f"{row['subdir']}/{row['filename']}", "\n".join(row["reasons"]))
    out.print(grid if data else "no record excluded")


def follow_run(api: ApiClient, run_id: int) -> dict[str, Any]:
    """Progress bars per step until the run ends; returns the final run."""
    progress = Progress(
        TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.fields[info]}")
    )
    tasks: dict[str, TaskID] = {}
    after = 0
    with Live(progress, console=out, refresh_per_second=4):
        while True:
            data = api.get(f"/runs/{run_id}")
            for step in data["steps"]:
                task = tasks.get(step["name"])
                if task is None:
                    task = tasks[step["name"]] = progress.add_task(
                        step["label"], info="", total=None
                    )
                total = step["total"]
                done = step["done"]
                state = step_state(data, step)
                if state in ("done", "skipped") and not total:
                    total, done = 1, 1
                info = state if total is None or state != "running" else f"{done}/{total}"
                progress.update(task, total=total, completed=done, info=info)
            for line in api.get(f"/runs/{run_id}/logs", params={"after": after}):
                after = line["id"]
                progress.console.print(f"  {line['message']}", highlight=False)
            if data["state"] in FINAL:
                break
            time.sleep(0.5)
    out.print()
    _print_run(data)
    final: dict[str, Any] = data
    return final


def _print_run(run: dict[str, Any]) -> None:
    colour = {"completed": "green", "failed": "red", "stopped": "yellow"}.get(run["state"], "cyan")
    out.print(f"run {run['id']}: [{colour}]{run['state']}[/{colour}]  {run['summary'] or ''}")
    counts = run["counts"]
    if counts:
        keys = (
            "upstream",
            "kept",
            "excluded",
            "added",
            "removed",
            "changed",
            "files_downloaded",
            "bytes_downloaded",
            "failed_files",
        )
        out.print(
            "  " + "  ".join(f"{k}={counts[k]}" for k in keys if k in counts), highlight=False
        )
        for reason, n in (counts.get("excluded_by_reason") or {}).items():
            out.print(f"    {n:>7}  {reason}", highlight=False)
    if run["error"]:
        out.print(f"  [red]{run['error']}[/red]", highlight=False)
    if run["state"] != "completed" and run.get("steps"):
        steps = ", ".join(f"{s['label']} {step_state(run, s)}" for s in run["steps"])
        out.print(f"  steps: {steps}", highlight=False)


def step_state(run: dict[str, Any], step: dict[str, Any]) -> str:
    """A step still "pending" in a run that has ended never ran: skipped (older servers kept
    them pending after a failure)."""
    if run["state"] in FINAL and step["state"] == "pending":
        return "skipped"
    return str(step["state"])
