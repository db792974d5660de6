"""Upstream records found valid by earlier runs (issue 18, target 5).

Every run checks every upstream record against conda's and rattler's schema
(``mirroring.inputs.integrity_problems``): ~4.6 s for a 600,000-record subdir, nearly all of it
for records the previous run already found valid. A record is recognised again by a 128-bit
BLAKE2b digest of its JSON: only a record with exactly the same content is skipped (whether a
record is valid depends on its content alone), a changed one (a hotfix of its ``depends``) is
checked again, and a record cannot be made to match another's digest on purpose.

The digests of each (mirror, subdir) are kept as one flat ``bytes`` (9.6 MB for 600,000 records),
not as a set of objects: those would be scattered over the pages the run's parse filled and keep
them from being given back after it (``mirroring.memory``). They are also written to a file of
the data folder (``keep_in``), so a run in a process of its own (``mirroring.placement``) and the
first run after a restart find them too. The file is a cache: one that is missing, torn, or
written by another version of the checks (``CHECKS``) is ignored, and everything is checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson

#: At most this many digests over all mirrors and subdirs (16 bytes each) in memory: the least
#: recently checked subdirs are forgotten first.
MAX_KEYS = 4_000_000
DIGEST = 16
#: The checks whose verdicts a file holds: change it with ``conda.records.record_problem``'s rules
#: (the package's version is part of it too).
CHECKS = b"record-problem 1"
#: Files not written for this long (a deleted mirror's) are removed when another one is written.
STALE_S = 30 * 86400


def record_key(record: dict[str, Any]) -> bytes | None:
    """The digest of a parsed upstream record (None if it cannot be encoded: it is then checked)."""
    try:
        return hashlib.blake2b(orjson.dumps(record), digest_size=DIGEST).digest()
    except (orjson.JSONEncodeError, TypeError):
        return None


def _header() -> bytes:
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("stockade")
    except PackageNotFoundError:
        release = "unknown"
    return b"stockade-valid-records " + CHECKS + b" " + release.encode() + b"\n"


class ValidRecords:
    """Digests of records found valid, by (mirror id, subdir); safe across threads."""

    def __init__(self, max_keys: int = MAX_KEYS, folder: Path | None = None) -> None:
        self._by: dict[tuple[int, str], bytes] = {}
        self._max = max_keys * DIGEST
        self._lock = threading.Lock()
        self._folder = folder

    def keep_in(self, folder: Path) -> None:
        """Write the digests to files of ``folder`` too, and read them from there."""
        self._folder = folder

    def seen(self, mirror_id: int, subdir: str) -> set[bytes]:
        """The digests the last check of this subdir found valid (a set made for this run)."""
        with self._lock:
            packed = self._by.get((mirror_id, subdir))
        if packed is None:
            packed = self._read(mirror_id, subdir)
        return {packed[i : i + DIGEST] for i in range(0, len(packed), DIGEST)}

    def remember(self, mirror_id: int, subdir: str, keys: list[bytes]) -> None:
        """What this check found valid replaces what the last one did."""
        packed = b"".join(keys)
        with self._lock:
            self._by.pop((mirror_id, subdir), None)
            while self._by and sum(map(len, self._by.values())) + len(packed) > self._max:
                del self._by[next(iter(self._by))]  # the least recently checked first
            if len(packed) <= self._max:
                self._by[(mirror_id, subdir)] = packed
        self._write(mirror_id, subdir, packed)

    def _path(self, mirror_id: int, subdir: str) -> Path | None:
        if self._folder is None or not subdir.replace("-", "").isalnum():
            return None
        return self._folder / f"{mirror_id}-{subdir}.bin"

    def _read(self, mirror_id: int, subdir: str) -> bytes:
        path = self._path(mirror_id, subdir)
        if path is None:
            return b""
        try:
            data = path.read_bytes()
        except OSError:
            return b""
        header = _header()
        body = memoryview(data)[len(header) :]
        if not data.startswith(header) or len(body) % DIGEST or len(body) > self._max:
            return b""
        return bytes(body)

    def _write(self, mirror_id: int, subdir: str, packed: bytes) -> None:
        path = self._path(mirror_id, subdir)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            partial.write_bytes(_header() + packed)
            os.replace(partial, path)  # readers see the old file or the new one, whole
        except OSError:  # a cache: the next run checks everything
            return
        self._prune(path.parent)

    def _prune(self, folder: Path) -> None:
        cutoff = time.time() - STALE_S
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                if entry.stat().st_mtime < cutoff:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)


#: This process's memory of valid upstream records (runs, dry runs and explain share it).
VALID_RECORDS = ValidRecords()
