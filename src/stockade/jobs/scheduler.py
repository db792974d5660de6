"""The periodic jobs the domains declare (``core.tasks.Periodic``), on cron schedules (croniter).

Each job's next run lives in ``scheduled_jobs``; taking a due job is one conditional row update,
so any number of replicas may run this thread and each due run happens once. A job that fails is
recorded (status and message) and runs again at its next time. A job whose schedule never fires
or is not valid cron (``core.cron.next_fire`` gives None) is skipped with one warning; the others
keep running. Every background runtime (``jobs/runtime.py``) runs this thread.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from stockade.core.clock import utcnow
from stockade.core.context import Origin, origin
from stockade.core.cron import BadScheduleWarner, next_fire
from stockade.core.tasks import Periodic
from stockade.db import schedules
from stockade.db.engine import transaction

log = logging.getLogger("stockade.scheduler")


def next_time(schedule: str, after: datetime) -> datetime | None:
    """The job's next run; None when its schedule never fires or is not cron."""
    return next_fire(schedule, after)


class SchedulerThread:
    def __init__(
        self, factory: sessionmaker[Session], jobs: list[Periodic], *, poll_s: float = 20.0
    ) -> None:
        self.factory = factory
        self.jobs = jobs
        self.poll_s = poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._bad = BadScheduleWarner(log)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stockade-scheduler", daemon=True)

    def start(self) -> None:
        if not self.jobs:
            return
        self.schedule()
        self._thread.start()

    def schedule(self) -> None:
        """Record each job's schedule and next run (kept if unchanged), without running any."""
        now = utcnow()
        with transaction(self.factory) as session:
            for job in self.jobs:
                when = self._next(job, now)
                if when is not None:
                    schedules.ensure_schedule(session, job.name, job.schedule, when)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for job in self.jobs:
                if self._stop.is_set():
                    return
                try:
                    self.run_if_due(job)
                except Exception:
                    log.exception("scheduler: checking %s failed", job.name)
            self._stop.wait(self.poll_s)

    def _next(self, job: Periodic, now: datetime) -> datetime | None:
        when = next_time(job.schedule, now)
        if when is None:
            self._bad.warn(f"scheduled job {job.name}", job.schedule)
        return when

    def run_if_due(self, job: Periodic) -> bool:
        now = utcnow()
        when = self._next(job, now)
        if when is None:
            return False
        with transaction(self.factory) as session:
            claimed = schedules.claim_due(
                session, job.name, self.owner, lease=job.lease, next_run_at=when
            )
        if not claimed:
            return False
        ok, message = True, ""
        try:
            with origin(Origin(channel="job")):
                message = job.run()
            log.info("scheduled job %s: %s", job.name, message)
        except Exception as exc:  # noqa: BLE001 (a job's failure is recorded, never fatal)
            ok, message = False, f"{exc.__class__.__name__}: {exc}"
            log.warning("scheduled job %s failed: %s", job.name, message)
        with transaction(self.factory) as session:
            schedules.finish(session, job.name, self.owner, ok=ok, message=message)
        return True
