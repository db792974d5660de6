"""Rows to REST schemas."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.channels.signature_state import signature_info
from stockade.web.api.schemas import ArtifactPublic, ChannelPublic, SignaturePublic, SubdirPublic


def channel_public(
    channel: Channel, base_url: str, stats: tuple[int, int] | None = None
) -> ChannelPublic:
    return ChannelPublic(
        name=channel.name,
        description=channel.description,
        privacy=channel.privacy,
        kind=channel.kind,
        frozen=channel.frozen,
        owner=channel.owner.username if channel.owner else None,
        created_at=channel.created_at,
        updated_at=channel.updated_at,
        url=f"{base_url}/conda/{channel.name}",
        artifact_count=stats[0] if stats else None,
        total_size=stats[1] if stats else None,
        scan_uploads=channel.scan_uploads,
        scan_suspicious=channel.scan_suspicious,
        scan_errors=channel.scan_errors,
        sign=channel.sign,
    )


def channel_signs(session: Session, channel_id: int) -> bool:
    """Whether a channel signs what it serves (for :func:`artifact_public`)."""
    return bool(session.scalar(select(Channel.sign).where(Channel.id == channel_id)))


def signature_public(artifact: Artifact, signs: bool) -> SignaturePublic:
    info = signature_info(artifact, signs)
    return SignaturePublic(
        state=info.state, upstream_status=info.upstream_status, detail=info.detail
    )


def artifact_public(
    artifact: Artifact, channel_name: str, base_url: str, *, signs: bool
) -> ArtifactPublic:
    """``signs``: the artifact's channel signs (``channels.sign``; :func:`channel_signs`)."""
    return ArtifactPublic(
        id=artifact.id,
        channel=channel_name,
        subdir=artifact.subdir,
        filename=artifact.filename,
        name=artifact.name,
        version=artifact.version,
        build=artifact.build,
        build_number=artifact.build_number,
        sha256=artifact.sha256,
        md5=artifact.md5,
        size=artifact.size,
        indexed_timestamp=artifact.indexed_timestamp,
        created_at=artifact.created_at,
        scan_status=artifact.scan_status,
        signature=signature_public(artifact, signs),
        url=f"{base_url}/conda/{channel_name}/{artifact.subdir}/{artifact.filename}",
    )


def subdir_public(row: SubdirIndex, scanning: int = 0) -> SubdirPublic:
    return SubdirPublic(
        subdir=row.subdir,
        requested_rev=row.requested_rev,
        published_rev=row.published_rev,
        record_count=row.record_count,
        published_at=row.published_at,
        pending=row.requested_rev > row.published_rev or scanning > 0,
        scanning=scanning,
        failure=row.failure,
        failures=row.failures or 0,
        failing_since=row.failed_at,
        retry_at=row.retry_at,
        warnings=list(row.warnings or []),
        signing_done=row.signing_done or 0,
        signing_total=row.signing_total or 0,
    )
