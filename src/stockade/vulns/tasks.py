"""Vulnerability jobs: feed syncs and artifact matching (queued by id), and the feed schedule.

- :func:`sync_feed` fetches, stores and matches one feed (``vulns.feedsync``); a failure of any
  kind is recorded on the feed row (``last_status`` ``failed``, or ``unreachable`` when the host
  gave no answer: logged once, not at every retry, see ``vulns.feed_state``), so a caller polling
  the feed always sees the sync end.
- :func:`match_artifacts` matches new artifacts (uploads, copies) against the stored advisories.
- :func:`mirror_run_artifacts` finds what a completed mirror run added: the artifacts of the
  mirror created since the run was created (a cheap indexed query; the run's apply step does not
  hand its ids back).
- :class:`FeedHousekeeper` hands due feeds to the queue; taking a due feed is a conditional update
  of ``vuln_feeds.next_run_at`` (as ``take_due_mirrors`` does), so each due time is taken once.
  A feed whose stored schedule never fires or is not cron (stored before schedules were checked)
  is not queued: its ``next_run_at`` is cleared and the reason recorded on the row, with one
  warning; the other feeds keep their schedule. A due unreachable feed keeps its status while
  it is retried. When it starts, it adds the default feeds on the first start of an installation
  (``vulns.default_feeds``, ``[vulns] default_feeds``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.cron import log_bad_schedule, next_fire
from stockade.core.errors import StockadeError
from stockade.db.engine import transaction
from stockade.jobs.ticker import Ticker
from stockade.jobs.webhooks import dispatch_due
from stockade.mirroring.models import MirrorRun
from stockade.vulns.default_feeds import seed_default_feeds
from stockade.vulns.errors import FeedUnreachableError
from stockade.vulns.feed_state import FeedStatus
from stockade.vulns.feedsync import SyncCounts, record_sync_failure
from stockade.vulns.matcher import MatchCounts, Matcher
from stockade.vulns.models import VulnFeed
from stockade.vulns.security import BlobSecurityReader

log = logging.getLogger("stockade.jobs")
# a scheduled retry of an unreachable feed keeps showing ``unreachable`` (and its since-time)
_QUEUED_UNLESS_UNREACHABLE = case(
    (VulnFeed.last_status == FeedStatus.UNREACHABLE.value, FeedStatus.UNREACHABLE.value),
    else_=FeedStatus.QUEUED.value,
)

__all__ = [
    "FeedHousekeeper",
    "match_artifacts",
    "mirror_run_artifacts",
    "next_feed_run",
    "sync_feed",
    "take_due_feeds",
]


def next_feed_run(schedule: str, after: datetime) -> datetime | None:
    """The feed's next run; None when its schedule never fires or is not cron."""
    return next_fire(schedule, after)


def sync_feed(container: Container, feed_id: int) -> SyncCounts | None:
    """Sync one feed; None when it failed (the failure is on the feed row)."""
    syncer = container.feed_sync()  # with the air-gap folder's cve.zip files (airgap:)
    try:
        counts = syncer.sync_feed(feed_id)
    except FeedUnreachableError:  # recorded on the feed, logged once (vulns.feed_state)
        return None
    except StockadeError as exc:  # fetch errors are recorded by the sync itself
        log.warning("feed %s: sync failed: %s", feed_id, exc.detail)
        record_sync_failure(container.factory, feed_id, exc.detail)
        return None
    except Exception as exc:
        log.exception("feed %s: sync failed", feed_id)
        record_sync_failure(container.factory, feed_id, f"internal error: {exc.__class__.__name__}")
        return None
    log.info(
        "feed %s: %s new, %s changed, %s unchanged, %s failed; matches +%s -%s",
        feed_id,
        counts.new,
        counts.changed,
        counts.unchanged,
        counts.failed,
        counts.matches_added,
        counts.matches_removed,
    )
    if counts.matches_added or counts.matches_restatused:
        dispatch_due(container)  # the webhook deliveries the sync wrote, and any other due one
    return counts


def match_artifacts(container: Container, artifact_ids: Sequence[int]) -> MatchCounts:
    if not artifact_ids:
        return MatchCounts()
    security = BlobSecurityReader(container.blobs)
    with transaction(container.factory) as session:
        counts = Matcher(session, security=security).match_artifacts(list(artifact_ids))
    if counts.deliveries:
        container.dispatch_webhooks(counts.deliveries)
    log.info("matched %s artifacts: %s matches added", len(artifact_ids), counts.added)
    return counts


def mirror_run_artifacts(session: Session, run_id: int) -> list[int]:
    """Artifacts of the run's mirror created since the run was (what its apply step added)."""
    run = session.get(MirrorRun, run_id)
    if run is None:
        return []
    query = select(Artifact.id).where(
        Artifact.mirror_id == run.mirror_id, Artifact.created_at >= run.created_at
    )
    return list(session.scalars(query))


def take_due_feeds(session: Session, now: datetime | None = None) -> list[int]:
    """Enabled feeds whose next run is due, each moved on to its next time (conditionally)."""
    now = now or utcnow()
    due = session.execute(
        select(VulnFeed.id, VulnFeed.schedule, VulnFeed.next_run_at).where(
            VulnFeed.enabled.is_(True),
            VulnFeed.next_run_at.is_not(None),
            VulnFeed.next_run_at <= now,
        )
    ).all()
    taken: list[int] = []
    for feed_id, schedule, was in due:
        when = next_feed_run(schedule, now)
        if when is None:
            _unschedule(session, feed_id, schedule, was)
            continue
        result = session.execute(
            update(VulnFeed)
            .where(VulnFeed.id == feed_id, VulnFeed.next_run_at == was)
            .values(next_run_at=when, last_status=_QUEUED_UNLESS_UNREACHABLE)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            taken.append(feed_id)
    return taken


def _unschedule(session: Session, feed_id: int, schedule: str, was: datetime | None) -> None:
    """A feed whose schedule cannot fire: off the schedule until it is changed, and why."""
    result = session.execute(
        update(VulnFeed)
        .where(VulnFeed.id == feed_id, VulnFeed.next_run_at == was)
        .values(
            next_run_at=None,
            last_status="failed",
            last_error=f"schedule {schedule!r} is not a cron expression that fires: set another",
        )
    )
    if result.rowcount:  # type: ignore[attr-defined]
        log_bad_schedule(log, f"feed {feed_id}", schedule)  # once: it is no longer due


class FeedHousekeeper(Ticker):
    """A thread beside the mirror housekeeper: due feed syncs go to the queue."""

    name = "stockade-feed-schedule"

    def __init__(self, container: Container) -> None:
        self.container = container
        super().__init__(container.settings.mirror.scheduler_poll_s)

    def start(self) -> None:
        """Add the default feeds on the first start (``[vulns] default_feeds``), then schedule."""
        try:
            seed_default_feeds(self.container.factory, self.container.settings.vulns)
        except Exception:  # the feeds can be added by hand; the schedule must run
            log.exception("adding the default vulnerability feeds failed")
        super().start()

    def tick(self) -> list[int]:
        with transaction(self.container.factory) as session:
            due = take_due_feeds(session)
        for feed_id in due:
            self.container.dispatch_feed_sync(feed_id)
        return due
