"""``stockade backup`` and ``stockade restore`` (``storage/backup.py``, docs/backup.md)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn

from stockade.cli.client import fail
from stockade.cli.server import private_files, settings_or_exit
from stockade.core.errors import StockadeError

if TYPE_CHECKING:
    from stockade.settings import Settings
    from stockade.storage.backup import Installation
    from stockade.storage.interfaces import BlobStore

out = Console()
err = Console(stderr=True)


def backup(
    folder: Path = typer.Argument(
        ...,
        help="Folder to write the backup into (new, empty, or "
        "an earlier backup: then only new blobs are copied).",
    ),
    blobs: bool = typer.Option(
        True,
        "--blobs/--no-blobs",
        help="Also copy the blob store (--no-blobs: back the blobs up yourself, after the "
        "database, e.g. by replicating the S3 bucket).",
    ),
) -> None:
    """Back up the database, the key files and the blobs into a folder (in that
    order).

    Safe while the server runs: the database copy is consistent (SQLite's
    online backup; PostgreSQL: pg_dump, which must be installed), and blobs
    never change once stored, so the blobs copied after the database hold
    every file that copy names. Each blob is checked against its sha256 as
    it is copied. BACKUP.json is written last. The folder holds the server's
    secrets (secret.key, signing keys): keep it private. See docs/backup.md."""
    from stockade.storage.backup import backup as run_backup

    settings = settings_or_exit()
    try:
        with _Steps() as steps:
            summary = run_backup(_installation(settings), folder, blobs=blobs, progress=steps)
    except StockadeError as exc:
        fail(exc.detail)
    out.print(f"database: {folder / summary.database} (revision {summary.revision})")
    out.print(f"files: {', '.join(summary.files) or 'none'}")
    if blobs:
        out.print(
            f"blobs: {summary.blobs} ({summary.copied} copied now, {summary.copied_bytes} bytes)",
            highlight=False,
        )
    if summary.damaged:
        fail(
            f"{len(summary.damaged)} blobs were left out: their bytes do not match their "
            f"sha256 (run `stockade fsck --verify`): {', '.join(summary.damaged[:5])}"
        )
    out.print(f"[green]backup written to {folder}[/green]")


def restore(
    folder: Path = typer.Argument(..., help="A folder written by `stockade backup`."),
) -> None:
    """Restore a backup made by `stockade backup` into this server's empty data
    folder and database.

    The database must be new and empty (SQLite: no stockade.db in the data
    folder; PostgreSQL: database_url names an empty database). secret.key
    and the signing keys are put where this server reads them (an existing
    file with other contents is never overwritten), then every blob into the
    configured blob store. stockade.toml is not restored: copy it from the
    backup yourself unless you wrote a new one. Then `stockade serve` (it
    migrates a backup of an older version) and `stockade fsck`."""
    from stockade.storage.backup import restore as run_restore

    settings = settings_or_exit()
    private_files(settings)
    target = _installation(settings, config=False)
    try:
        with _Steps() as steps:
            summary = run_restore(folder, target, progress=steps)
    except StockadeError as exc:
        fail(exc.detail)
    private_files(settings)  # what the restore wrote: private modes too
    out.print(f"database restored (revision {summary.revision})")
    out.print(f"files: {', '.join(summary.files) or 'none'}; blobs: {summary.blobs}")
    if summary.damaged:
        fail(
            f"{len(summary.damaged)} blobs of the backup were left out: their bytes do not "
            f"match their sha256: {', '.join(summary.damaged[:5])}"
        )
    out.print("[green]restored: start the server, then run `stockade fsck`[/green]")


def _installation(settings: Settings, *, config: bool = True) -> Installation:
    from stockade.core.secrets import KEY_FILE
    from stockade.settings import config_path
    from stockade.signing.signers import keys_dir
    from stockade.storage.backup import Installation

    files = {"keys": keys_dir(settings.signing, settings.data_dir)}
    if settings.secret_key is None:  # the key file in the data folder encrypts credentials
        files[KEY_FILE] = settings.data_dir / KEY_FILE
    toml = config_path()
    if config and toml is not None:
        files["stockade.toml"] = toml

    def blobs() -> BlobStore:
        from stockade.container import Container

        container = Container.build(settings)  # the configured store, whatever its backend
        container.close()
        return container.blobs

    return Installation(settings.db_url, files, blobs)


class _Steps:
    """A Rich progress line per step (database, blobs), on stderr."""

    def __init__(self) -> None:
        columns = (SpinnerColumn(), TextColumn("{task.description} {task.completed}"))
        self.progress = Progress(*columns, console=err, transient=True)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Steps:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def __call__(self, step: str, advance: int, total: int | None) -> None:
        task = self.tasks.get(step)
        if task is None:
            task = self.tasks[step] = self.progress.add_task(step, total=total)
        if advance:
            self.progress.advance(task, advance)
