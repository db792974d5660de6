"""Who may publish a subdir right now: one process at a time, released when it dies.

On PostgreSQL a session-level advisory lock, held by a connection for the whole build: if the
process dies, its connection drops and PostgreSQL frees the lock at once, so a replica can take
over immediately (no lease to wait out). On SQLite (one machine: one or more worker processes of
``stockade serve``), an ``flock`` on a file beside the database, which the kernel frees when the
holder dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, func, select

# The first key of PostgreSQL's two-key advisory locks: "stockade publication" (arbitrary, fixed).
LOCK_NAMESPACE = 0x5710_CADE & 0x7FFF_FFFF


class PublicationLocks:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        parent = Path(database).resolve().parent if database and database != ":memory:" else None
        self.lock_dir = (parent or Path("/tmp")) / ".stockade-locks"  # noqa: S108 (memory DBs only)

    @contextmanager
    def hold(self, index_id: int) -> Iterator[bool]:
        """Yield True while holding the lock of ``index_id``, False when someone else holds it."""
        if self.engine.dialect.name == "postgresql":
            with self._advisory(index_id) as held:
                yield held
        else:
            with self._flock(index_id) as held:
                yield held

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

    @contextmanager
    def _flock(self, index_id: int) -> Iterator[bool]:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_dir / f"publish-{index_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
