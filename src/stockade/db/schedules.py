"""Recurring jobs: when each one last ran and when it is due, with a lease so one process runs it.

The scheduler (``stockade.jobs.scheduler``) asks :func:`claim_due` for a job; the row update is the
lock, so several replicas can run the scheduler and each due run happens once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import String, Text, or_, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from stockade.core.clock import utcnow
from stockade.db.base import Base, UTCDateTime


class ScheduledJob(Base):
    __tablename__ = "scheduled_jobs"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    schedule: Mapped[str] = mapped_column(String(128))  # cron expression
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(String(16))  # ok | failed
    last_message: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


def ensure_schedule(session: Session, name: str, schedule: str, next_run_at: datetime) -> None:
    job = session.get(ScheduledJob, name)
    if job is None:
        session.add(ScheduledJob(name=name, schedule=schedule, next_run_at=next_run_at))
    elif job.schedule != schedule:
        job.schedule = schedule
        job.next_run_at = next_run_at
    session.flush()


def claim_due(
    session: Session, name: str, owner: str, *, lease: timedelta, next_run_at: datetime
) -> bool:
    """Take the lease on a due job and move its next run on; False if not due or taken."""
    now = utcnow()
    result = session.execute(
        update(ScheduledJob)
        .where(
            ScheduledJob.name == name,
            ScheduledJob.next_run_at <= now,
            or_(ScheduledJob.lease_until.is_(None), ScheduledJob.lease_until < now),
        )
        .values(
            lease_owner=owner,
            lease_until=now + lease,
            last_started_at=now,
            next_run_at=next_run_at,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def finish(session: Session, name: str, owner: str, *, ok: bool, message: str | None) -> None:
    session.execute(
        update(ScheduledJob)
        .where(ScheduledJob.name == name, ScheduledJob.lease_owner == owner)
        .values(
            lease_owner=None,
            lease_until=None,
            last_finished_at=utcnow(),
            last_status="ok" if ok else "failed",
            last_message=(message or "")[:2000] or None,
        )
    )


def get(session: Session, name: str) -> ScheduledJob | None:
    return session.scalar(select(ScheduledJob).where(ScheduledJob.name == name))
