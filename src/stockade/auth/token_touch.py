"""A token's last use, written beside the request that used it, never in its way.

A token check only reads (``Authenticator._token_principal``). Its "last used" time and address
are written at most once a minute per token (``tokens.needs_touch``), and that write is a
transaction: on SQLite it takes the one write lock, so a request that wrote it itself waited for
any writer that held the lock then (a publication, a mirror switch: 5 s seen in a test run). The
write is handed to one background thread instead; a token already waiting for its write is not
asked again. A write that fails (the database busy for longer than its timeout) is dropped: the
next use a minute later writes it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from stockade.auth.tokens import touch_token
from stockade.db.engine import transaction

log = logging.getLogger("stockade.auth")


class TokenTouches:
    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self._lock = threading.Lock()
        self._waiting: dict[int, Future[None]] = {}
        self._pool: ThreadPoolExecutor | None = None

    def ask(self, token_id: int, ip: str | None, now: datetime) -> None:
        """Write this use of the token soon (returns at once)."""
        with self._lock:
            if token_id in self._waiting:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="stockade-token-touch")
            self._waiting[token_id] = self._pool.submit(self._touch, token_id, ip, now)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait for the writes asked so far (tests; a clean shutdown)."""
        with self._lock:
            pending = list(self._waiting.values())
        for future in pending:
            future.result(timeout)

    def close(self) -> None:
        """Write what was asked, then let the thread go."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _touch(self, token_id: int, ip: str | None, now: datetime) -> None:
        try:
            with transaction(self.factory) as session:
                touch_token(session, token_id, ip, now)
        except Exception as exc:  # noqa: BLE001 (the next use writes it)
            log.debug("the last use of token %s was not written: %s", token_id, exc)
        finally:
            with self._lock:
                self._waiting.pop(token_id, None)
