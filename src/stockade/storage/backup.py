"""``stockade backup`` and ``stockade restore`` (docs/backup.md).

A backup folder holds, in the order they are taken:

1. the database: ``stockade.db`` (SQLite, the online backup API) or ``stockade.pgdump``
   (PostgreSQL, ``pg_dump --format=custom``), a consistent copy at one instant;
2. the key files of the data folder: ``secret.key`` (encrypts stored upstream credentials, when
   ``secret_key`` is not set), ``keys/`` (content-trust signing keys), ``stockade.toml``;
3. ``blobs/ab/cd/<sha256>``: every blob of the store, each checked against its name as it is
   copied. Blobs are immutable and named by their content, so blobs copied after the database
   include every blob that copy names. A second backup into the same folder copies only new
   blobs.

``BACKUP.json`` is written last: a folder without it is an unfinished backup.

Only the :class:`BlobStore` protocol is used: blobs of any backend are copied into the folder,
and restored into whatever store the restoring server is configured with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from stockade.core.clock import utcnow
from stockade.db import backup as database
from stockade.storage.errors import BackupError, BlobNotFoundError
from stockade.storage.interfaces import BlobStore

MANIFEST = "BACKUP.json"
BLOBS = "blobs"
FORMAT = 1
_READ = 1 << 20
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[str, int, int | None], None]  # step, advance, total (None: unknown)


def _no_progress(_step: str, _advance: int, _total: int | None) -> None:
    return None


@dataclass(frozen=True)
class Installation:
    """What a server is made of: its database, its key files (name in a backup -> path on this
    machine) and its blob store (opened when the blobs' turn comes: a restore opens it once
    the key files are in place)."""

    db_url: str
    files: dict[str, Path]
    blobs: Callable[[], BlobStore]


@dataclass
class BackupSummary:
    folder: Path
    database: str
    revision: str | None
    files: list[str] = field(default_factory=list)
    blobs: int = 0
    copied: int = 0  # blobs copied now (the others were in the folder already)
    copied_bytes: int = 0
    damaged: list[str] = field(default_factory=list)  # blobs whose bytes do not match their name


def backup(
    source: Installation, folder: Path, *, blobs: bool = True, progress: Progress = _no_progress
) -> BackupSummary:
    """Database first, then the key files, then the blobs; ``BACKUP.json`` last."""
    _prepare(folder)
    (folder / MANIFEST).unlink(missing_ok=True)  # unfinished until written again
    progress("database", 0, None)
    try:
        name = database.dump(source.db_url, folder)
    except database.DatabaseCopyError as exc:
        raise BackupError(str(exc)) from None
    summary = BackupSummary(folder, name, database.revision(source.db_url))
    for label, path in sorted(source.files.items()):
        if path.exists():
            _copy_tree(path, folder / label)
            summary.files.append(label)
    if blobs:
        _copy_blobs(source.blobs(), folder / BLOBS, summary, progress)
    manifest = {
        "format": FORMAT,
        "created_at": utcnow().isoformat(),
        "database": name,
        "revision": summary.revision,
        "files": summary.files,
        "blobs": summary.blobs if blobs else None,
    }
    _write_private(folder / MANIFEST, json.dumps(manifest, indent=2).encode())
    return summary


def _prepare(folder: Path) -> None:
    """A new or empty folder, or an earlier (maybe interrupted) backup: its blobs are kept."""
    earlier = (folder / MANIFEST).exists() or (folder / BLOBS).is_dir()
    if folder.is_dir() and not earlier and any(folder.iterdir()):
        raise BackupError(
            f"{folder} is not empty and holds no earlier backup: name a new or empty folder"
        )
    if folder.exists() and not folder.is_dir():
        raise BackupError(f"{folder} is a file: name a folder")
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)


def _copy_blobs(store: BlobStore, target: Path, summary: BackupSummary, progress: Progress) -> None:
    progress("blobs", 0, None)
    for sha in store.iter_all():
        summary.blobs += 1
        path = target / sha[:2] / sha[2:4] / sha
        try:
            if path.exists() and path.stat().st_size == store.size(sha):
                progress("blobs", 1, None)
                continue
            size = _copy_checked(store, sha, path)
        except BlobNotFoundError:  # collected since the listing: named by nothing
            summary.blobs -= 1
            continue
        except _DamagedError:
            summary.damaged.append(sha)
            continue
        summary.copied += 1
        summary.copied_bytes += size
        progress("blobs", 1, None)


class _DamagedError(Exception):
    pass


def _copy_checked(store: BlobStore, sha: str, path: Path) -> int:
    """Stream one blob into ``path`` (a temporary name, renamed when its sha256 matches)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with store.open(sha) as src:
        partial, size = _hashed_copy(src, path.parent, sha)
    os.replace(partial, path)
    return size


def _hashed_copy(src: BinaryIO, folder: Path, sha: str) -> tuple[Path, int]:
    """``src`` copied into a new private file in ``folder``; raises _DamagedError (and removes the
    file) when the bytes do not hash to ``sha``."""
    digest, size = hashlib.sha256(), 0
    fd, name = tempfile.mkstemp(dir=folder, prefix=".partial-")
    partial = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            while block := src.read(_READ):
                digest.update(block)
                out.write(block)
                size += len(block)
        if digest.hexdigest() != sha:
            raise _DamagedError(sha)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return partial, size


def _copy_tree(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
        os.chmod(target, 0o700)
        for child in target.rglob("*"):
            os.chmod(child, 0o700 if child.is_dir() else 0o600)
    else:
        target.unlink(missing_ok=True)
        _write_private(target, source.read_bytes())


def _write_private(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(partial, path)


# ----------------------------------------------------------------------------- restore


@dataclass
class RestoreSummary:
    database: str
    revision: str | None
    files: list[str] = field(default_factory=list)
    blobs: int = 0
    damaged: list[str] = field(default_factory=list)  # left out: bytes not matching their name


def read_manifest(folder: Path) -> dict[str, object]:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupError(
            f"{folder} holds no finished backup ({MANIFEST} is missing: the backup was "
            "interrupted, or this is another folder)"
        ) from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder / MANIFEST} cannot be read: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"{folder / MANIFEST} is not a backup of this version's format")
    return manifest


def restore(
    folder: Path, target: Installation, *, progress: Progress = _no_progress
) -> RestoreSummary:
    """The database into an empty one, the key files where this server reads them (an
    existing, different file is never overwritten), then the blobs into its store."""
    manifest = read_manifest(folder)
    name = str(manifest["database"])
    wanted = database.SQLITE_FILE if database.kind(target.db_url) == "sqlite" else database.PG_FILE
    if name != wanted:
        raise BackupError(
            f"the backup holds {name} but this server's database is "
            f"{database.kind(target.db_url)}: restore into the same kind of database"
        )
    clashes = [
        label
        for label, path in target.files.items()
        if path.is_file()
        and (folder / label).is_file()
        and path.read_bytes() != (folder / label).read_bytes()
    ]
    if clashes:
        raise BackupError(
            f"{', '.join(sorted(clashes))} already exist here with other contents: restore "
            "into a new data folder"
        )
    progress("database", 0, None)
    try:
        database.load(target.db_url, folder / name)
    except database.DatabaseCopyError as exc:
        raise BackupError(str(exc)) from None
    summary = RestoreSummary(name, database.revision(target.db_url))
    for label, path in sorted(target.files.items()):
        if (folder / label).exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            _copy_tree(folder / label, path)
            summary.files.append(label)
    _load_blobs(folder / BLOBS, target.blobs(), summary, progress)
    return summary


def _load_blobs(
    source: Path, store: BlobStore, summary: RestoreSummary, progress: Progress
) -> None:
    """Every blob of the backup into ``store``, each checked against its name on the way."""
    progress("blobs", 0, None)
    for path in source.glob("??/??/*"):
        sha = path.name
        if not _SHA256.match(sha):
            continue
        if not store.exists(sha):
            try:
                with path.open("rb") as src:
                    staged, _ = _hashed_copy(src, store.staging_dir(), sha)
            except _DamagedError:
                summary.damaged.append(sha)
                continue
            store.put_file(staged, sha)
        summary.blobs += 1
        progress("blobs", 1, None)
