"""The vulnerability jobs: due feeds taken once, a feed sync through the job, matching by id."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.vulns.models import VulnFeed
from stockade.vulns.tasks import dispatch_due_feeds, match_artifacts, sync_feed, take_due_feeds
from tests.integration.vulns.support import (
    add_artifacts,
    add_feed,
    channel_id,
    matches,
    osv_folder,
)


def test_a_due_feed_is_taken_once_and_moved_on(
    container: Container, admin: Principal, tmp_path: Path
) -> None:
    feed_id = add_feed(container, admin, "due", osv_folder(tmp_path, "aiohttp").as_uri(), "osv")
    with transaction(container.factory) as session:
        assert take_due_feeds(session) == []  # first run: the schedule's next time
        session.execute(
            update(VulnFeed)
            .where(VulnFeed.id == feed_id)
            .values(next_run_at=utcnow() - timedelta(minutes=1))
        )
    dispatched: list[int] = []
    container.dispatch_feed_sync = dispatched.append
    assert dispatch_due_feeds(container) == [feed_id]
    assert dispatched == [feed_id]
    assert dispatch_due_feeds(container) == []  # moved on to the next hour
    with container.factory() as session:
        feed = session.get(VulnFeed, feed_id)
        assert feed is not None and feed.last_status == "queued"
        assert feed.next_run_at is not None and feed.next_run_at > utcnow()


def test_sync_job_then_match_job(container: Container, admin: Principal, tmp_path: Path) -> None:
    channel = channel_id(container, admin)
    add_artifacts(container, channel, [("aiohttp", "3.7.3", "0")], match=False)
    feed_id = add_feed(container, admin, "jobs", osv_folder(tmp_path, "aiohttp").as_uri(), "osv")
    counts = sync_feed(container, feed_id)
    assert counts is not None and counts.new > 0
    found = matches(container)
    assert ("PYSEC-2021-76", "aiohttp", "3.7.3", "0") in found
    new = add_artifacts(container, channel, [("aiohttp", "3.7.2", "0")], match=False)
    assert ("PYSEC-2021-76", "aiohttp", "3.7.2", "0") not in matches(container)
    assert match_artifacts(container, new).added > 0
    assert ("PYSEC-2021-76", "aiohttp", "3.7.2", "0") in matches(container)


def test_a_failing_sync_is_recorded(container: Container, admin: Principal, tmp_path: Path) -> None:
    feed_id = add_feed(container, admin, "gone", (tmp_path / "missing").as_uri(), "osv")
    assert sync_feed(container, feed_id) is None
    with container.factory() as session:
        feed = session.get(VulnFeed, feed_id)
        assert feed is not None and feed.last_status == "failed" and feed.last_error
