"""Next run times of cron schedules, for every scheduler (mirrors, feeds, recurring jobs).

A schedule stored before validation tightened (syntax croniter refuses, or one that never fires,
such as ``0 0 31 2 *``) gives ``None`` here instead of an exception, so a scheduler skips that one
row and keeps scheduling the others. :func:`log_bad_schedule` words the one warning;
:class:`BadScheduleWarner` keeps it to one when the skipped row stays due (not a line on every pass
of a scheduler's loop).
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from croniter import CroniterError, croniter

CRON_ERRORS = (CroniterError, ValueError, OverflowError, TypeError)


def next_fire(schedule: str | None, after: datetime) -> datetime | None:
    """The schedule's next time after ``after``; None when there is no schedule, or it is not
    one croniter accepts, or it never fires."""
    if not schedule or not schedule.strip():
        return None
    try:
        result: datetime = croniter(schedule.strip(), after).get_next(datetime)
    except CRON_ERRORS:
        return None
    return result


def log_bad_schedule(log: logging.Logger, what: str, schedule: str) -> None:
    log.warning(
        "%s: schedule %r is not a cron expression that fires; skipped until it is changed",
        what,
        schedule,
    )


class BadScheduleWarner:
    """For a scheduler whose skipped rows stay due: one warning per (what, schedule) for the
    life of the warner (a scheduler that clears a skipped row's next run needs none)."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def warn(self, what: str, schedule: str) -> bool:
        """Log that ``what``'s schedule is unusable, once; True if this call logged it."""
        with self._lock:
            if (what, schedule) in self._seen:
                return False
            self._seen.add((what, schedule))
        log_bad_schedule(self.log, what, schedule)
        return True
