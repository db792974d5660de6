"""Filesystem blob store: ``ROOT/ab/cd/abcd…``, written to a temporary name and renamed."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from stockade.storage.errors import (
    BlobIntegrityError,
    BlobNotFoundError,
    BlobStoreUnavailableError,
)
from stockade.storage.permissions import GROUP_DIR, GROUP_FILE, PRIVATE_DIR, PRIVATE_FILE

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class FilesystemBlobStore:
    """Blobs are ``0600`` in ``0700`` folders (``storage/permissions.py``); with
    ``group_readable`` (nginx serving them by X-Accel-Redirect) ``0640`` in ``0750`` folders.
    Staging files are always ``0600``, until stored."""

    def __init__(self, root: Path, *, group_readable: bool = False) -> None:
        self.root = root
        self._dir_mode = GROUP_DIR if group_readable else PRIVATE_DIR
        self._file_mode = GROUP_FILE if group_readable else PRIVATE_FILE
        self._tmp = root / "tmp"
        self._make_dir(root)
        self._make_dir(self._tmp, mode=PRIVATE_DIR)

    def _make_dir(self, path: Path, mode: int | None = None) -> None:
        """Create ``path`` (and missing parents under the root) with an explicit mode."""
        if path.is_dir():
            return
        if path != self.root and not path.parent.is_dir():
            self._make_dir(path.parent)
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, self._dir_mode if mode is None else mode)

    def path_for(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise BlobNotFoundError(f"not a sha256: {sha256[:80]!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def staging_dir(self) -> Path:
        return self._tmp

    def put_file(self, path: Path, sha256: str) -> None:
        target = self.path_for(sha256)
        if _touch(target):
            path.unlink(missing_ok=True)
            return
        self._make_dir(target.parent)
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(path, self._file_mode)
        os.replace(path, target)  # atomic: the real name only ever holds complete bytes
        _fsync_dir(target.parent)

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if _touch(self.path_for(sha256)):
            return sha256
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            self.put_file(Path(name), sha256)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return sha256

    def check_reachable(self) -> None:
        """The blob folder and its staging folder are there (a folder that vanished, or a volume
        never mounted, would answer "no such blob" to everything)."""
        for folder in (self.root, self._tmp):
            if not folder.is_dir():
                raise BlobStoreUnavailableError(f"blob folder {folder} is missing")

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path_for(sha256).stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha256} is missing") from None

    def modified_at(self, sha256: str) -> datetime:
        try:
            mtime = self.path_for(sha256).stat().st_mtime
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha256} is missing") from None
        return datetime.fromtimestamp(mtime, tz=UTC)

    def open(self, sha256: str) -> BinaryIO:
        try:
            return self.path_for(sha256).open("rb")
        except FileNotFoundError:
            raise BlobNotFoundError(f"blob {sha256} is missing") from None

    def read_bytes(self, sha256: str) -> bytes:
        with self.open(sha256) as fh:
            return fh.read()

    def local_path(self, sha256: str) -> Path | None:
        return self.path_for(sha256)

    def presigned_url(
        self,
        sha256: str,
        filename: str,
        expires_s: int = 300,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
    ) -> str | None:
        return None

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def iter_all(self) -> Iterator[str]:
        for path in self.root.glob("??/??/*"):
            if _SHA256.match(path.name):
                yield path.name

    def verify(self, sha256: str) -> None:
        digest = hashlib.sha256()
        with self.open(sha256) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        if digest.hexdigest() != sha256:
            raise BlobIntegrityError(f"blob {sha256} has sha256 {digest.hexdigest()}")


def _touch(path: Path) -> bool:
    """Whether ``path`` exists; if so its time is set to now. Bytes stored again are young again,
    so ``fsck --repair`` (which collects orphans older than its grace) cannot collect them
    between this store and the commit of the row that names them."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
