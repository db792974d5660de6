"""upload: send package files in parallel batches with a progress bar, say what became of each,
then wait for the index to be published."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from stockade.cli.client import ApiClient, client, fail

if TYPE_CHECKING:
    from stockade.cli.upload_batches import Outcome

out = Console()


def upload(
    files: list[Path] = typer.Argument(..., help="Package files (.conda or .tar.bz2)"),
    channel: str = typer.Option(..., "--channel", "-c"),
    force: bool = typer.Option(False, help="Replace files that already exist (needs manage)"),
    wait: bool = typer.Option(True, help="Wait until the channel's index includes the files"),
    batch: int = typer.Option(50, min=1, max=1000, help="Files per request"),
    jobs: int = typer.Option(4, "--jobs", "-j", min=1, max=16, help="Parallel connections"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Name only the refused files"),
) -> None:
    """Upload package files to a channel.

    Files go in batches (--batch files, at most 32 MiB a request; a bigger
    file alone, streamed from disk) over --jobs parallel connections. Each
    file is accepted or refused on its own: a refused file is named with its
    reason, the others are kept. Exit status 1 if any file was refused.
    """
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        fail(f"not a file: {', '.join(missing)}")
    api = client()
    api.get(f"/channels/{channel}")  # fails early, clearly, on a wrong channel or no access
    outcomes = _send(api, channel, files, force=force, batch=batch, jobs=jobs, quiet=quiet)
    accepted = [o for o in outcomes if o.accepted]
    refused = [o for o in outcomes if not o.accepted]
    out.print(f"uploaded {len(accepted)} file(s) to {channel}", highlight=False)
    if refused:
        out.print(f"[red]refused {len(refused)} file(s)[/red]:", highlight=False)
        for outcome in refused:
            out.print(
                f"  [red]refused[/red] {outcome.path.name}: {outcome.reason}", highlight=False
            )
    if wait and accepted:
        wait_published(api, channel)
    if refused:
        raise typer.Exit(1)


def _send(
    api: ApiClient,
    channel: str,
    files: list[Path],
    *,
    force: bool,
    batch: int,
    jobs: int,
    quiet: bool,
) -> list[Outcome]:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from stockade.cli.upload_batches import BatchUploader, plan

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    total = sum(f.stat().st_size for f in files)
    lock = threading.Lock()
    counts = {"accepted": 0, "refused": 0}
    with Progress(*columns, console=out, transient=False) as progress:
        sent = progress.add_task(f"0/{len(files)} answered", total=total)

        def on_done(outcome: Outcome) -> None:
            with lock:
                counts["accepted" if outcome.accepted else "refused"] += 1
                answered = f"{counts['accepted'] + counts['refused']}/{len(files)} answered"
                refused = f", {counts['refused']} refused" if counts["refused"] else ""
            progress.update(sent, description=answered + refused)
            if not outcome.accepted:
                line = f"  [red]refused[/red]  {outcome.path.name}: {outcome.reason}"
            elif quiet:
                return
            else:
                line = f"  accepted {'/'.join(filter(None, (outcome.subdir, outcome.path.name)))}"
            progress.console.print(line, highlight=False)

        uploader = BatchUploader(
            api,
            channel,
            force=force,
            jobs=jobs,
            on_read=lambda n: progress.advance(sent, n),
            on_done=on_done,
        )
        return uploader.run(plan(files, max_files=batch))


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
