"""File modes of the data folder: readable by the server's own user only.

The data folder holds the database (and its ``-wal``/``-shm`` files), the job queue, the key that
encrypts stored credentials, the blobs and temporary spools. ``stockade serve`` (and ``worker``)
call ``secure_data_dir`` at start: the process umask becomes ``077`` (every file it creates after
that is ``0600``, every folder ``0700``), the data folder is made ``0700`` and the files directly in
it ``0600``, and an existing folder whose blobs were left readable by others (``0644`` before this
rule) is tightened once, file by file. Code that creates files also sets their mode explicitly
(``PRIVATE_FILE``), so an embedding that skips ``secure_data_dir`` still gets private blobs.

With ``x_accel_redirect`` (nginx serves the blobs), blobs and their folders are group-readable
(``0640``/``0750``): run nginx in the server user's group.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
GROUP_DIR = 0o750
GROUP_FILE = 0o640
UMASK = 0o077


def restrict_umask() -> None:
    """Files and folders this process creates from now on are its user's alone."""
    os.umask(UMASK)


def secure_data_dir(
    data_dir: Path, *, blob_dir: Path, extra_files: tuple[Path, ...] = (), group_blobs: bool = False
) -> None:
    """Create or tighten the data folder (see the module's docstring)."""
    restrict_umask()
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(data_dir, GROUP_DIR if group_blobs else PRIVATE_DIR)
    for entry in data_dir.iterdir():
        if entry.is_file() and not entry.is_symlink():
            _tighten(entry, PRIVATE_FILE)
    for path in extra_files:  # a SQLite database kept outside the data folder, and its companions
        if path.is_file() and not path.is_symlink():
            _tighten(path, PRIVATE_FILE)
    dir_mode, file_mode = (GROUP_DIR, GROUP_FILE) if group_blobs else (PRIVATE_DIR, PRIVATE_FILE)
    blob_dir.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    for folder in (blob_dir, *(e for e in data_dir.iterdir() if e.is_dir() and e != blob_dir)):
        blobs = folder == blob_dir
        wanted = (dir_mode, file_mode) if blobs else (PRIVATE_DIR, PRIVATE_FILE)
        # Folders made since this rule are private from the start: only older ones are walked.
        if not folder.is_symlink() and (
            _loose(folder, wanted[0]) or _loose(folder / "tmp", wanted[0])
        ):
            tighten_tree(folder, dir_mode=wanted[0], file_mode=wanted[1])


def tighten_tree(root: Path, *, dir_mode: int, file_mode: int) -> None:
    """Every folder under ``root`` at most ``dir_mode`` and every file at most ``file_mode``."""
    _tighten(root, dir_mode)
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        for name in dirs:
            if not (base / name).is_symlink():
                _tighten(base / name, dir_mode)
        for name in files:
            if not (base / name).is_symlink():
                _tighten(base / name, file_mode)


def _loose(path: Path, allowed: int) -> bool:
    """``path`` exists and grants more than ``allowed``."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return False
    return bool(mode & ~allowed)


def _tighten(path: Path, allowed: int) -> None:
    try:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & ~allowed:
            os.chmod(path, mode & allowed)
    except FileNotFoundError:  # gone meanwhile (a spool finished): nothing to tighten
        pass
