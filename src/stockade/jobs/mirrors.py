"""Mirror housekeeping, in every process that runs jobs: start the runs whose schedule is due, and
hand runs left behind (a dead worker's, or a lost queue message's) to the queue again."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from stockade.container import Container
from stockade.db.engine import transaction
from stockade.mirroring import runs
from stockade.mirroring.errors import RunActiveError
from stockade.mirroring.models import Mirror

log = logging.getLogger("stockade.jobs")


class MirrorHousekeeper:
    def __init__(self, container: Container) -> None:
        self.container = container
        self.settings = container.settings.mirror
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="stockade-mirror-schedule", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("mirror housekeeping failed")
            self._stop.wait(self.settings.scheduler_poll_s)

    def tick(self) -> list[int]:
        """One pass; returns the run ids handed to the queue."""
        factory = self.container.factory
        started: list[int] = []
        with transaction(factory) as session:
            due = runs.take_due_mirrors(session)
        for mirror_id in due:
            try:
                with transaction(factory) as session:
                    mirror = session.get(Mirror, mirror_id)
                    if mirror is None:
                        continue
                    run = runs.RunService(session, self.container.secrets).create(
                        mirror, trigger="schedule"
                    )
                    started.append(run.id)
            except RunActiveError:
                log.info("mirror %s: scheduled run skipped, one is in progress", mirror_id)
        stale = timedelta(seconds=self.settings.stale_after_s)
        with transaction(factory) as session:
            started += runs.runs_to_resume(session, stale_after=stale, pending_after=stale)
        for run_id in started:
            self.container.dispatch_run(run_id)
        return started
