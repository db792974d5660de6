"""Read models of the vulnerability API: advisories with their matches, as a caller may see them.

Advisory data (ids, scores, ranges) is not channel-sensitive: ``cve:read`` shows every advisory.
Matches are: a match is shown only on an artifact of a channel the caller can read, and filtering
by a channel the caller cannot read answers as a channel that does not exist. So a private
channel's packages never show through the vulnerability list or an advisory's page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, String, cast, or_, select
from sqlalchemy.orm import Session

from stockade.auth.access import AccessService
from stockade.auth.models import User
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.channels.service import ChannelService
from stockade.vulns.errors import VulnerabilityNotFoundError
from stockade.vulns.models import Curation, MatchStatus, VulnFeed, VulnMatch
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.store import chunked
from stockade.web.api.cve_schemas import (
    AffectedArtifact,
    CurationPublic,
    MatchedPackage,
    VulnerabilityPublic,
    VulnerabilitySummary,
)

__all__ = ["VulnFilters", "curation_public", "list_vulnerabilities", "show_vulnerability"]

ARTIFACTS_SHOWN = 5000


@dataclass
class VulnFilters:
    severity: Sequence[str] = ()
    status: Sequence[str] = ()
    channel: str | None = None
    package: str | None = None
    kev: bool | None = None
    q: str | None = None

    @property
    def by_match(self) -> bool:
        return bool(self.status or self.channel or self.package)


def readable_channels(
    session: Session, principal: Principal, only: str | None = None
) -> dict[int, str]:
    """Channel id -> name of what the caller can read (``only``: that channel, or 404/401)."""
    service = ChannelService(session)
    if only is not None:
        channel = service.get(principal, only, Permission.CHANNEL_READ)
        return {channel.id: channel.name}
    return {c.id: c.name for c in service.list_visible(principal)}


def _match_conditions(
    filters: VulnFilters, channel_ids: Sequence[int]
) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Artifact.channel_id.in_(list(channel_ids))]
    if filters.package:
        where.append(Artifact.name == filters.package.strip().lower())
    if filters.status:
        where.append(VulnMatch.status.in_(list(filters.status)))
    return where


def list_vulnerabilities(
    session: Session,
    principal: Principal,
    filters: VulnFilters,
    *,
    after: int,
    limit: int,
) -> tuple[list[VulnerabilitySummary], int | None]:
    """A page of advisories in row order after ``after``; the last row id for the next page."""
    AccessService(session).require(principal, Permission.CVE_READ)
    query = select(VulnRow).where(VulnRow.id > after).order_by(VulnRow.id).limit(limit)
    if filters.severity:
        query = query.where(VulnRow.severity.in_(list(filters.severity)))
    if filters.kev is not None:
        query = query.where(VulnRow.kev.is_(filters.kev))
    if filters.q:
        text = filters.q.strip()
        query = query.where(
            or_(
                VulnRow.vuln_id.icontains(text, autoescape=True),
                VulnRow.summary.icontains(text, autoescape=True),
                cast(VulnRow.aliases, String).icontains(text, autoescape=True),
            )
        )
    where: list[ColumnElement[bool]] = []
    if filters.by_match:
        channels = readable_channels(session, principal, filters.channel)
        where = _match_conditions(filters, list(channels))
        matched = (
            select(VulnMatch.vulnerability_id)
            .join(Artifact, Artifact.id == VulnMatch.artifact_id)
            .where(*where)
        )
        query = query.where(VulnRow.id.in_(matched))
    rows = session.scalars(query).all()
    packages = _packages(session, [r.id for r in rows], where) if filters.by_match else {}
    found = [
        VulnerabilitySummary(
            id=r.vuln_id,
            aliases=list(r.aliases or []),
            summary=r.summary,
            best_score=r.best_score,
            severity=r.severity,
            kev=r.kev,
            withdrawn=r.withdrawn is not None,
            published=r.published,
            modified=r.modified,
            packages=packages.get(r.id, []) if filters.by_match else None,
        )
        for r in rows
    ]
    return found, rows[-1].id if len(rows) == limit else None


def _packages(
    session: Session, row_ids: list[int], where: list[ColumnElement[bool]]
) -> dict[int, list[MatchedPackage]]:
    worst: dict[int, dict[tuple[str, str], MatchStatus]] = defaultdict(dict)
    for part in chunked(row_ids):
        query = (
            select(VulnMatch.vulnerability_id, Artifact.name, Artifact.version, VulnMatch.status)
            .join(Artifact, Artifact.id == VulnMatch.artifact_id)
            .where(VulnMatch.vulnerability_id.in_(list(part)), *where)
        )
        for vid, name, version, status in session.execute(query):
            now, seen = MatchStatus(status), worst[vid].get((name, version))
            if seen is None or now.rank > seen.rank:
                worst[vid][(name, version)] = now
    return {
        vid: [
            MatchedPackage(name=n, version=v, status=s.value) for (n, v), s in sorted(per.items())
        ]
        for vid, per in worst.items()
    }


def find(session: Session, vuln_id: str) -> VulnRow:
    row = session.scalar(select(VulnRow).where(VulnRow.vuln_id == vuln_id.strip()))
    if row is None:
        raise VulnerabilityNotFoundError(f"vulnerability {vuln_id!r} not found")
    return row


def show_vulnerability(session: Session, principal: Principal, vuln_id: str) -> VulnerabilityPublic:
    AccessService(session).require(principal, Permission.CVE_READ)
    row = find(session, vuln_id)
    channels = readable_channels(session, principal)
    query = (
        select(
            Artifact.channel_id,
            Artifact.subdir,
            Artifact.filename,
            Artifact.name,
            Artifact.version,
            Artifact.build,
            VulnMatch.status,
            VulnMatch.status_origin,
        )
        .join(VulnMatch, VulnMatch.artifact_id == Artifact.id)
        .where(VulnMatch.vulnerability_id == row.id, Artifact.channel_id.in_(list(channels)))
        .order_by(Artifact.channel_id, Artifact.subdir, Artifact.filename)
        .limit(ARTIFACTS_SHOWN)
    )
    artifacts = [
        AffectedArtifact(
            channel=channels[cid],
            subdir=subdir,
            filename=filename,
            name=name,
            version=version,
            build=build,
            status=status,
            status_origin=origin,
        )
        for cid, subdir, filename, name, version, build, status, origin in session.execute(query)
    ]
    artifacts.sort(key=lambda a: (a.channel, a.subdir, a.filename))
    feed = session.get(VulnFeed, row.feed_id) if row.feed_id is not None else None
    return VulnerabilityPublic(
        id=row.vuln_id,
        source=row.source,
        feed=feed.name if feed else None,
        aliases=list(row.aliases or []),
        summary=row.summary,
        details=row.details,
        published=row.published,
        modified=row.modified,
        withdrawn=row.withdrawn,
        best_score=row.best_score,
        severity=row.severity,
        kev=row.kev,
        epss=row.epss,
        scores=list(row.scores or []),
        cwes=list(row.cwes or []),
        references=list(row.references or []),
        affected=list(row.affected or []),
        artifacts=artifacts,
    )


def curation_public(session: Session, vuln_id: str, row: Curation) -> CurationPublic:
    user = session.get(User, row.created_by_id) if row.created_by_id is not None else None
    return CurationPublic(
        id=row.id,
        vulnerability=vuln_id,
        package=row.package,
        version=row.version,
        builds=row.builds,
        status=row.status,
        note=row.note,
        created_by=user.username if user else None,
        created_at=row.created_at,
    )
