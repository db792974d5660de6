"""Publication health: failures recorded on the subdir, backoff, and stored patches made safe.

A publication that fails (a stored patch no encoder accepts, a record a writer chokes on) must not
wedge anything: the failure is written on its ``subdir_indexes`` row with the reason, the
publisher retries it later with an exponential backoff (at once when a newer change arrives), the
other subdirs and channels go on publishing, and the failure shows on the channel (API, UI) and on
``/readyz``. One traceback is logged when a subdir starts failing; repeats log one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from stockade.channels.models import Artifact, Channel, RepodataPatch, ScanRequest, SubdirIndex
from stockade.channels.patching import instructions_for
from stockade.channels.scanstate import ScanStatus
from stockade.conda.patches import PatchInstructions
from stockade.core.clock import utcnow
from stockade.core.errors import StockadeError

log = logging.getLogger("stockade.publisher")

BACKOFF_FIRST = timedelta(seconds=4)
BACKOFF_MAX = timedelta(minutes=15)
MAX_REASON = 1000


@dataclass(frozen=True)
class FailingPublication:
    channel_id: int
    channel: str
    subdir: str
    reason: str
    failures: int
    since: datetime | None
    retry_at: datetime | None


def backoff(failures: int) -> timedelta:
    """How long to wait after the ``failures``-th failure in a row: 4 s, 8 s, ... 15 min."""
    doublings: int = min(max(failures - 1, 0), 20)
    return min(BACKOFF_MAX, BACKOFF_FIRST * (1 << doublings))


def due_for_retry(now: datetime) -> ColumnElement[bool]:
    """Rows the publisher may try now: not failing, backoff over, or changed since the failure."""
    return or_(
        SubdirIndex.retry_at.is_(None),
        SubdirIndex.retry_at <= now,
        SubdirIndex.failed_rev.is_(None),
        SubdirIndex.requested_rev > SubdirIndex.failed_rev,
    )


def reason_of(exc: BaseException) -> str:
    text = exc.detail if isinstance(exc, StockadeError) else f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def record_failure(session: Session, index_id: int, rev: int, exc: BaseException) -> None:
    """Write the failure on the subdir's row and schedule the retry."""
    row = session.get(SubdirIndex, index_id, with_for_update=True)
    if row is None:
        return
    now = utcnow()
    row.failures = (row.failures or 0) + 1
    row.failure = reason_of(exc)
    row.failed_rev = rev
    row.failed_at = row.failed_at if row.failures > 1 and row.failed_at else now
    row.retry_at = now + backoff(row.failures)
    row.lease_owner = None
    if row.failures == 1:
        log.error(
            "publication of subdir %s (channel id %s) failed; retrying with backoff",
            row.subdir,
            row.channel_id,
            exc_info=exc,
        )
    else:
        log.warning(
            "publication of subdir %s (channel id %s) failed again (%d in a row): %s",
            row.subdir,
            row.channel_id,
            row.failures,
            row.failure,
        )


def clear_failure(row: SubdirIndex, warnings: list[str]) -> None:
    """A publication succeeded: forget the failure, keep what it had to leave out."""
    row.failure = None
    row.failed_rev = None
    row.failures = 0
    row.failed_at = None
    row.retry_at = None
    row.warnings = warnings


def safe_instructions(patches: list[RepodataPatch]) -> tuple[PatchInstructions, list[str]]:
    """The subdir's patch instructions, leaving out stored patches that no longer validate
    (written before values were checked): only their field changes when their revoke and
    remove still apply, else the whole patch. Returns the instructions and one warning per
    patch left out."""
    good: list[RepodataPatch] = []
    warnings: list[str] = []
    for patch in patches:
        problem = _problem(patch)
        if problem is None:
            good.append(patch)
            continue
        flags = RepodataPatch(
            filename=patch.filename, changes={}, revoked=patch.revoked, removed=patch.removed
        )
        kept = _problem(flags) is None and (patch.revoked or patch.removed)
        if kept:
            good.append(flags)
        what = "its field changes were" if kept else "it was"
        warnings.append(f"patch of {patch.filename}: {what} left out: {problem}")
    return instructions_for(good), warnings


def _problem(patch: RepodataPatch) -> str | None:
    try:
        instructions_for([patch])
    except StockadeError as exc:
        return exc.detail
    return None


def failing_publications(
    session: Session, channel_ids: list[int] | None = None
) -> list[FailingPublication]:
    """Subdirs whose last publication failed (all, or of these channels)."""
    query = (
        select(SubdirIndex, Channel.name)
        .join(Channel, Channel.id == SubdirIndex.channel_id)
        .where(SubdirIndex.failure.is_not(None))
        .order_by(Channel.name, SubdirIndex.subdir)
    )
    if channel_ids is not None:
        query = query.where(SubdirIndex.channel_id.in_(channel_ids))
    return [
        FailingPublication(
            channel_id=row.channel_id,
            channel=name,
            subdir=row.subdir,
            reason=row.failure or "",
            failures=row.failures,
            since=row.failed_at,
            retry_at=row.retry_at,
        )
        for row, name in session.execute(query).all()
    ]


def count_failing(session: Session) -> int:
    return int(
        session.scalar(select(func.count(SubdirIndex.id)).where(SubdirIndex.failure.is_not(None)))
        or 0
    )


def subdir_states(session: Session, channel_id: int) -> list[tuple[SubdirIndex, int]]:
    """Each subdir index of the channel with how many of its files wait for a scan verdict
    before they can be published (held, with a scan request)."""
    rows = session.scalars(
        select(SubdirIndex).where(SubdirIndex.channel_id == channel_id).order_by(SubdirIndex.subdir)
    ).all()
    waiting = dict(
        session.execute(
            select(Artifact.subdir, func.count())
            .join(ScanRequest, ScanRequest.artifact_id == Artifact.id)
            .where(Artifact.channel_id == channel_id, Artifact.servable.is_(False))
            .group_by(Artifact.subdir)
        ).all()
    )
    return [(row, int(waiting.get(row.subdir, 0))) for row in rows]


# A subdir whose new files wait for their scan verdicts is published once they all have one, so
# that a mirror run or a batch of uploads appears at once; never later than this after the oldest
# of those requests (a stuck scan or a stream of uploads does not hold the other files back).
SCAN_SETTLE = timedelta(seconds=60)


def scans_settled(now: datetime) -> ColumnElement[bool]:
    """For a query over :class:`SubdirIndex`: no held file of the subdir waits for its first
    verdict, or one has waited longer than :data:`SCAN_SETTLE`."""
    waiting = (
        select(ScanRequest.requested_at)
        .join(Artifact, Artifact.id == ScanRequest.artifact_id)
        .where(
            Artifact.channel_id == SubdirIndex.channel_id,
            Artifact.subdir == SubdirIndex.subdir,
            Artifact.servable.is_(False),
            Artifact.scan_status == ScanStatus.PENDING,
        )
    )
    overdue = waiting.where(ScanRequest.requested_at <= now - SCAN_SETTLE)
    return or_(~waiting.exists(), overdue.exists())
