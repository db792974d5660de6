"""Memory of a publisher: what it remembers between publications, and giving back the rest.

- :class:`ShardMemos` keeps the last :class:`ShardMemo` of each subdir (about 100 bytes a record),
  bounded in records over all subdirs: the least recently published are forgotten first (their
  next publication fingerprints every name, as a new process does).
- :func:`release_memory` hands freed heap back to the kernel after a big publication. A
  publication of 100,000 records allocates ~100,000 record bytes objects of 500-700 bytes (above
  pymalloc's limit, so from glibc's heap) and several 10-60 MB buffers; once freed, glibc keeps
  most of those pages (free chunks between live ones, per-thread arenas of the compression
  threads), and the process stayed ~800 MiB above idle. ``malloc_trim(0)`` returns every whole
  free page (a few milliseconds). Not glibc (musl, macOS): nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections import OrderedDict
from functools import cache

from stockade.channels.publication_shards import ShardMemo

log = logging.getLogger("stockade.publisher")

#: Records remembered over all subdirs (about 100 bytes each).
MAX_MEMO_RECORDS = 1_000_000
#: A publication of at least this many records trims the heap afterwards.
TRIM_MIN_RECORDS = 10_000


class ShardMemos:
    def __init__(self, max_records: int = MAX_MEMO_RECORDS) -> None:
        self.max_records = max_records
        self._memos: OrderedDict[int, ShardMemo] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, index_id: int) -> ShardMemo | None:
        with self._lock:
            return self._memos.get(index_id)

    def put(self, index_id: int, memo: ShardMemo) -> None:
        with self._lock:
            self._memos.pop(index_id, None)
            if len(memo) > self.max_records:
                return
            self._memos[index_id] = memo
            total = sum(len(m) for m in self._memos.values())
            while total > self.max_records:
                _, oldest = self._memos.popitem(last=False)
                total -= len(oldest)

    def forget(self, index_id: int) -> None:
        with self._lock:
            self._memos.pop(index_id, None)


@cache
def _malloc_trim() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_memory() -> bool:
    """Give the heap's whole free pages back to the kernel; True when it could."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
