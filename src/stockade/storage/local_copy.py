"""A blob as a file on this machine, for readers that need one (archive readers, clamd).

The filesystem store hands out its own file; another store's blob is copied (streamed) into a
temporary file of its staging folder, deleted when the ``with`` block ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stockade.storage.interfaces import BlobStore

CHUNK = 1024 * 1024


@contextmanager
def local_file(blobs: BlobStore, sha256: str, suffix: str = "") -> Iterator[Path]:
    """The blob's bytes in a local file (raises BlobNotFoundError when it is missing).
    ``suffix`` keeps a name's extension (``.conda``, ``.tar.bz2``) for readers that look."""
    path = blobs.local_path(sha256)
    if path is not None:
        if not path.is_file():
            blobs.open(sha256).close()  # the store's own "missing" error
        yield path
        return
    fd, name = tempfile.mkstemp(dir=blobs.staging_dir(), prefix="copy-", suffix=suffix)
    copy = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, blobs.open(sha256) as source:
            shutil.copyfileobj(source, out, CHUNK)
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def suffix_of(filename: str) -> str:
    """The package extension of ``filename`` (``.conda``, ``.tar.bz2``), or ""."""
    for suffix in (".conda", ".tar.bz2"):
        if filename.endswith(suffix):
            return suffix
    return ""
