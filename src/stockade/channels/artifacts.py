"""Artifacts in channels: list, show, and bulk remove, copy and move (SPEC §3)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rattler import Version, VersionSpec
from rattler.exceptions import InvalidVersionSpecError
from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.audit.service import AuditLog, Target
from stockade.auth.permissions import Level, Permission
from stockade.auth.principal import Principal
from stockade.channels.errors import ArtifactExistsError, ArtifactNotFoundError
from stockade.channels.intake import ScanReason, admit
from stockade.channels.models import Artifact, Channel
from stockade.channels.privacy import channel_ref
from stockade.channels.publishing import request_publications
from stockade.channels.scanstate import ArtifactSource, listed_clause
from stockade.channels.service import ChannelService
from stockade.channels.signature_names import SignatureState
from stockade.channels.signature_state import signature_clause
from stockade.core.errors import InvalidInputError


@dataclass(frozen=True)
class Selection:
    """Which artifacts a bulk operation takes: explicit ``subdir/filename`` paths, or a filter."""

    files: Sequence[str] = ()
    name: str | None = None
    version: str | None = None  # a conda version spec, e.g. ">=1.2,<2"
    subdir: str | None = None

    def check(self) -> None:
        if not self.files and not self.name:
            raise InvalidInputError(
                "say which artifacts: give files (subdir/filename) or a package name",
                code="selection:empty",
            )


@dataclass(frozen=True)
class BulkResult:
    artifacts: list[Artifact]
    skipped: list[str]


class ArtifactService:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.channels = ChannelService(session)

    def sees_pending(self, principal: Principal, channel: Channel) -> bool:
        """Files waiting for their verdict are shown to their channel's writers (uploaders and
        managers) only; readers see what the index shows."""
        level = self.channels.access.channel_level(
            principal, channel_ref(channel), Permission.ARTIFACT_WRITE
        )
        return level >= Level.WRITE

    def list_files(
        self,
        channel: Channel,
        *,
        subdir: str | None = None,
        name: str | None = None,
        signature: SignatureState | None = None,
        after_id: int = 0,
        limit: int = 100,
        with_pending: bool = False,
    ) -> list[Artifact]:
        query = select(Artifact).where(
            Artifact.channel_id == channel.id,
            Artifact.id > after_id,
            listed_clause(with_pending=with_pending),
        )
        if subdir:
            query = query.where(Artifact.subdir == subdir)
        if name:
            query = query.where(Artifact.name == name)
        if signature:
            query = query.where(signature_clause(channel.sign, signature))
        return list(self.session.scalars(query.order_by(Artifact.id).limit(limit)).all())

    def get(
        self, channel: Channel, subdir: str, filename: str, *, with_pending: bool = False
    ) -> Artifact:
        artifact = self.session.scalar(
            select(Artifact).where(
                Artifact.channel_id == channel.id,
                Artifact.subdir == subdir,
                Artifact.filename == filename,
                listed_clause(with_pending=with_pending),  # held ones: the quarantine API only
            )
        )
        if artifact is None:
            raise ArtifactNotFoundError(f"{subdir}/{filename} not found in {channel.name!r}")
        return artifact

    def select(
        self, channel: Channel, selection: Selection, *, with_pending: bool = False
    ) -> list[Artifact]:
        selection.check()
        found: list[Artifact] = []
        for path in selection.files:
            subdir, _, filename = path.partition("/")
            if not filename:
                raise InvalidInputError(
                    f"{path!r} is not subdir/filename", code="selection:bad-path", field="files"
                )
            found.append(self.get(channel, subdir, filename, with_pending=with_pending))
        if selection.name:
            found.extend(self._by_spec(channel, selection, with_pending))
        return found

    def _by_spec(
        self, channel: Channel, selection: Selection, with_pending: bool
    ) -> list[Artifact]:
        query = select(Artifact).where(
            Artifact.channel_id == channel.id,
            Artifact.name == selection.name,
            listed_clause(with_pending=with_pending),
        )
        if selection.subdir:
            query = query.where(Artifact.subdir == selection.subdir)
        rows = list(self.session.scalars(query.order_by(Artifact.filename)).all())
        if selection.version:
            try:
                spec = VersionSpec(selection.version)
            except InvalidVersionSpecError as exc:
                raise InvalidInputError(
                    f"not a version spec: {selection.version!r} ({exc})",
                    code="selection:bad-version",
                    field="version",
                ) from None
            rows = [a for a in rows if spec.matches(Version(a.version))]
        return rows

    def remove(self, principal: Principal, channel_name: str, selection: Selection) -> BulkResult:
        channel = self.channels.get(principal, channel_name, Permission.ARTIFACT_MANAGE)
        artifacts = self.select(channel, selection, with_pending=True)
        # the subdir rows first, then the files (channels/lockorder.py)
        request_publications(self.session, [(channel.id, a.subdir) for a in artifacts])
        for artifact in artifacts:
            self.session.delete(artifact)
        self.session.flush()
        if artifacts:
            AuditLog(self.session).record(
                "artifact.remove",
                principal,
                Target("channel", channel.name, channel.id),
                details={"files": [f"{a.subdir}/{a.filename}" for a in artifacts][:1000]},
            )
        return BulkResult(artifacts=artifacts, skipped=[])

    def copy(
        self,
        principal: Principal,
        source_name: str,
        target_name: str,
        selection: Selection,
        *,
        move: bool = False,
        skip_existing: bool = False,
    ) -> BulkResult:
        needed = Permission.ARTIFACT_MANAGE if move else Permission.ARTIFACT_READ
        source = self.channels.get(principal, source_name, needed)
        target = self.channels.get(principal, target_name, Permission.ARTIFACT_WRITE)
        if source.id == target.id:
            raise InvalidInputError("source and target are the same channel", code="copy:same")
        chosen: list[Artifact] = []
        skipped: list[str] = []
        # A reader of the source copies what its index serves; its writers, their pending files.
        pending = self.sees_pending(principal, source)
        for artifact in self.select(source, selection, with_pending=pending):
            path = f"{artifact.subdir}/{artifact.filename}"
            if self._exists(target, artifact):
                if not skip_existing:
                    raise ArtifactExistsError(f"{path} already exists in {target.name!r}")
                skipped.append(path)
                continue
            chosen.append(artifact)
        targets = [(target.id, a.subdir) for a in chosen]
        if move:
            targets += [(source.id, a.subdir) for a in chosen]
        # the subdir rows first, then the files (channels/lockorder.py)
        request_publications(self.session, targets)
        copied = [self._clone(artifact, target) for artifact in chosen]
        if move:
            for artifact in chosen:
                self.session.delete(artifact)
        self.session.flush()
        if copied:
            AuditLog(self.session).record(
                "artifact.move" if move else "artifact.copy",
                principal,
                Target("channel", target.name, target.id),
                details={
                    "source": source.name,
                    "files": [f"{a.subdir}/{a.filename}" for a in copied][:1000],
                    "skipped": len(skipped),
                },
            )
        return BulkResult(artifacts=copied, skipped=skipped)

    def _exists(self, channel: Channel, artifact: Artifact) -> bool:
        return (
            self.session.scalar(
                select(Artifact.id).where(
                    Artifact.channel_id == channel.id,
                    Artifact.subdir == artifact.subdir,
                    Artifact.filename == artifact.filename,
                )
            )
            is not None
        )

    def _clone(self, artifact: Artifact, target: Channel) -> Artifact:
        columns = {
            c.key: getattr(artifact, c.key)
            for c in Artifact.__table__.columns
            if c.key not in ("id", "channel_id", "created_at", "source", "scan_status", "servable")
        }
        clone = Artifact(**columns, source=ArtifactSource.COPY)
        # A copy is scanned again in its new channel (its rules may be newer than the source's
        # verdict); the scanner reuses a current verdict for the same bytes at once.
        return admit(self.session, clone, target, reason=ScanReason.COPY, request=False)
