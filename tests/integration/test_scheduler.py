"""Recurring jobs: due runs happen once across replicas, failures are recorded, then retried."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.errors import ConfigurationError
from stockade.core.tasks import Periodic as Job
from stockade.db import schedules
from stockade.db.engine import transaction
from stockade.jobs.registry import recurring_jobs
from stockade.jobs.scheduler import SchedulerThread, next_time
from stockade.settings import load_settings


def _make_due(container: Container, name: str) -> None:
    with transaction(container.factory) as session:
        session.execute(
            update(schedules.ScheduledJob)
            .where(schedules.ScheduledJob.name == name)
            .values(next_run_at=utcnow() - timedelta(seconds=1))
        )


def test_a_due_job_runs_once_across_two_schedulers(container: Container) -> None:
    runs: list[str] = []
    job = Job("count", "*/5 * * * *", lambda: runs.append("x") or "ran")
    first = SchedulerThread(container.factory, [job], poll_s=3600)
    second = SchedulerThread(container.factory, [job], poll_s=3600)
    second.owner = "other-replica:1"
    first.schedule()  # no background thread: the test drives the runs itself
    second.schedule()
    try:
        assert not first.run_if_due(job), "not due right after it is scheduled"
        _make_due(container, "count")
        assert first.run_if_due(job)
        assert not second.run_if_due(job), "the other replica does not run it again"
        with transaction(container.factory) as session:
            row = schedules.get(session, "count")
            assert row is not None and row.last_status == "ok" and row.last_message == "ran"
            assert row.next_run_at > utcnow() and row.lease_owner is None
    finally:
        first.stop()
        second.stop()
    assert runs == ["x"]


def test_a_failing_job_is_recorded_and_runs_again_next_time(container: Container) -> None:
    def boom() -> str:
        raise RuntimeError("directory on fire")

    job = Job("boom", "0 * * * *", boom)
    scheduler = SchedulerThread(container.factory, [job], poll_s=3600)
    scheduler.schedule()
    try:
        _make_due(container, "boom")
        assert scheduler.run_if_due(job)
        with transaction(container.factory) as session:
            row = schedules.get(session, "boom")
            assert row is not None and row.last_status == "failed"
            assert "directory on fire" in (row.last_message or "")
            assert row.next_run_at == next_time("0 * * * *", row.last_started_at or utcnow())
        _make_due(container, "boom")
        assert scheduler.run_if_due(job)
    finally:
        scheduler.stop()


def test_ldap_sync_is_scheduled_only_when_configured(container: Container) -> None:
    assert "ldap-sync" not in [j.name for j in recurring_jobs(container)]
    settings = container.settings.model_copy(
        update={
            "ldap": container.settings.ldap.model_copy(
                update={"url": "ldap://127.0.0.1:9", "sync_schedule": "15 * * * *"}
            )
        }
    )
    other = Container(**{**container.__dict__, "settings": settings})
    jobs = recurring_jobs(other)
    assert ("ldap-sync", "15 * * * *") in [(j.name, j.schedule) for j in jobs]


def test_a_bad_schedule_is_a_clear_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"STOCKADE_LDAP__SYNC_SCHEDULE.*cron"):
        load_settings(data_dir=tmp_path, ldap={"url": "ldap://x", "sync_schedule": "every day"})
    assert load_settings(data_dir=tmp_path, ldap={"sync_schedule": ""}).ldap.sync_schedule is None
