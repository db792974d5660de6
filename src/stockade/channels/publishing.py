"""Asking for a publication: bump the subdir's requested revision inside the caller's transaction.

The publisher (``channels/publication.py``) notices ``requested_rev > published_rev`` after commit,
so a burst of changes coalesces into one build, and a crash before commit asks for nothing.
``requested_at`` keeps when the first request not yet published was made (the publication
latency and the oldest pending publication's age are measured from it).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import case, func, literal, update
from sqlalchemy.orm import Session

from stockade.channels.models import SubdirIndex
from stockade.core.clock import utcnow
from stockade.db.base import UTCDateTime
from stockade.db.unit_of_work import changed
from stockade.db.upsert import insert_ignore


def request_publication(session: Session, channel_id: int, subdir: str) -> None:
    insert_ignore(
        session,
        SubdirIndex,
        {"channel_id": channel_id, "subdir": subdir, "requested_rev": 0, "published_rev": 0},
        ["channel_id", "subdir"],
    )
    now = literal(utcnow(), UTCDateTime())
    session.execute(
        update(SubdirIndex)
        .where(SubdirIndex.channel_id == channel_id, SubdirIndex.subdir == subdir)
        .values(
            requested_rev=SubdirIndex.requested_rev + 1,
            # the old values: the first request since the last publication, or one before it
            requested_at=case(
                (SubdirIndex.requested_rev <= SubdirIndex.published_rev, now),
                else_=func.coalesce(SubdirIndex.requested_at, now),
            ),
        )
    )
    changed(session)  # the publisher wakes once this commits


def request_publications(session: Session, targets: Iterable[tuple[int, str]]) -> None:
    """Ask for several subdirs at once, locking their rows in one global order.

    Concurrent transactions that each touch several subdirs would otherwise lock the rows in
    different orders and deadlock (PostgreSQL); sorted, they queue instead.
    """
    for channel_id, subdir in sorted(set(targets)):
        request_publication(session, channel_id, subdir)
