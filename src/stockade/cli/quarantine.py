"""quarantine list|show|release|delete|fetch: what the scanners held (security:read|manage)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from stockade.cli.client import ApiClient, client, describe_problem, fail, paginate, unreachable
from stockade.cli.output import NONE, AsJson, cell, key_values, out, print_json, table, when
from stockade.cli.text import shorten

if TYPE_CHECKING:
    import httpx

quarantine_app = typer.Typer(
    help="The quarantine queue: files the malware scanners held (malicious; suspicious or "
    "unjudged where the channel holds them). Reading needs security:read, the rest "
    "security:manage.",
    no_args_is_help=True,
)
STATES = ("malicious", "suspicious", "error")


def _rules(item: dict[str, Any]) -> list[str]:
    scan = item.get("scan") or {}
    return list(dict.fromkeys(f["rule"] for f in scan.get("findings", [])))


def _file(item: dict[str, Any]) -> str:
    return f"{item['subdir']}/{item['filename']}"


@quarantine_app.command("list")
def list_(
    status: str | None = typer.Option(None, help="only this state: malicious|suspicious|error"),
    channel: str | None = typer.Option(None, help="only this channel"),
    as_json: AsJson = False,
) -> None:
    """The held files, oldest first, with the rules that matched."""
    if status is not None and status not in STATES:
        fail(f"unknown status {status!r}: one of {', '.join(STATES)}")
    params = {k: v for k, v in {"status": status, "channel": channel}.items() if v}
    items = list(paginate(client(), "/quarantine", **params))
    if as_json:
        print_json(items)
        return
    if not items:
        out.print("nothing is held")
        return
    grid = table("id", "channel", "file", "status", "rules", "scanned")
    for item in items:
        scan = item.get("scan") or {}
        grid.add_row(
            str(item["id"]),
            item["channel"],
            _file(item),
            item["status"],
            cell(_rules(item)),
            when(scan.get("scanned_at") or item["created_at"]),
        )
    out.print(grid)


@quarantine_app.command("show")
def show(artifact_id: int = typer.Argument(..., min=1), as_json: AsJson = False) -> None:
    """One artifact's scan result (held or not): its findings and the scanners' errors."""
    item = client().get(f"/quarantine/{artifact_id}")
    if as_json:
        print_json(item)
        return
    scan = item.get("scan") or {}
    released = scan.get("released_at")
    key_values(
        f"artifact {item['id']}: {item['channel']}/{_file(item)}",
        [
            ("status", item["status"]),
            ("served", item["servable"]),
            ("package", f"{item['name']} {item['version']}"),
            ("sha256", item["sha256"]),
            ("size", item["size"]),
            ("source", item["source"]),
            ("added", when(item["created_at"])),
            ("verdict", scan.get("verdict") or "not scanned yet"),
            ("scanned", when(scan["scanned_at"]) if scan else None),
            ("current rules", scan.get("current") if scan else None),
            (
                "released",
                f"{when(released)} by {scan.get('released_by') or NONE}" if released else None,
            ),
            ("release note", scan.get("release_note")),
        ],
    )
    _print_findings(scan.get("findings", []))
    for scanner, error in sorted((scan.get("errors") or {}).items()):
        out.print(f"[yellow]scanner {scanner} could not judge it:[/yellow] ", end="")
        out.print(error, markup=False, highlight=False)


def _print_findings(findings: list[dict[str, Any]]) -> None:
    if not findings:
        out.print("no findings")
        return
    grid = table("scanner", "rule", "verdict", "member", "evidence", title="findings")
    for f in findings:
        grid.add_row(
            f["scanner"], f["rule"], f["verdict"], f["member"] or NONE, shorten(f["evidence"], 120)
        )
    out.print(grid)


@quarantine_app.command("release")
def release(
    artifact_id: int = typer.Argument(..., min=1),
    note: str = typer.Option(..., help="why it is safe to serve (kept with the release)"),
) -> None:
    """Serve a held file. The release holds while the rules stay the same; new rules judge again."""
    if not note.strip():
        fail("--note: say why it is safe to serve")
    item = client().post(f"/quarantine/{artifact_id}/release", json={"note": note})
    out.print(
        f"released {item['channel']}/{_file(item)} (artifact {item['id']}): {item['status']}",
        highlight=False,
    )


@quarantine_app.command("delete")
def delete(
    artifact_id: int = typer.Argument(..., min=1),
    note: str | None = typer.Option(None, help="why (kept in the audit log)"),
    yes: bool = typer.Option(False, "--yes", help="do not ask"),
) -> None:
    """Delete a held file for good (its record and, when nothing else uses them, its bytes)."""
    api = client()
    if not yes:
        item = api.get(f"/quarantine/{artifact_id}")
        typer.confirm(
            f"delete {item['channel']}/{_file(item)} (artifact {artifact_id})?", abort=True
        )
    api.delete(f"/quarantine/{artifact_id}", params={"note": note} if note else None)
    out.print(f"artifact {artifact_id} deleted")


@quarantine_app.command("fetch")
def fetch(
    artifact_id: int = typer.Argument(..., min=1),
    output: Path = typer.Option(..., "--output", "-o", help="file to write (not overwritten)"),
    force: bool = typer.Option(False, "--force", help="overwrite OUTPUT if it exists"),
) -> None:
    """Download a held file for analysis (security:manage; recorded in the audit log).
    Handle it with care: it was held for a reason."""
    if output.exists() and not force:
        fail(f"{output} exists: give --force to overwrite it")
    size = _download(client(), f"/quarantine/{artifact_id}/file", output)
    out.print(f"wrote {output} ({size} bytes)", highlight=False)


def _download(api: ApiClient, path: str, output: Path) -> int:
    """Stream ``path`` to ``output`` through a temporary file beside it; problems print and exit."""
    import httpx  # loaded when a request is made, not to show --help

    partial = output.with_name(f".{output.name}.part")
    try:
        with (
            api.http() as http,  # transient answers retried (cli/retry.py)
            http.stream("GET", path) as response,
        ):
            if response.status_code >= 400:
                response.read()
                fail(describe_problem(response))
            size = _write(response, partial)
        os.replace(partial, output)
    except httpx.HTTPError as exc:
        partial.unlink(missing_ok=True)
        fail(unreachable(api.profile.url, exc))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        fail(f"cannot write {output}: {exc.strerror or exc}")
    return size


def _write(response: httpx.Response, target: Path) -> int:
    size = 0
    with target.open("wb") as sink:
        for chunk in response.iter_bytes():
            sink.write(chunk)
            size += len(chunk)
    return size
