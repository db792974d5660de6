"""``/readyz``'s blob store probe answers within its bound when the store hangs (an S3 endpoint
that accepts and never answers): the probe runs in a small pool of its own, so a hanging store
neither holds the request for the store client's whole timeout nor the server's threads."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from stockade.storage.filesystem import FilesystemBlobStore
from stockade.web import health


class HangingStore(FilesystemBlobStore):
    """A real store whose every question hangs until released (or 10 s)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.release = threading.Event()

    def exists(self, sha256: str) -> bool:
        self.release.wait(10)
        return super().exists(sha256)


def test_a_hanging_store_is_unreachable_within_the_bound(tmp_path: Path) -> None:
    store = HangingStore(tmp_path / "blobs")
    started = time.monotonic()
    try:
        assert health.blob_store_state(store) == "unreachable"
        assert time.monotonic() - started < health.BLOB_TIMEOUT_S + 1
    finally:
        store.release.set()
    assert health.blob_store_state(store) == "ok"  # answering again


def test_a_store_that_raises_is_unreachable(tmp_path: Path) -> None:
    class Failing(FilesystemBlobStore):
        def exists(self, sha256: str) -> bool:
            raise OSError("connection refused")

    assert health.blob_store_state(Failing(tmp_path / "blobs")) == "unreachable"
