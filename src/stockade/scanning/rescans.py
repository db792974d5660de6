"""Asking for scans again: by hand (an artifact, a channel, everything) and when rules change.

:func:`queue_outdated` is the housekeeper's half: artifacts whose stored verdict was made under
other scanner versions, and artifacts with neither a verdict nor a request (a crash between two
steps of an older version), get a scan request. It works in batches, so a rule change over a
large mirror is spread out and shows as progress (the queue's size) instead of one long lock.
"""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.intake import ScanReason, queue_scans
from stockade.channels.models import Artifact, Channel, ScanRequest
from stockade.channels.scanstate import ScanStatus
from stockade.core.errors import NotFoundError
from stockade.scanning.models import ArtifactScan
from stockade.scanning.recording import ScanEvent

BATCH = 2000


class RescanTargetNotFoundError(NotFoundError):
    code = "scan:target-not-found"


def request_rescan(
    session: Session,
    principal: Principal,
    *,
    artifact_id: int | None = None,
    channel: str | None = None,
) -> int:
    """Queue scans of one artifact, a channel's artifacts, or (neither given) every artifact."""
    AccessService(session).require(principal, Permission.SECURITY_MANAGE)
    query = select(Artifact.id).where(
        Artifact.scan_status.not_in([ScanStatus.UNFETCHED, ScanStatus.STAGED])
    )
    target = Target("system", "scanning")
    if artifact_id is not None:
        query = query.where(Artifact.id == artifact_id)
        target = Target("artifact", str(artifact_id), artifact_id)
    if channel is not None:
        found = session.scalar(select(Channel.id).where(Channel.name == channel))
        if found is None:
            raise RescanTargetNotFoundError(f"channel {channel!r} not found")
        query = query.where(Artifact.channel_id == found)
        target = Target("channel", channel, found)
    ids = list(session.scalars(query).all())
    if artifact_id is not None and not ids:
        raise RescanTargetNotFoundError(f"no scannable artifact with id {artifact_id}")
    queued = queue_scans(session, ids, ScanReason.MANUAL)
    AuditLog(session).record(ScanEvent.RESCAN, principal, target, details={"queued": queued})
    return queued


def queue_outdated(session: Session, fingerprint: str, *, batch: int = BATCH) -> int:
    """Queue up to ``batch`` artifacts whose verdict is out of date or missing."""
    ids = session.scalars(
        select(Artifact.id)
        .outerjoin(ArtifactScan, ArtifactScan.artifact_id == Artifact.id)
        .outerjoin(ScanRequest, ScanRequest.artifact_id == Artifact.id)
        .where(
            ScanRequest.artifact_id.is_(None),
            Artifact.scan_status.not_in([ScanStatus.UNFETCHED, ScanStatus.STAGED]),
            or_(
                ArtifactScan.artifact_id.is_(None),
                and_(ArtifactScan.fingerprint != fingerprint),
            ),
        )
        .order_by(Artifact.id)
        .limit(batch)
    ).all()
    if not ids:
        return 0
    return queue_scans(session, ids, ScanReason.RULES_CHANGED)
