"""Match requests: the vulnerability matching of new artifacts, never lost, done once to effect.

The intake writes a :class:`~stockade.channels.models.MatchRequest` row for each new artifact in
the transaction that admits it (``channels.intake.queue_matches``), and the caller queues a match
job after commit (``dispatch_match``). Whoever matches first takes the rows with a lease (a
conditional update, safe across replicas and workers: :func:`claim`), matches the artifacts it
took and deletes their rows in the transaction that writes the matches (:func:`match_claimed`):

- the queued job (``vulns.tasks.match_artifacts``) claims the ids it was given, at once;
- the loop (:func:`match_pending`) claims rows older than :data:`SETTLE` whose lease is free: a
  job lost by the broker (down when queueing) leaves its rows unleased, a job that died midway
  (a killed worker, an error before commit) leaves them leased until :data:`LEASE` runs out.

A row whose lease another holder has is left to it. Matching twice (a lease that ran out while its
holder was still working) changes nothing: the matcher compares with the stored matches under the
writers' lock (``vulns.store.lock_writers``). A deleted artifact's row goes with it (cascade).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.models import MatchRequest
from stockade.core.clock import utcnow
from stockade.core.faults import crash_point
from stockade.db.engine import transaction
from stockade.vulns.matcher import MatchCounts, Matcher
from stockade.vulns.security import SecurityReader

__all__ = ["BATCH", "LEASE", "POLL_S", "SETTLE", "claim", "match_claimed", "match_pending"]

#: How long a request is left to its queued job before the loop takes it.
SETTLE = timedelta(seconds=5)
#: How long a claim holds: a holder that died is replaced once it ran out.
LEASE = timedelta(minutes=5)
POLL_S = 5.0
BATCH = 500


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(MatchRequest.leased_until.is_(None), MatchRequest.leased_until < now)


def claim(factory: sessionmaker[Session], candidates: Sequence[int]) -> tuple[str, list[int]]:
    """Lease the free requests among ``candidates`` (one short transaction); returns the
    lease's owner token and the ids taken (those another holder has are left to it)."""
    if not candidates:
        return "", []
    owner = uuid.uuid4().hex
    now = utcnow()
    with transaction(factory) as session:
        session.execute(
            update(MatchRequest)
            .where(MatchRequest.artifact_id.in_(candidates), _free(now))
            .values(leased_until=now + LEASE, lease_owner=owner)
            .execution_options(synchronize_session=False)
        )
        taken = set(
            session.scalars(
                select(MatchRequest.artifact_id).where(
                    MatchRequest.artifact_id.in_(candidates), MatchRequest.lease_owner == owner
                )
            )
        )
    return owner, [aid for aid in candidates if aid in taken]


def match_claimed(
    factory: sessionmaker[Session],
    owner: str,
    artifact_ids: Sequence[int],
    security: SecurityReader | None,
) -> MatchCounts:
    """Match the artifacts claimed by ``owner`` and delete their requests, in one transaction."""
    if not artifact_ids:
        return MatchCounts()
    with transaction(factory) as session:
        counts = Matcher(session, security=security).match_artifacts(list(artifact_ids))
        session.execute(
            delete(MatchRequest)
            .where(MatchRequest.artifact_id.in_(artifact_ids), MatchRequest.lease_owner == owner)
            .execution_options(synchronize_session=False)
        )
        crash_point("match:before-commit")
    return counts


def due_requests(factory: sessionmaker[Session], batch: int = BATCH) -> list[int]:
    """The oldest requests past :data:`SETTLE` whose lease is free (read, not taken)."""
    now = utcnow()
    with factory() as session:
        return list(
            session.scalars(
                select(MatchRequest.artifact_id)
                .where(MatchRequest.requested_at <= now - SETTLE, _free(now))
                .order_by(MatchRequest.requested_at, MatchRequest.artifact_id)
                .limit(batch)
            )
        )


def match_pending(
    factory: sessionmaker[Session],
    security: SecurityReader | None,
    on_matched: Callable[[int, MatchCounts], None] = lambda _done, _counts: None,
    batch: int = BATCH,
) -> int:
    """One pass of the loop: claim and match a batch of requests left behind; how many."""
    owner, taken = claim(factory, due_requests(factory, batch))
    if not taken:
        return 0
    on_matched(len(taken), match_claimed(factory, owner, taken, security))
    return len(taken)
