"""The quarantine queue: what the scanners held, and a security admin's release or delete.

Held artifacts are not servable (one rule, :mod:`stockade.channels.scanstate`), so no index,
download, listing, search or report shows them; this service is the one way to see them, and the
only way to fetch one (``security:manage``, with an audit event).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact, Channel, ScanRequest
from stockade.channels.publishing import request_publications
from stockade.channels.scanstate import QUARANTINE_STATES, ScanStatus, set_status
from stockade.core.clock import utcnow
from stockade.core.errors import ConflictError, InvalidInputError, NotFoundError
from stockade.scanning.models import ArtifactScan
from stockade.scanning.recording import ScanEvent

MAX_NOTE = 2000


class QuarantineNotFoundError(NotFoundError):
    code = "quarantine:not-found"


class NotHeldError(ConflictError):
    code = "quarantine:not-held"


class ReleaseNoteError(InvalidInputError):
    code = "quarantine:note-required"


@dataclass(frozen=True)
class HeldArtifact:
    artifact: Artifact
    channel: str
    scan: ArtifactScan | None

    @property
    def id(self) -> int:
        return self.artifact.id


@dataclass(frozen=True)
class ScanProgress:
    queued: int  # scan requests not yet done
    running: int  # of those, leased by a scanner now
    held: int  # in the quarantine queue
    total: int  # artifacts


class QuarantineService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.access = AccessService(session)

    def list(
        self,
        principal: Principal,
        *,
        status: ScanStatus | None = None,
        channel: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[HeldArtifact]:
        self.access.require(principal, Permission.SECURITY_READ)
        states = [status] if status is not None else sorted(QUARANTINE_STATES)
        query = (
            select(Artifact, Channel.name, ArtifactScan)
            .join(Channel, Channel.id == Artifact.channel_id)
            .outerjoin(ArtifactScan, ArtifactScan.artifact_id == Artifact.id)
            .where(
                Artifact.scan_status.in_(states),
                Artifact.servable.is_(False),
                Artifact.id > after_id,
            )
        )
        if channel:
            query = query.where(Channel.name == channel)
        rows = self.session.execute(query.order_by(Artifact.id).limit(limit)).all()
        return [HeldArtifact(a, name, scan) for a, name, scan in rows]

    def show(self, principal: Principal, artifact_id: int) -> HeldArtifact:
        """Any artifact's scan result (held or not): a security admin's view."""
        self.access.require(principal, Permission.SECURITY_READ)
        row = self.session.execute(
            select(Artifact, Channel.name, ArtifactScan)
            .join(Channel, Channel.id == Artifact.channel_id)
            .outerjoin(ArtifactScan, ArtifactScan.artifact_id == Artifact.id)
            .where(Artifact.id == artifact_id)
        ).first()
        if row is None:
            raise QuarantineNotFoundError(f"no artifact with id {artifact_id}")
        return HeldArtifact(row[0], row[1], row[2])

    def release(self, principal: Principal, artifact_id: int, note: str) -> HeldArtifact:
        """Serve a held artifact; holds for these rules (a rescan with new rules judges again)."""
        self.access.require(principal, Permission.SECURITY_MANAGE)
        note = (note or "").strip()
        if not note:
            raise ReleaseNoteError("a release needs a note saying why", field="note")
        if len(note) > MAX_NOTE:
            raise ReleaseNoteError(f"the note is longer than {MAX_NOTE} characters", field="note")
        held = self._held(artifact_id)
        scan = held.scan
        if scan is None:
            raise NotHeldError("this artifact has no verdict yet: wait for its scan")
        scan.released_fingerprint = scan.fingerprint
        scan.release_note = note
        scan.released_by_id = principal.user_id
        scan.released_at = utcnow()
        set_status(self.session, held.artifact, ScanStatus.RELEASED)
        self._audit(ScanEvent.RELEASE, principal, held, note=note)
        return held

    def delete(self, principal: Principal, artifact_id: int, note: str | None = None) -> None:
        self.access.require(principal, Permission.SECURITY_MANAGE)
        held = self._held(artifact_id)
        self._audit(ScanEvent.DELETE, principal, held, note=(note or "").strip()[:MAX_NOTE])
        request_publications(self.session, [(held.artifact.channel_id, held.artifact.subdir)])
        self.session.delete(held.artifact)
        self.session.flush()

    def download(self, principal: Principal, artifact_id: int) -> HeldArtifact:
        """A held file for analysis: ``security:manage`` only, and recorded."""
        self.access.require(principal, Permission.SECURITY_MANAGE)
        held = self.show(principal, artifact_id)
        self._audit(ScanEvent.DOWNLOAD, principal, held)
        return held

    def progress(self, principal: Principal) -> ScanProgress:
        self.access.require(principal, Permission.SECURITY_READ)
        queued, running = self.session.execute(
            select(
                func.count(),
                func.count(ScanRequest.leased_until).filter(ScanRequest.leased_until > utcnow()),
            )
        ).one()
        held = self.session.scalar(
            select(func.count()).where(
                Artifact.scan_status.in_(sorted(QUARANTINE_STATES)), Artifact.servable.is_(False)
            )
        )
        total = self.session.scalar(select(func.count(Artifact.id)))
        return ScanProgress(int(queued), int(running), int(held or 0), int(total or 0))

    def _held(self, artifact_id: int) -> HeldArtifact:
        row = self.session.execute(
            select(Artifact, Channel.name)
            .join(Channel, Channel.id == Artifact.channel_id)
            .where(Artifact.id == artifact_id)
            .with_for_update(of=Artifact)
        ).first()
        if row is None:
            raise QuarantineNotFoundError(f"no artifact with id {artifact_id}")
        artifact, channel = row
        if artifact.servable or artifact.scan_status not in QUARANTINE_STATES:
            raise NotHeldError(
                f"{artifact.subdir}/{artifact.filename} is not held (status {artifact.scan_status})"
            )
        return HeldArtifact(artifact, channel, self.session.get(ArtifactScan, artifact_id))

    def _audit(
        self, event: ScanEvent, principal: Principal, held: HeldArtifact, note: str | None = None
    ) -> None:
        artifact = held.artifact
        AuditLog(self.session).record(
            event,
            principal,
            Target("channel", held.channel, artifact.channel_id),
            details={
                "file": f"{artifact.subdir}/{artifact.filename}",
                "sha256": artifact.sha256,
                "status": artifact.scan_status,
                **({"note": note} if note else {}),
            },
        )
