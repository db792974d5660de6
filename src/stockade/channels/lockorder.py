"""One lock order for every transaction that writes a channel's files (PostgreSQL).

A write that changes what a subdir serves touches two kinds of rows: the files' own
(``artifacts``, and their scan results) and the subdir's index row (``subdir_indexes``, whose
``requested_rev`` asks for a publication). Two transactions that take them in opposite orders (an
upload replacing a file locks the subdir, then deletes the old row; a verdict locked the file, then
asked for the subdir's publication) deadlock, and PostgreSQL fails one of them.

The order every writer keeps: **the subdir rows first, sorted by (channel id, subdir), then the
files.** Sorted, concurrent writers of several subdirs queue instead of deadlocking; and once a
writer holds a subdir's row, no other writer touches that subdir's files until it commits.
``request_publications`` takes the rows in that order; writers that only may ask for a
publication (a verdict that may not change what is served) lock the rows with :func:`lock_subdirs`
before their first write. SQLite has one writer at a time: there these are plain reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact, SubdirIndex


def lock_subdirs(session: Session, targets: Iterable[tuple[int, str]]) -> None:
    """Lock the index rows of ``targets`` ((channel id, subdir) pairs), in the global order.

    Nothing pending in the session is flushed first (a flush could lock a file's row before its
    subdir's)."""
    with session.no_autoflush:
        for channel_id, subdir in sorted(set(targets)):
            session.execute(
                select(SubdirIndex.id)
                .where(SubdirIndex.channel_id == channel_id, SubdirIndex.subdir == subdir)
                .with_for_update()
            )


def lock_subdirs_of(session: Session, artifact_ids: Iterable[int]) -> None:
    """Lock the subdir rows of these files (those that still exist) before touching them."""
    ids = sorted(set(artifact_ids))
    if not ids:
        return
    with session.no_autoflush:
        where = session.execute(
            select(Artifact.channel_id, Artifact.subdir).where(Artifact.id.in_(ids)).distinct()
        ).all()
    lock_subdirs(session, [(row[0], row[1]) for row in where])


__all__ = ["lock_subdirs", "lock_subdirs_of"]
