"""The vulnerability domain's background work: feed syncs, artifact matching and webhook
deliveries (queued by id), the feed schedule and the webhook outbox (loops in every runtime).

- :func:`sync_feed` fetches, stores and matches one feed (``vulns.feedsync``); a failure of any
  kind is recorded on the feed row (``last_status`` ``failed``, or ``unreachable`` when the host
  gave no answer: logged once, not at every retry, see ``vulns.feed_state``), so a caller polling
  the feed always sees the sync end.
- :func:`match_artifacts` matches new artifacts (uploads, copies, mirror runs) against the stored
  advisories: the queued fast path. Each new artifact has a match request row, written when it was
  admitted; the job takes the requests of its ids with a lease and deletes them with the matches
  (``vulns.match_requests``), and the match-request loop does the ones a lost or dead job left.
- :func:`dispatch_due_feeds` (the feed schedule's pass) hands due feeds to the queue; taking a due
  feed is a conditional update of ``vuln_feeds.next_run_at`` (as ``take_due_mirrors`` does), so
  each due time is taken once. A feed whose stored schedule never fires or is not cron (stored
  before schedules were checked) is not queued: its ``next_run_at`` is cleared and the reason
  recorded on the row, with one warning; the other feeds keep their schedule. A due unreachable
  feed keeps its status while it is retried. When the loop starts, it adds the default feeds on
  the first start of an installation (``vulns.default_feeds``, ``[vulns] default_feeds``).
- webhook deliveries: :func:`stockade.vulns.webhook_delivery.deliver` (one call, claimed), and
  ``dispatch_due`` (the outbox's pass: due deliveries and retries to the queue).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from stockade.core.clock import utcnow
from stockade.core.context import Origin, origin
from stockade.core.cron import log_bad_schedule, next_fire
from stockade.core.errors import StockadeError
from stockade.core.tasks import Declared, Loop, QueueTask
from stockade.db.engine import transaction
from stockade.storage.interfaces import BlobStore
from stockade.vulns.default_feeds import seed_default_feeds
from stockade.vulns.errors import FeedUnreachableError
from stockade.vulns.feed_state import FeedStatus
from stockade.vulns.feedsync import FeedSync, SyncCounts, record_sync_failure
from stockade.vulns.match_requests import POLL_S, claim, match_claimed, match_pending
from stockade.vulns.matcher import MatchCounts
from stockade.vulns.models import VulnFeed
from stockade.vulns.security import BlobSecurityReader
from stockade.vulns.webhook_delivery import WebhookDeps, deliver, dispatch_due

log = logging.getLogger("stockade.jobs")


class VulnTaskDeps(WebhookDeps, Protocol):
    blobs: BlobStore

    @property
    def dispatch_feed_sync(self) -> Callable[[int], None]: ...

    def feed_sync(self) -> FeedSync: ...


# a scheduled retry of an unreachable feed keeps showing ``unreachable`` (and its since-time)
_QUEUED_UNLESS_UNREACHABLE = case(
    (VulnFeed.last_status == FeedStatus.UNREACHABLE.value, FeedStatus.UNREACHABLE.value),
    else_=FeedStatus.QUEUED.value,
)

__all__ = [
    "VulnTaskDeps",
    "declare",
    "dispatch_due_feeds",
    "match_artifacts",
    "match_left_behind",
    "next_feed_run",
    "sync_feed",
    "take_due_feeds",
]


def next_feed_run(schedule: str, after: datetime) -> datetime | None:
    """The feed's next run; None when its schedule never fires or is not cron."""
    return next_fire(schedule, after)


def sync_feed(deps: VulnTaskDeps, feed_id: int) -> SyncCounts | None:
    """Sync one feed; None when it failed (the failure is on the feed row)."""
    syncer = deps.feed_sync()  # with the air-gap folder's cve.zip files (airgap:)
    try:
        counts = syncer.sync_feed(feed_id)
    except FeedUnreachableError:  # recorded on the feed, logged once (vulns.feed_state)
        return None
    except StockadeError as exc:  # fetch errors are recorded by the sync itself
        log.warning("feed %s: sync failed: %s", feed_id, exc.detail)
        record_sync_failure(deps.factory, feed_id, exc.detail)
        return None
    except Exception as exc:
        log.exception("feed %s: sync failed", feed_id)
        record_sync_failure(deps.factory, feed_id, f"internal error: {exc.__class__.__name__}")
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
        dispatch_due(deps)  # the webhook deliveries the sync wrote, and any other due one
    return counts


def match_artifacts(deps: VulnTaskDeps, artifact_ids: Sequence[int]) -> MatchCounts:
    """Match the requested artifacts among ``artifact_ids`` (those matched already, or being
    matched by another holder of their request, are skipped)."""
    owner, taken = claim(deps.factory, list(artifact_ids))
    if not taken:
        return MatchCounts()
    counts = match_claimed(deps.factory, owner, taken, BlobSecurityReader(deps.blobs))
    _matched(deps, len(taken), counts)
    return counts


def match_left_behind(deps: VulnTaskDeps) -> int:
    """One pass of the match-request loop: a batch of requests no job did; how many."""
    security = BlobSecurityReader(deps.blobs)
    return match_pending(deps.factory, security, lambda n, counts: _matched(deps, n, counts))


def _matched(deps: VulnTaskDeps, how_many: int, counts: MatchCounts) -> None:
    if counts.deliveries:
        deps.dispatch_webhooks(counts.deliveries)
    log.info("matched %s artifacts: %s matches added", how_many, counts.added)


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


def dispatch_due_feeds(deps: VulnTaskDeps) -> list[int]:
    """One pass of the feed schedule: due feeds to the queue; returns their ids."""
    with transaction(deps.factory) as session:
        due = take_due_feeds(session)
    for feed_id in due:
        deps.dispatch_feed_sync(feed_id)
    return due


def seed_feeds(deps: VulnTaskDeps) -> None:
    """Add the default feeds on the first start (``[vulns] default_feeds``)."""
    try:
        seed_default_feeds(deps.factory, deps.settings.vulns)
    except Exception:  # the feeds can be added by hand; the schedule must run
        log.exception("adding the default vulnerability feeds failed")


def declare(deps: VulnTaskDeps) -> Declared:
    def as_job(run: Callable[[VulnTaskDeps, int], object]) -> Callable[[int], None]:
        def job(ids: int) -> None:
            with origin(Origin(channel="job")):
                run(deps, ids)

        return job

    def match(artifact_ids: list[int]) -> None:
        with origin(Origin(channel="job")):
            match_artifacts(deps, artifact_ids)

    feeds = Loop(
        "stockade-feed-schedule",
        deps.settings.mirror.scheduler_poll_s,
        lambda: dispatch_due_feeds(deps),
        on_start=lambda: seed_feeds(deps),
    )
    outbox = Loop("stockade-webhooks", deps.settings.webhooks.poll_s, lambda: dispatch_due(deps))
    # match requests no job did (lost by the broker, or its worker died): taken once, by lease
    requests = Loop("stockade-match-requests", POLL_S, lambda: match_left_behind(deps), drain=True)
    return Declared(
        tasks=(
            QueueTask("sync_feed", as_job(sync_feed)),
            QueueTask("match_artifacts", match),
            QueueTask("deliver_webhook", as_job(deliver)),
        ),
        loops=(feeds, outbox, requests),
    )
