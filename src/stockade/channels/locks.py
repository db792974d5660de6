"""Who may publish a subdir right now: one process at a time, released when it dies.

On PostgreSQL a session-level advisory lock, held by a connection for the whole build: if the
process dies, its connection drops and PostgreSQL frees the lock at once, so a replica can take
over immediately (no lease to wait out). On SQLite (the embedded default: one serving process),
a process-wide lock per subdir.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, func, select

# The first key of PostgreSQL's two-key advisory locks: "stockade publication" (arbitrary, fixed).
LOCK_NAMESPACE = 0x5710_CADE & 0x7FFF_FFFF

_local_locks: dict[int, threading.Lock] = {}
_local_guard = threading.Lock()


class PublicationLocks:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def hold(self, index_id: int) -> Iterator[bool]:
        """Yield True while holding the lock of ``index_id``, False when someone else holds it."""
        if self.engine.dialect.name == "postgresql":
            with self._advisory(index_id) as held:
                yield held
            return
        with _local_guard:
            lock = _local_locks.setdefault(index_id, threading.Lock())
        held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()

    @contextmanager
    def _advisory(self, index_id: int) -> Iterator[bool]:
        with self.engine.connect() as conn:
            held = bool(conn.scalar(select(func.pg_try_advisory_lock(LOCK_NAMESPACE, index_id))))
            conn.commit()  # session-level lock: survives the transaction, not the connection
            try:
                yield held
            finally:
                if held:
                    conn.scalar(select(func.pg_advisory_unlock(LOCK_NAMESPACE, index_id)))
                    conn.commit()
