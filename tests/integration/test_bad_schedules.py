"""A cron schedule stored before validation tightened (one that never fires, or syntax croniter
refuses) neither crashes nor wedges a scheduler: that row is skipped with one warning (no
traceback on every pass) and the others keep their schedule. Feeds (``vulns.tasks``) and the
recurring jobs (``jobs.scheduler``) share ``core.cron.next_fire`` with the mirror scheduler."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.cron import next_fire
from stockade.core.tasks import Periodic as Job
from stockade.db import schedules
from stockade.db.engine import transaction
from stockade.jobs.scheduler import SchedulerThread
from stockade.mirroring import runs
from stockade.mirroring.models import Mirror
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.vulns.models import VulnFeed
from stockade.vulns.tasks import dispatch_due_feeds
from tests.integration.vulns.support import add_feed, osv_folder

BAD = ["0 0 31 2 *", "61 * * * *", "not cron"]


@pytest.mark.parametrize("schedule", [*BAD, "", None])
def test_next_fire_gives_none_for_a_schedule_that_cannot_fire(schedule: str | None) -> None:
    assert next_fire(schedule, utcnow()) is None
    assert next_fire("*/5 * * * *", utcnow()) is not None


def test_feeds_with_bad_stored_schedules_are_skipped_once(
    container: Container, admin: Principal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = osv_folder(tmp_path, "aiohttp").as_uri()
    good = add_feed(container, admin, "good", url, "osv")
    bad = [add_feed(container, admin, f"bad{i}", url, "osv") for i in range(len(BAD))]
    with transaction(container.factory) as session:
        due = utcnow() - timedelta(minutes=1)
        session.execute(update(VulnFeed).values(next_run_at=due))
        for feed_id, schedule in zip(bad, BAD, strict=True):  # as an older version stored them
            session.execute(
                update(VulnFeed).where(VulnFeed.id == feed_id).values(schedule=schedule)
            )
    dispatched: list[int] = []
    container.dispatch_feed_sync = dispatched.append
    with caplog.at_level(logging.WARNING, logger="stockade.jobs"):
        assert dispatch_due_feeds(container) == [good]
        assert dispatch_due_feeds(container) == []
    assert dispatched == [good]
    warnings = [r for r in caplog.records if r.name == "stockade.jobs"]
    assert len(warnings) == len(BAD) and all(r.exc_info is None for r in warnings)
    with container.factory() as session:
        for feed_id in bad:
            feed = session.get(VulnFeed, feed_id)
            assert feed is not None and feed.next_run_at is None
            assert feed.last_status == "failed" and "schedule" in (feed.last_error or "")
        kept = session.get(VulnFeed, good)
        assert kept is not None and kept.next_run_at is not None and kept.next_run_at > utcnow()


def test_a_recurring_job_with_a_bad_schedule_is_skipped_once(
    container: Container, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[str] = []
    bad = Job("bad", "0 0 31 2 *", lambda: runs.append("bad") or "ran")
    good = Job("good", "*/5 * * * *", lambda: runs.append("good") or "ran")
    scheduler = SchedulerThread(container.factory, [bad, good], poll_s=3600)
    with caplog.at_level(logging.WARNING, logger="stockade.scheduler"):
        scheduler.schedule()  # does not raise; the good job is scheduled
        with transaction(container.factory) as session:
            session.execute(
                update(schedules.ScheduledJob).values(next_run_at=utcnow() - timedelta(seconds=1))
            )
        assert not scheduler.run_if_due(bad)
        assert not scheduler.run_if_due(bad)
        assert scheduler.run_if_due(good)
    assert runs == ["good"]
    with container.factory() as session:
        assert schedules.get(session, "bad") is None
    warnings = [r for r in caplog.records if r.name == "stockade.scheduler"]
    assert len(warnings) == 1 and "0 0 31 2 *" in warnings[0].getMessage()


def test_a_mirror_with_a_bad_stored_schedule_runs_once_and_says_why(
    container: Container, admin: Principal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "upstream" / "noarch"
    folder.mkdir(parents=True)
    (folder / "repodata.json").write_text('{"packages": {}}')
    ids = []
    with transaction(container.factory) as session:
        for name in ("good", "bad"):
            spec = MirrorSpec(source=folder.parent.as_uri(), subdirs=["noarch"])
            ids.append(MirrorService(session, container.secrets).create(admin, name, spec).id)
    good, bad = ids
    with transaction(container.factory) as session:
        session.execute(update(Mirror).values(next_run_at=utcnow() - timedelta(minutes=1)))
        session.execute(update(Mirror).where(Mirror.id == bad).values(schedule="0 0 31 2 *"))
    with caplog.at_level(logging.WARNING, logger="stockade.mirroring"):
        with transaction(container.factory) as session:
            assert sorted(runs.take_due_mirrors(session)) == sorted(ids)
        with transaction(container.factory) as session:
            assert runs.take_due_mirrors(session) == []
    warnings = [r for r in caplog.records if r.name == "stockade.mirroring.runs"]
    assert len(warnings) == 1 and "0 0 31 2 *" in warnings[0].getMessage()
    with container.factory() as session:
        assert session.get(Mirror, bad).next_run_at is None  # type: ignore[union-attr]
        assert session.get(Mirror, good).next_run_at > utcnow()  # type: ignore[union-attr,operator]
