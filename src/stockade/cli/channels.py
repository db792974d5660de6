"""channel …, copy, move, remove."""

from __future__ import annotations

import time

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Column

from stockade.channels.signature_names import SignatureState
from stockade.cli.client import client, fail
from stockade.cli.output import NONE, AsJson, key_values, out, print_json, table, when
from stockade.cli.text import shorten

channel_app = typer.Typer(help="Channels.", no_args_is_help=True)

PRIVACY_HELP = "public | authenticated | private"


def _print_json(data: object) -> None:
    print_json(data)


@channel_app.command("create")
def create(
    name: str,
    privacy: str | None = typer.Option(
        None,
        help=f"{PRIVACY_HELP}; default public, or the parent's for a subchannel (never looser)",
    ),
    description: str | None = typer.Option(None),
) -> None:
    """Create a channel (``parent/child`` makes a subchannel)."""
    data = client().post(
        "/channels", json={"name": name, "privacy": privacy, "description": description}
    )
    out.print(f"channel [bold]{data['name']}[/bold] created ({data['privacy']}): {data['url']}")


@channel_app.command("list")
def list_(as_json: AsJson = False) -> None:
    """List the channels you can read."""
    data = client().get("/channels")
    if as_json:
        _print_json(data)
        return
    grid = table("name", "privacy", "frozen", "owner", "description")
    for c in data:
        grid.add_row(
            c["name"],
            c["privacy"],
            "yes" if c["frozen"] else "",
            c["owner"] or NONE,
            shorten(c["description"], 60),
        )
    out.print(grid)


@channel_app.command("show")
def show(name: str, as_json: AsJson = False) -> None:
    """Show a channel and the publication state of its subdirs."""
    api = client()
    data = api.get(f"/channels/{name}")
    subdirs = api.get(f"/channels/{name}/subdirs")
    if as_json:
        _print_json({**data, "subdirs": subdirs})
        return
    key_values(
        data["name"],
        [
            ("privacy", data["privacy"]),
            ("kind", data["kind"]),
            ("frozen", "yes: changes wait until unfrozen" if data["frozen"] else "no"),
            (
                "scanning",
                f"uploads {data.get('scan_uploads', 'hold')}, suspicious "
                f"{data.get('scan_suspicious', 'serve')}, errors {data.get('scan_errors', 'hold')}",
            ),
            ("signed", "yes (content trust)" if data.get("sign") else "no"),
            ("url", data["url"]),
            ("owner", data["owner"]),
            ("description", data["description"] or None),
            ("packages", data["artifact_count"]),
            ("bytes", data["total_size"]),
            ("failing subdirs", data.get("failing_subdirs") or None),
            ("created", when(data["created_at"])),
        ],
    )
    grid = table("subdir", "records", "published rev", "pending", "published at")
    for s in subdirs:
        scanning = s.get("scanning") or 0
        grid.add_row(
            s["subdir"],
            str(s["record_count"]),
            str(s["published_rev"]),
            (f"{scanning} being scanned" if scanning else "yes") if s["pending"] else "",
            when(s["published_at"]),
        )
    out.print(grid)


@channel_app.command("update")
def update(
    name: str,
    privacy: str | None = typer.Option(None, help=PRIVACY_HELP),
    description: str | None = typer.Option(None),
    scan_uploads: str | None = typer.Option(
        None,
        help="new uploads: 'hold' until their scan verdict (default), or 'serve-first' (served "
        "at once, quarantined if malicious: trusted CI); needs security:manage",
    ),
    scan_suspicious: str | None = typer.Option(
        None, help="suspicious verdicts: 'serve' (default) or 'hold'; needs security:manage"
    ),
    scan_errors: str | None = typer.Option(
        None,
        help="files the scanners could not judge: 'hold' (default, fail closed) or 'serve'; "
        "needs security:manage",
    ),
    sign: bool | None = typer.Option(
        None,
        "--sign/--no-sign",
        help="sign every record the channel serves (content trust; `stockade signing init` "
        "first); the channel is signed in the background",
    ),
    follow: bool = typer.Option(
        False, "--follow", "-f", help="with --sign: show the signing's progress until it is done"
    ),
) -> None:
    """Change privacy, description, scan settings or signing."""
    fields: dict[str, object] = {
        "sign": sign,
        "privacy": privacy,
        "description": description,
        "scan_uploads": scan_uploads,
        "scan_suspicious": scan_suspicious,
        "scan_errors": scan_errors,
    }
    body = {k: v for k, v in fields.items() if v is not None}
    data = client().patch(f"/channels/{name}", json=body)
    signed = ", signed" if data.get("sign") else ""
    out.print(f"channel {data['name']} updated ({data['privacy']}{signed})")
    if sign and follow:
        follow_signing(data["name"])
    elif sign:
        out.print("signing in the background: `stockade signing status` shows how far it is")


@channel_app.command("delete")
def delete(name: str, yes: bool = typer.Option(False, "--yes", "-y")) -> None:
    """Delete a channel, its subchannels and their package entries."""
    if not yes:
        typer.confirm(f"delete channel {name} and everything in it?", abort=True)
    client().delete(f"/channels/{name}")
    out.print(f"channel {name} deleted")


@channel_app.command("freeze")
def freeze(name: str) -> None:
    """Stop publishing changes until unfrozen."""
    client().post(f"/channels/{name}/freeze")
    out.print(f"channel {name} frozen")


@channel_app.command("unfreeze")
def unfreeze(name: str) -> None:
    """Publish again, including changes made while frozen."""
    client().post(f"/channels/{name}/unfreeze")
    out.print(f"channel {name} unfrozen")


@channel_app.command("files")
def files(
    name: str,
    subdir: str | None = None,
    package: str | None = typer.Option(None, "--name"),
    signature: SignatureState | None = typer.Option(
        None, "--signature", help="only files in this signature state"
    ),
    as_json: AsJson = False,
) -> None:
    """List a channel's package files (the first 1,000), with their scan and signature state
    (signed: by this server; upstream-*: a mirrored record's upstream signature; unsigned)."""
    wanted = {"subdir": subdir, "name": package, "signature": signature and signature.value}
    params = {k: v for k, v in wanted.items() if v}
    data = client().get(f"/channels/{name}/files", params={**params, "limit": 1000})
    if as_json:
        _print_json(data)
        return
    widest = max((len(a["filename"]) for a in data), default=8)
    filename = Column("filename", overflow="fold", min_width=min(widest, 60))  # whole if it can
    grid = table("subdir", filename, "size", "sha256", "scan", "signature")
    for a in data:
        sig = a.get("signature") or {}
        grid.add_row(
            a["subdir"],
            a["filename"],
            str(a["size"]),
            a["sha256"][:16] + "…",
            a.get("scan_status", ""),
            sig.get("state", ""),
        )
    out.print(grid)


def _selection(
    files: list[str], name: str | None, version: str | None, subdir: str | None
) -> dict[str, object]:
    return {"files": files, "name": name, "version": version, "subdir": subdir}


def copy(
    source: str,
    target: str,
    files: list[str] = typer.Argument(None, help="subdir/filename paths"),
    name: str | None = typer.Option(None, help="all builds of this package"),
    version: str | None = typer.Option(None, help="version spec with --name, e.g. '>=1.2'"),
    subdir: str | None = typer.Option(None),
    skip_existing: bool = typer.Option(False),
) -> None:
    """Copy artifacts from SOURCE to TARGET."""
    _copy(source, target, files or [], name, version, subdir, skip_existing, move=False)


def move(
    source: str,
    target: str,
    files: list[str] = typer.Argument(None, help="subdir/filename paths"),
    name: str | None = typer.Option(None),
    version: str | None = typer.Option(None),
    subdir: str | None = typer.Option(None),
    skip_existing: bool = typer.Option(False),
) -> None:
    """Move artifacts from SOURCE to TARGET."""
    _copy(source, target, files or [], name, version, subdir, skip_existing, move=True)


def _copy(
    source: str,
    target: str,
    files: list[str],
    name: str | None,
    version: str | None,
    subdir: str | None,
    skip_existing: bool,
    *,
    move: bool,
) -> None:
    body = {
        **_selection(files, name, version, subdir),
        "source": source,
        "target": target,
        "move": move,
        "skip_existing": skip_existing,
    }
    data = client().post("/copy", json=body)
    verb = "moved" if move else "copied"
    out.print(
        f"{verb} {len(data['artifacts'])} file(s) to {target}; skipped {len(data['skipped'])}"
    )


def remove(
    channel: str,
    files: list[str] = typer.Argument(None, help="subdir/filename paths"),
    name: str | None = typer.Option(None),
    version: str | None = typer.Option(None),
    subdir: str | None = typer.Option(None),
) -> None:
    """Remove artifacts from a channel."""
    data = client().post(
        f"/channels/{channel}/remove", json=_selection(files or [], name, version, subdir)
    )
    out.print(f"removed {len(data['artifacts'])} file(s) from {channel}")


def follow_signing(name: str, poll_s: float = 0.5) -> None:
    """A progress bar over the channel's records signed until every subdir is published."""
    api = client()
    with Progress(
        TextColumn("signing {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=out,
        transient=True,
    ) as progress:
        task = progress.add_task(name, total=None)
        while True:
            subdirs = api.get(f"/channels/{name}/subdirs")
            failed = [
                s for s in subdirs if s.get("failure") and s["published_rev"] < s["requested_rev"]
            ]
            if failed:
                fail(f"{failed[0]['subdir']}: {failed[0]['failure']}")
            total = sum(s.get("signing_total") or 0 for s in subdirs)
            done = sum(s.get("signing_done") or 0 for s in subdirs)
            progress.update(task, total=total or None, completed=done)
            if not any(s["pending"] for s in subdirs):
                break
            time.sleep(poll_s)
    records = sum(s["record_count"] for s in subdirs)
    out.print(f"channel {name}: {records} records signed")
