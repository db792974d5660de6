"""Asking for a publication: bump the subdir's requested revision inside the caller's transaction.

The publisher (``channels/publication.py``) notices ``requested_rev > published_rev`` after commit,
so a burst of changes coalesces into one build, and a crash before commit asks for nothing.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from stockade.channels.models import SubdirIndex
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
