"""channeldata.json rebuilds: an intent on the channel's row, taken by one publisher at a time.

A channel's ``channeldata.json`` spans every subdir, and building it reads every record of the
channel (seconds for a 100,000-record mirror), so it is not rebuilt with each index: the
transaction that switches a subdir's index in asks for it (:func:`request_channeldata`, so a
crash after that commit loses nothing), and a publisher loop builds it later, after the pending
indexes, rate-limited per channel. Any publisher of any process may take it: the conditional
update of :func:`claim_channeldata` is the lock (the ``claim_due`` pattern of
``db/schedules.py``), and the request is cleared only by the commit of a build that covers it
(:func:`finish_channeldata`). A request that arrives while a build runs (which may have read the
records before it) is kept for the next build. Bookkeeping updates set ``updated_at`` to itself:
it is what channel caches of every process watch (``channels/servable.py``), and only a new
channeldata.json needs them read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rattler import Version
from sqlalchemy import CursorResult, case, func, literal, null, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from stockade.channels.models import Artifact, Channel, PackageContent, SubdirIndex
from stockade.conda.channeldata import build_channeldata_json, channel_record, summarize_packages
from stockade.db.base import UTCDateTime
from stockade.db.engine import transaction
from stockade.storage.interfaces import BlobStore

#: A build that took longer than this waits (up to :data:`WAIT_FOR_INDEXES`) for pending indexes.
SLOW_MS = 1000
WAIT_FOR_INDEXES = timedelta(seconds=60)
#: After a build that took ``t``, the next one waits ``5 t`` (at most :data:`MAX_INTERVAL`).
INTERVAL_FACTOR = 5
MAX_INTERVAL = timedelta(seconds=60)
#: A failed build is tried again after at least this long.
RETRY_AFTER = timedelta(seconds=5)
#: The lease on a build: ten times the last build's time, at least two minutes. A publisher that
#: dies while building leaves the request; another takes it once the lease has run out.
LEASE_MIN = timedelta(minutes=2)
LEASE_FACTOR = 10


@dataclass(frozen=True)
class DueChannelData:
    channel_id: int
    requested_at: datetime
    build_ms: int

    @property
    def slow(self) -> bool:
        return self.build_ms > SLOW_MS


def _at(now: datetime) -> ColumnElement[datetime]:
    return literal(now, UTCDateTime())


def _free(now: datetime) -> ColumnElement[bool]:
    return or_(Channel.channeldata_lease_until.is_(None), Channel.channeldata_lease_until < now)


def request_channeldata(session: Session, channel_id: int, now: datetime) -> None:
    """Ask for a rebuild in the caller's transaction (the one that switches an index in).

    The oldest request not yet built is kept; while a build may be running (a lease was taken
    and not given back, even if it has run out: the builder may be slow, not dead), the request
    is newer than what that build may have read, so it is kept apart (now) for the next build.
    """
    leased = Channel.channeldata_lease_owner.is_not(None)
    session.execute(
        update(Channel)
        .where(Channel.id == channel_id)
        .values(
            channeldata_requested_at=case(
                (leased, _at(now)),
                else_=func.coalesce(Channel.channeldata_requested_at, _at(now)),
            ),
            updated_at=Channel.updated_at,  # bookkeeping: channel caches stay
        )
        .execution_options(synchronize_session=False)
    )


def due_channeldata(session: Session, now: datetime) -> list[DueChannelData]:
    """Channels whose rebuild is asked for, past its rate limit and not being built."""
    rows = session.execute(
        select(Channel.id, Channel.channeldata_requested_at, Channel.channeldata_build_ms)
        .where(
            Channel.channeldata_requested_at.is_not(None),
            or_(Channel.channeldata_next_at.is_(None), Channel.channeldata_next_at <= now),
            _free(now),
        )
        .order_by(Channel.id)
    ).all()
    return [DueChannelData(r[0], r[1], r[2] or 0) for r in rows if r[1] is not None]


def lease_for(build_ms: int) -> timedelta:
    return max(LEASE_MIN, timedelta(milliseconds=LEASE_FACTOR * build_ms))


def claim_channeldata(
    session: Session, due: DueChannelData, owner: str, now: datetime
) -> datetime | None:
    """Take the lease on a due rebuild; returns the request it covers (None: not due, or taken).

    The build reads the records after this commits, so it covers every index switched in
    before: those asked for the request returned (or an older one, kept)."""
    result = session.execute(
        update(Channel)
        .where(
            Channel.id == due.channel_id,
            Channel.channeldata_requested_at.is_not(None),
            or_(Channel.channeldata_next_at.is_(None), Channel.channeldata_next_at <= now),
            _free(now),
        )
        .values(
            channeldata_lease_owner=owner,
            channeldata_lease_until=now + lease_for(due.build_ms),
            updated_at=Channel.updated_at,  # bookkeeping: channel caches stay
        )
        .execution_options(synchronize_session=False)
    )
    if not _rowcount(result):
        return None
    return session.scalar(
        select(Channel.channeldata_requested_at).where(Channel.id == due.channel_id)
    )


def finish_channeldata(
    session: Session,
    channel_id: int,
    owner: str,
    claimed: datetime,
    sha256: str,
    took: timedelta,
    now: datetime,
) -> bool:
    """Point the channel at the built file and clear the request it covered; False (and nothing
    written) when the lease was lost meanwhile (another publisher's build counts instead).

    ``updated_at`` moves with it: other processes read the channel's files again."""
    result = session.execute(
        update(Channel)
        .where(Channel.id == channel_id, Channel.channeldata_lease_owner == owner)
        .values(
            channeldata_sha256=sha256,
            channeldata_requested_at=case(
                (Channel.channeldata_requested_at == _at(claimed), null()),
                else_=Channel.channeldata_requested_at,
            ),
            channeldata_build_ms=int(took.total_seconds() * 1000),
            channeldata_next_at=now + min(MAX_INTERVAL, INTERVAL_FACTOR * took),
            channeldata_lease_owner=None,
            channeldata_lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(_rowcount(result))


def release_channeldata(
    session: Session, channel_id: int, owner: str, took: timedelta, now: datetime
) -> None:
    """A build failed: the request stays, tried again after a pause."""
    session.execute(
        update(Channel)
        .where(Channel.id == channel_id, Channel.channeldata_lease_owner == owner)
        .values(
            channeldata_next_at=now + max(RETRY_AFTER, min(MAX_INTERVAL, INTERVAL_FACTOR * took)),
            channeldata_lease_owner=None,
            channeldata_lease_until=None,
            updated_at=Channel.updated_at,  # bookkeeping: channel caches stay
        )
        .execution_options(synchronize_session=False)
    )


def build_channeldata(
    read_factory: sessionmaker[Session], blobs: BlobStore, channel_id: int
) -> str:
    """Write the channel's ``channeldata.json`` to the blob store; returns its sha256."""
    with transaction(read_factory) as session:
        rows = session.execute(
            select(
                Artifact.subdir,
                Artifact.record_json,
                PackageContent.about_json,
                PackageContent.run_exports_json,
            )
            # Mirrored records have no content read yet (passive files are not even stored).
            .outerjoin(PackageContent, PackageContent.sha256 == Artifact.sha256)
            .where(Artifact.channel_id == channel_id, Artifact.servable.is_(True))
        ).all()
        subdirs = session.scalars(
            select(SubdirIndex.subdir).where(SubdirIndex.channel_id == channel_id)
        ).all()
    # A stored record that is not JSON is left out (with a warning), never fatal.
    records = [
        record
        for sd, rec, about, run_exports in rows
        if (record := channel_record(sd, rec, about, run_exports)) is not None
    ]
    summaries = summarize_packages(records, version_key=Version)
    return blobs.put_bytes(build_channeldata_json(summaries, subdirs))


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)
