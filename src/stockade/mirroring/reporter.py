"""A run's live progress: steps, counts and log lines kept in memory and saved with each heartbeat.

The run's thread reports as it goes (cheap, no database); a heartbeat thread saves the state every
few seconds, renews the lease, and learns whether a stop was asked. ``check()`` raises at the next
safe point: :class:`RunStoppedError` after a stop, :class:`LeaseLostError` when another worker has
taken the run over.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.mirroring import runs
from stockade.mirroring.errors import LeaseLostError, RunStoppedError, ShuttingDownError

log = logging.getLogger("stockade.mirroring")

STEP_LABELS = {
    "fetch": "Fetch upstream repodata",
    "evaluate": "Apply policies",
    "plan": "Compare with the channel",
    "download": "Download files",
    "publish": "Publish the index",
}


class RunReporter:
    def __init__(
        self,
        factory: sessionmaker[Session],
        run_id: int,
        owner: str,
        *,
        steps: list[str],
        heartbeat_s: float = 5.0,
        abort: threading.Event | None = None,
    ) -> None:
        self.abort = abort or threading.Event()
        self.factory = factory
        self.run_id = run_id
        self.owner = owner
        self.heartbeat_s = heartbeat_s
        self.steps: list[dict[str, Any]] = [
            {
                "name": s,
                "label": STEP_LABELS.get(s, s),
                "state": "pending",
                "done": 0,
                "total": None,
            }
            for s in steps
        ]
        self.counts: dict[str, Any] = {}
        self._logs: list[tuple[str, str, datetime]] = []
        self._lock = threading.Lock()
        # Held by a heartbeat's transaction, and by the run thread around one long call that
        # keeps the GIL (``quiet``): a heartbeat that began its transaction (on SQLite: took the
        # write lock) just before such a call would hold the lock until the call ends.
        self._db_turn = threading.Lock()
        self._stop_asked = False
        self._lost = False
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"mirror-run-{run_id}", daemon=True)

    # ---------------------------------------------------------------------- from the run thread

    def start(self) -> None:
        self._thread.start()

    def begin(self, step: str, total: int | None = None) -> None:
        with self._lock:
            entry = self._step(step)
            entry.update(state="running", total=total, done=0)

    def advance(self, step: str, n: int = 1) -> None:
        with self._lock:
            self._step(step)["done"] += n

    def end(self, step: str, state: str = "done") -> None:
        with self._lock:
            entry = self._step(step)
            entry["state"] = state
            if entry["total"] is not None and state == "done":
                entry["done"] = entry["total"]

    def skip_rest(self) -> None:
        with self._lock:
            for entry in self.steps:
                if entry["state"] == "pending":
                    entry["state"] = "skipped"

    def fail_current(self, state: str = "failed") -> None:
        """End the running step(s) as ``state`` (``failed``, or ``stopped`` after a stop)."""
        with self._lock:
            for entry in self.steps:
                if entry["state"] == "running":
                    entry["state"] = state

    def count(self, key: str, value: Any) -> None:
        with self._lock:
            self.counts[key] = value

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def log(self, message: str, level: str = "info") -> None:
        with self._lock:
            self._logs.append((level, message, utcnow()))
        log.log(
            logging.WARNING if level != "info" else logging.INFO,
            "mirror run %s: %s",
            self.run_id,
            message,
        )

    @property
    def stopping(self) -> bool:
        return self._stop_asked or self._lost or self.abort.is_set()

    def check(self) -> None:
        if self.abort.is_set():
            raise ShuttingDownError("the worker is shutting down")
        if self._lost:
            raise LeaseLostError(f"run {self.run_id} was taken over by another worker")
        if self._stop_asked:
            raise RunStoppedError("stopped on request")

    def snapshot(self) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        with self._lock:
            return [dict(s) for s in self.steps], dict(self.counts)

    def close(self) -> None:
        """Stop the heartbeat thread and save what is left (log lines included)."""
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.flush()

    @contextmanager
    def quiet(self) -> Iterator[None]:
        """No heartbeat transaction while the run thread makes one long call that keeps the GIL
        (parsing 400 MB of JSON: seconds); the heartbeat waits, holding no database lock."""
        with self._db_turn:
            yield

    # --------------------------------------------------------------------------------- heartbeat

    def flush(self) -> None:
        with self._lock:
            steps = [dict(s) for s in self.steps]
            counts = dict(self.counts)
            lines, self._logs = self._logs, []
        try:
            with self._db_turn, transaction(self.factory) as session:
                asked = runs.heartbeat(
                    session, self.run_id, self.owner, steps=steps, counts=counts, logs=lines
                )
        except Exception:  # noqa: BLE001 (a busy database must not end the run: next beat retries)
            log.warning("mirror run %s: heartbeat failed (database busy?), retrying", self.run_id)
            with self._lock:
                self._logs[:0] = lines
            return
        if asked is None:
            self._lost = True
        elif asked:
            self._stop_asked = True

    def _loop(self) -> None:
        while not self._closing.wait(self.heartbeat_s):
            self.flush()

    def _step(self, name: str) -> dict[str, Any]:
        for entry in self.steps:
            if entry["name"] == name:
                return entry
        entry = {
            "name": name,
            "label": STEP_LABELS.get(name, name),
            "state": "pending",
            "done": 0,
            "total": None,
        }
        self.steps.append(entry)
        return entry


ProgressCallback = Callable[[int], None]
