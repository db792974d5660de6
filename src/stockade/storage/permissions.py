"""File modes of the data folder: readable by the server's own user only.

The data folder holds the database (and its ``-wal``/``-shm`` files), the job queue, the key that
encrypts stored credentials, the blobs and temporary spools. ``stockade serve`` (and ``worker``)
call ``secure_data_dir`` at start: the process umask becomes ``077`` (every file it creates after
that is ``0600``, every folder ``0700``), the data folder is made ``0700`` and the files directly in
it ``0600``, and an existing folder whose blobs were left readable by others (``0644`` before this
rule) is tightened once, file by file (and blobs are set group-readable, or private again, when
``x_accel_redirect`` is switched on or off). Code that creates files also sets their mode explicitly
(``PRIVATE_FILE``), so an embedding that skips ``secure_data_dir`` still gets private blobs.

With ``x_accel_redirect`` (nginx serves the blobs), blobs and their folders are group-readable
(``0640``/``0750``): run nginx in the server user's group.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from stockade.storage.errors import DataFolderError

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
    """Create or tighten the data folder (see the module's docstring).

    Raises ``DataFolderError`` naming the path when it cannot (another owner, read-only).
    """
    restrict_umask()
    try:
        _secure(data_dir, blob_dir, extra_files, group_blobs)
    except OSError as exc:
        where = exc.filename or data_dir
        raise DataFolderError(
            f"{where}: cannot make the data folder private ({exc.strerror}); run Stockade as "
            "the user that owns it"
        ) from None


def _secure(
    data_dir: Path, blob_dir: Path, extra_files: tuple[Path, ...], group_blobs: bool
) -> None:
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(data_dir, GROUP_DIR if group_blobs else PRIVATE_DIR)
    for entry in data_dir.iterdir():
        if entry.is_file() and not entry.is_symlink():
            _tighten(entry, PRIVATE_FILE)
    for path in extra_files:  # a SQLite database kept outside the data folder, and its companions
        if path.is_file() and not path.is_symlink():
            _tighten(path, PRIVATE_FILE)
    dir_mode, file_mode = (GROUP_DIR, GROUP_FILE) if group_blobs else (PRIVATE_DIR, PRIVATE_FILE)
    blob_dir.mkdir(parents=True, exist_ok=True)
    staging = blob_dir / "tmp"
    if _mode(blob_dir) != dir_mode or _loose(staging, PRIVATE_DIR):
        # An older folder (0644 blobs), or x_accel_redirect switched on or off: every blob gets
        # the mode it should have. The root is set last, so an interrupted walk runs again.
        _set_tree(blob_dir, dir_mode=dir_mode, file_mode=file_mode, skip=staging)
        if staging.is_dir():
            tighten_tree(staging, dir_mode=PRIVATE_DIR, file_mode=PRIVATE_FILE)
        os.chmod(blob_dir, dir_mode)
    # Other folders (locks, spools): private. Folders made since this rule are private from the
    # start: only older ones are walked.
    for folder in data_dir.iterdir():
        if _is_dir(folder) and folder != blob_dir and _loose(folder, PRIVATE_DIR):
            tighten_tree(folder, dir_mode=PRIVATE_DIR, file_mode=PRIVATE_FILE)


def _is_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _set_tree(root: Path, *, dir_mode: int, file_mode: int, skip: Path) -> None:
    """Exactly ``dir_mode`` for the folders under ``root`` and ``file_mode`` for the files."""
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        dirs[:] = [d for d in dirs if base / d != skip and not (base / d).is_symlink()]
        for name in dirs:
            os.chmod(base / name, dir_mode)
        for name in files:
            if not (base / name).is_symlink():
                os.chmod(base / name, file_mode)


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


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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
