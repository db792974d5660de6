"""The blob store protocol. Blobs are immutable and addressed by the sha256 of their bytes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol


class BlobStore(Protocol):
    def staging_dir(self) -> Path:
        """A local folder for temporary files that ``put_file`` can move in cheaply."""
        ...

    def put_file(self, path: Path, sha256: str) -> None:
        """Take ownership of ``path`` (its bytes have the given sha256) and store it atomically."""
        ...

    def put_bytes(self, data: bytes) -> str:
        """Store bytes, return their sha256. Storing existing content is a no-op."""
        ...

    def check_reachable(self) -> None:
        """Raise ``BlobStoreUnavailableError`` when the store cannot be used at all: an S3
        bucket that does not exist or is refused, a filesystem store whose folder is gone (a
        volume not mounted). ``/readyz`` asks it."""
        ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def modified_at(self, sha256: str) -> datetime:
        """When the blob was stored (UTC); raises BlobNotFoundError. ``fsck`` leaves younger
        orphans alone: an upload stores its blob before it commits the row naming it."""
        ...

    def open(self, sha256: str) -> BinaryIO:
        """A readable binary stream; raises BlobNotFoundError."""
        ...

    def read_bytes(self, sha256: str) -> bytes: ...

    def local_path(self, sha256: str) -> Path | None:
        """A path on this machine holding the bytes, when the backend has one (zero-copy serving)."""
        ...

    def presigned_url(
        self,
        sha256: str,
        filename: str,
        expires_s: int = 300,
        *,
        content_type: str | None = None,
        cache_control: str | None = None,
    ) -> str | None:
        """A URL the client may be redirected to, when the backend supports it (S3): its
        answer names ``filename`` (Content-Disposition) and carries the given Content-Type and
        Cache-Control."""
        ...

    def delete(self, sha256: str) -> None: ...

    def iter_all(self) -> Iterator[str]: ...

    def verify(self, sha256: str) -> None:
        """Read the blob whole; raises BlobIntegrityError when its bytes have another sha256."""
        ...
