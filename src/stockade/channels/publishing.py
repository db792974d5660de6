"""Asking for a publication: bump the subdir's requested revision inside the caller's transaction.

The publisher (``channels/publication.py``) notices ``requested_rev > published_rev`` after commit,
so a burst of changes coalesces into one build, and a crash before commit asks for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import update
from sqlalchemy.orm import Session

from stockade.channels.models import SubdirIndex
from stockade.db.unit_of_work import changed
from stockade.db.upsert import insert_ignore


def request_publication(session: Session, channel_id: int, subdir: str) -> None:
    insert_ignore(
        session,
        SubdirIndex,
        {"channel_id": channel_id, "subdir": subdir, "requested_rev": 0, "published_rev": 0},
        ["channel_id", "subdir"],
    )
    session.execute(
        update(SubdirIndex)
        .where(SubdirIndex.channel_id == channel_id, SubdirIndex.subdir == subdir)
        .values(requested_rev=SubdirIndex.requested_rev + 1)
    )
    changed(session)  # the publisher wakes once this commits


def request_publications(session: Session, targets: Iterable[tuple[int, str]]) -> None:
    """Ask for several subdirs at once, locking their rows in one global order.

    Concurrent transactions that each touch several subdirs would otherwise lock the rows in
    different orders and deadlock (PostgreSQL); sorted, they queue instead.
    """
    for channel_id, subdir in sorted(set(targets)):
        request_publication(session, channel_id, subdir)
