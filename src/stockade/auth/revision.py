"""One database counter that tells every process when cached credentials may be stale.

Each process caches resolved credentials for a few seconds (``auth/authenticator.py``). Whatever
can make a cached answer wrong (a token revoked, a user disabled or deleted, a password, role or
group membership changed, a channel and its grants deleted) bumps this counter; every process
reads it at least once a second and drops its cache when it moved. One row, so reading it is as
cheap as a query can be.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from stockade.auth.models import AuthRevision

ROW_ID = 1


def current_revision(session: Session) -> int:
    value = session.scalar(select(AuthRevision.value).where(AuthRevision.id == ROW_ID))
    return int(value or 0)


def bump_revision(session: Session) -> int:
    """Move the counter on (in the caller's transaction); returns the new value."""
    result = session.execute(
        update(AuthRevision).where(AuthRevision.id == ROW_ID).values(value=AuthRevision.value + 1)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        session.add(AuthRevision(id=ROW_ID, value=1))
        session.flush()
    return current_revision(session)
