"""An artifact's scan state and the one ``servable`` rule every read path asks (SPEC §8).

``Artifact.servable`` is what indexes, shards, downloads, browse, search, reports and exports
filter on. It is derived from the artifact's :class:`ScanStatus` and its channel's scan settings by
:func:`is_servable`, and only this module writes it: :func:`set_status` for one artifact (a verdict,
a release) and :func:`refresh_channel` when a channel's settings change.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from sqlalchemy import ColumnElement, and_, false, or_, select, true, update
from sqlalchemy.orm import Session

from stockade.channels.lockorder import lock_subdirs
from stockade.channels.models import Artifact, Channel
from stockade.channels.publishing import request_publications


class ScanStatus(StrEnum):
    PENDING = "pending"  # admitted, waiting for its verdict
    UNFETCHED = "unfetched"  # a passive mirror's record: no bytes yet, scanned on first fetch
    CLEAN = "clean"
    SUSPICIOUS = "suspicious"
    MALICIOUS = "malicious"  # quarantined
    ERROR = "error"  # the scanners could not judge it (fail closed unless the channel says)
    RELEASED = "released"  # a security admin released it, with a note, for these rules
    # A mirror run's new row, written in batches before the run switches (``mirroring.staging``):
    # listed nowhere, never servable, until the run's last transaction admits it.
    STAGED = "staged"


class ArtifactSource(StrEnum):
    UPLOAD = "upload"
    COPY = "copy"
    MIRROR = "mirror"
    IMPORT = "import"


class UploadScanMode(StrEnum):
    HOLD = "hold"  # not served until clean (the default)
    SERVE_FIRST = "serve-first"  # served at once, quarantined if the verdict is malicious


class HoldOrServe(StrEnum):
    HOLD = "hold"
    SERVE = "serve"


# Sources a "serve-first" channel serves before their verdict: its own uploads only.
SERVED_FIRST = frozenset({ArtifactSource.UPLOAD})

# Held in the quarantine queue: what an admin has to look at.
QUARANTINE_STATES = frozenset({ScanStatus.MALICIOUS, ScanStatus.SUSPICIOUS, ScanStatus.ERROR})


def is_servable(status: str, channel: Channel, source: str) -> bool:
    """The rule. Malicious is never servable; the channel decides the grey cases. Serving
    before the verdict ("serve-first") is for the channel's own uploads (trusted CI): a copy or
    an import of bytes judged elsewhere, or not judged yet, waits for its verdict here."""
    match status:
        case ScanStatus.CLEAN | ScanStatus.RELEASED | ScanStatus.UNFETCHED:
            return True
        case ScanStatus.SUSPICIOUS:
            return channel.scan_suspicious == HoldOrServe.SERVE
        case ScanStatus.ERROR:
            return channel.scan_errors == HoldOrServe.SERVE
        case ScanStatus.PENDING:
            return channel.scan_uploads == UploadScanMode.SERVE_FIRST and source in SERVED_FIRST
        case _:
            return False


def servable_clause(channel: Channel) -> ColumnElement[bool]:
    """:func:`is_servable` as SQL over ``Artifact.scan_status``, for bulk refreshes."""
    terms: list[ColumnElement[bool]] = [
        Artifact.scan_status.in_([ScanStatus.CLEAN, ScanStatus.RELEASED, ScanStatus.UNFETCHED])
    ]
    for status in (ScanStatus.SUSPICIOUS, ScanStatus.ERROR):
        terms.append(
            and_(
                Artifact.scan_status == status,
                true() if is_servable(status, channel, ArtifactSource.UPLOAD) else false(),
            )
        )
    if is_servable(ScanStatus.PENDING, channel, ArtifactSource.UPLOAD):
        terms.append(
            and_(
                Artifact.scan_status == ScanStatus.PENDING,
                Artifact.source.in_(sorted(SERVED_FIRST)),
            )
        )
    return or_(*terms)


def listed_clause(*, with_pending: bool) -> ColumnElement[bool]:
    """What management listings (files of a channel, copy/move/remove selections) show: servable
    files and, for the channel's writers only (``with_pending``), uploads still waiting for their
    verdict (their copies wait again); never files a verdict holds or quarantined (those are the
    quarantine queue's). A reader sees no more than the index shows."""
    if not with_pending:
        return Artifact.servable.is_(True)
    return or_(Artifact.servable.is_(True), Artifact.scan_status == ScanStatus.PENDING)


def set_status(session: Session, artifact: Artifact, status: ScanStatus) -> bool:
    """Set ``artifact``'s status and servability; ask for a publication when what is served
    changed: whether it is served, or how (a file served before its verdict is ``no-store``,
    and every process's map of servable files moves with the subdir's revision). Returns
    whether servability changed."""
    lock_subdirs(session, [(artifact.channel_id, artifact.subdir)])  # first (lockorder.py)
    channel = session.get(Channel, artifact.channel_id)
    servable = channel is not None and is_servable(status, channel, artifact.source)
    changed = servable != artifact.servable
    judged = (artifact.scan_status == ScanStatus.PENDING) != (status == ScanStatus.PENDING)
    artifact.scan_status = status
    artifact.servable = servable
    if changed or (servable and judged):
        request_publications(session, [(artifact.channel_id, artifact.subdir)])
    return changed


def refresh_channel(session: Session, channel: Channel) -> int:
    """Re-derive ``servable`` for every artifact of ``channel`` (its scan settings changed)."""
    rule = servable_clause(channel)
    changed: Iterable[str] = session.scalars(
        select(Artifact.subdir)
        .where(Artifact.channel_id == channel.id, Artifact.servable != rule)
        .distinct()
    ).all()
    subdirs = list(changed)
    if subdirs:
        # the subdir rows first, then the files (channels/lockorder.py)
        request_publications(session, [(channel.id, sd) for sd in subdirs])
        session.execute(
            update(Artifact)
            .where(Artifact.channel_id == channel.id, Artifact.servable != rule)
            .values(servable=rule)
        )
    return len(subdirs)
