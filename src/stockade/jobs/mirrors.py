"""Mirror housekeeping, in every process that runs jobs: start the runs whose schedule is due, and
hand runs left behind (a dead worker's, or a lost queue message's) to the queue again."""

from __future__ import annotations

import logging
from datetime import timedelta

from stockade.container import Container
from stockade.db.engine import transaction
from stockade.jobs.ticker import Ticker
from stockade.mirroring import runs
from stockade.mirroring.errors import RunActiveError
from stockade.mirroring.models import Mirror

log = logging.getLogger("stockade.jobs")


class MirrorHousekeeper(Ticker):
    name = "stockade-mirror-schedule"

    def __init__(self, container: Container) -> None:
        self.container = container
        self.settings = container.settings.mirror
        super().__init__(self.settings.scheduler_poll_s)

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
