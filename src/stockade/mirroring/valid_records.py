"""Upstream records found valid by earlier runs of this process (issue 18, target 5).

Every run checks every upstream record against conda's and rattler's schema
(``mirroring.inputs.integrity_problems``): ~3.5 s for a 600,000-record subdir, nearly all of it
for records the previous run already found valid. A record is recognised again by the hash of its
JSON (``hash(orjson.dumps(record))``): the same content gives the same key in this process, and
Python keys the hash of bytes per process, so a record cannot be made to collide on purpose. Only
a record with exactly the same content is skipped; a changed one (a hotfix of its ``depends``) is
checked again.

The keys of each (mirror, subdir) are kept as one flat array of 8-byte integers (4.8 MB for
600,000 records), not as a set of integer objects: those would be scattered over the pages the
run's parse filled and keep them from being given back after it (``mirroring.memory``).
"""

from __future__ import annotations

import threading
from array import array
from typing import Any

import orjson

#: At most this many keys over all mirrors and subdirs (8 bytes each): the least recently
#: checked subdirs are forgotten first.
MAX_KEYS = 4_000_000


def record_key(record: dict[str, Any]) -> int | None:
    """The key of a parsed upstream record (None if it cannot be encoded: it is then checked)."""
    try:
        return hash(orjson.dumps(record))
    except (orjson.JSONEncodeError, TypeError):
        return None


class ValidRecords:
    """Keys of records found valid, by (mirror id, subdir); safe across threads."""

    def __init__(self, max_keys: int = MAX_KEYS) -> None:
        self._by: dict[tuple[int, str], array[int]] = {}
        self._max = max_keys
        self._lock = threading.Lock()

    def seen(self, mirror_id: int, subdir: str) -> set[int]:
        """The keys the last check of this subdir found valid (a set made for this run)."""
        with self._lock:
            keys = self._by.get((mirror_id, subdir))
        return set(keys) if keys is not None else set()

    def remember(self, mirror_id: int, subdir: str, keys: list[int]) -> None:
        """What this check found valid replaces what the last one did."""
        packed = array("q", keys)
        with self._lock:
            self._by.pop((mirror_id, subdir), None)
            while self._by and sum(map(len, self._by.values())) + len(packed) > self._max:
                del self._by[next(iter(self._by))]  # the least recently checked first
            if len(packed) <= self._max:
                self._by[(mirror_id, subdir)] = packed


#: This process's memory of valid upstream records (runs, dry runs and explain share it).
VALID_RECORDS = ValidRecords()
