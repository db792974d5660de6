"""upload: stream package files with a progress bar, then wait for the index to be published."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from stockade.cli.client import ApiClient, CliError, client, fail

out = Console()
CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _chunks(path: Path, progress: Progress, task: TaskID) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            progress.update(task, advance=len(block))
            yield block


def upload(
    files: list[Path] = typer.Argument(..., help="Package files (.conda or .tar.bz2)"),
    channel: str = typer.Option(..., "--channel", "-c"),
    force: bool = typer.Option(False, help="Replace files that already exist (needs manage)"),
    wait: bool = typer.Option(True, help="Wait until the channel's index includes the files"),
) -> None:
    """Upload package files to a channel."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"not a file: {', '.join(missing)}")
    api = client()
    api.get(f"/channels/{channel}")  # fails early, clearly, on a wrong channel or no access
    total = sum(f.stat().st_size for f in files)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    done: list[str] = []
    failed: list[str] = []
    with Progress(*columns, console=out, transient=False) as progress:
        overall = progress.add_task(f"{len(files)} file(s)", total=total)
        for path in files:
            task = progress.add_task(path.name, total=path.stat().st_size)
            try:
                api.try_request(
                    "PUT",
                    f"/channels/{channel}/files/{path.name}",
                    params={"sha256": _sha256(path), "force": force},
                    content=_chunks(path, progress, task),
                    headers={"content-type": "application/octet-stream"},
                )
                done.append(path.name)
            except CliError as exc:
                failed.append(f"{path.name}: {exc}")
            progress.update(overall, advance=path.stat().st_size)
            progress.remove_task(task)
    out.print(f"uploaded {len(done)} file(s) to {channel}")
    if failed:
        for line in failed:
            out.print(f"[red]refused[/red] {line}", highlight=False)
        raise typer.Exit(1)
    if wait and done:
        wait_published(api, channel)


def wait_published(api: ApiClient, channel: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    with out.status("publishing the index…"):
        while time.monotonic() < deadline:
            subdirs = api.get(f"/channels/{channel}/subdirs")
            if not any(s["pending"] for s in subdirs):
                out.print("index published")
                return
            time.sleep(0.2)
    out.print("[yellow]the index is not published yet (is the channel frozen?)[/yellow]")
