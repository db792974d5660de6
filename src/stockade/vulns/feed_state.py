"""A feed's state after its last sync, and the ``unreachable`` state of a feed whose host is silent.

``last_status`` is ``queued`` (a sync is asked for or running), ``ok``, ``partial`` (some documents
did not parse), ``unchanged``, ``failed`` (an answer that cannot be used: HTTP error, missing file,
refused by the outbound policy, bad document) or ``unreachable`` (no answer at all: the host name
does not resolve, no connection, a timeout — an air-gapped site, or the network is down; or HTTP
502, 503, 504: a proxy that cannot reach the host, a host that is down).

While a feed is unreachable, ``last_sync_at`` stays at the first attempt that found it so (the
time it is unreachable *since*) and ``last_error`` names the URL; the scheduled retries change
neither and log nothing (debug only). One warning is logged when a feed becomes unreachable, one
info line when it answers again. A scheduled retry leaves the status ``unreachable``; a sync asked
for by hand shows ``queued`` until it ends and keeps ``last_error``, so the streak goes on.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from sqlalchemy.orm import Session, object_session, sessionmaker

from stockade.core.clock import utcnow
from stockade.core.metrics import metrics
from stockade.db.engine import transaction
from stockade.db.unit_of_work import after_commit
from stockade.vulns.errors import FeedUnreachableError
from stockade.vulns.models import VulnFeed

__all__ = [
    "UNREACHABLE_TAIL",
    "FeedStatus",
    "record_unreachable",
    "set_status",
    "unreachable_since",
]

UNREACHABLE_TAIL = ": cannot be reached"  # how the detail of FeedUnreachableError ends
log = logging.getLogger("stockade.vulns")


class FeedStatus(StrEnum):
    QUEUED = "queued"
    OK = "ok"
    PARTIAL = "partial"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    UNREACHABLE = "unreachable"


def unreachable_since(
    status: str | None, error: str | None, last_sync_at: datetime | None
) -> datetime | None:
    """When the feed was first found unreachable, if it still is (also while a sync asked for by
    hand is queued); None otherwise."""
    if status == FeedStatus.UNREACHABLE:
        return last_sync_at
    if status == FeedStatus.QUEUED and error and error.endswith(UNREACHABLE_TAIL):
        return last_sync_at
    return None


def set_status(feed: VulnFeed, status: str, error: str | None) -> None:
    """Record how a sync ended (any status but ``unreachable``, see :func:`record_unreachable`)."""
    if unreachable_since(feed.last_status, feed.last_error, feed.last_sync_at) is not None:
        log.info("feed %s: reached again (%s)", feed.name, status)
    feed.last_sync_at = utcnow()
    feed.last_status = status
    feed.last_error = error or None
    _count_sync(feed, status)


def _count_sync(feed: VulnFeed, status: str) -> None:
    """The metrics' feed syncs by outcome, counted once the transaction commits."""
    session = object_session(feed)
    if session is None:
        return
    outcome = status if status in FeedStatus.__members__.values() else "other"
    after_commit(session, f"metrics:feed:{feed.id}", metrics().feed_syncs.labels(outcome).inc)


def record_unreachable(
    factory: sessionmaker[Session], feed_id: int, error: FeedUnreachableError
) -> None:
    """Mark the feed unreachable; one warning when it becomes so, then silence."""
    with transaction(factory) as session:
        feed = session.get(VulnFeed, feed_id)
        if feed is None:
            return
        name = feed.name
        since = unreachable_since(feed.last_status, feed.last_error, feed.last_sync_at)
        feed.last_status = FeedStatus.UNREACHABLE.value
        feed.last_error = error.detail
        _count_sync(feed, FeedStatus.UNREACHABLE.value)
        if since is None:
            feed.last_sync_at = utcnow()
    if since is None:
        log.warning(
            "feed %s: %s (%s); it shows 'unreachable' until it answers, and its retries on "
            "schedule are not logged",
            name,
            error.detail,
            error.reason,
        )
    else:
        log.debug("feed %s: still unreachable since %s (%s)", name, since, error.reason)
