"""A package's vulnerabilities in one channel: per-build figures and every matching advisory.

The package page's vulnerability column and tab; only servable builds of a channel the caller can
read, under ``cve:read``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.vulns.advisory_queries import readable_channels
from stockade.vulns.advisory_views import ARTIFACTS_SHOWN, NO_SCORE, blurb
from stockade.vulns.aliases import source_versions
from stockade.vulns.models import ArtifactVulnSummary, MatchStatus, VulnMatch
from stockade.vulns.models import Vulnerability as VulnRow

__all__ = ["ArtifactFigures", "ArtifactVuln", "package_figures", "package_vulnerabilities"]


@dataclass(frozen=True)
class ArtifactVuln:
    """One advisory matching one build of a package."""

    artifact_id: int
    vuln_id: str
    summary: str  # or the start of the details
    best_score: float | None
    best_version: str | None
    severity: str | None
    kev: bool
    withdrawn: bool
    status: str
    status_origin: str


@dataclass(frozen=True)
class ArtifactFigures:
    """``artifact_vuln_summaries``: highest score, its severity, most severe status, counts."""

    max_score: float | None
    severity: str | None
    worst_status: str
    counts: dict[str, int]


def package_figures(
    session: Session, principal: Principal, channel: str, package: str
) -> dict[int, ArtifactFigures]:
    """Per-artifact figures of a package's builds in a channel, by artifact id."""
    AccessService(session).require(principal, Permission.CVE_READ)
    ids = list(readable_channels(session, principal, channel))
    query = (
        select(ArtifactVulnSummary)
        .join(Artifact, Artifact.id == ArtifactVulnSummary.artifact_id)
        .where(Artifact.servable.is_(True))
        .where(Artifact.channel_id.in_(ids), Artifact.name == package)
    )
    return {
        s.artifact_id: ArtifactFigures(s.max_score, s.severity, s.worst_status, dict(s.counts))
        for s in session.scalars(query)
    }


def package_vulnerabilities(
    session: Session, principal: Principal, channel: str, package: str
) -> list[ArtifactVuln]:
    """Every vulnerability matching a build of a package in a channel, the highest score first:
    records that alias each other once per build, under their group's primary id."""
    AccessService(session).require(principal, Permission.CVE_READ)
    ids = list(readable_channels(session, principal, channel))
    query = (
        select(VulnMatch.artifact_id, VulnMatch.status, VulnMatch.status_origin, VulnRow)
        .join(Artifact, Artifact.id == VulnMatch.artifact_id)
        .where(Artifact.servable.is_(True))  # quarantined: in no report
        .join(VulnRow, VulnRow.id == VulnMatch.vulnerability_id)
        .where(Artifact.channel_id.in_(ids), Artifact.name == package)
        .order_by(
            func.coalesce(VulnRow.group_score, NO_SCORE).desc(),
            VulnRow.alias_group,
            VulnRow.vuln_id != VulnRow.alias_group,  # the primary record first
            VulnRow.vuln_id,
        )
        .limit(ARTIFACTS_SHOWN)
    )
    found: dict[tuple[int, str], ArtifactVuln] = {}
    matched = session.execute(query).all()
    versions = source_versions(session, [row for *_, row in matched])
    for artifact_id, status, origin, row in matched:
        seen = found.get((artifact_id, row.alias_group))
        if seen is not None:
            if MatchStatus(status).rank > MatchStatus(seen.status).rank:
                found[(artifact_id, row.alias_group)] = replace(
                    seen, status=status, status_origin=origin
                )
            continue
        found[(artifact_id, row.alias_group)] = ArtifactVuln(
            artifact_id=artifact_id,
            vuln_id=row.alias_group,
            summary=blurb(row),
            best_score=row.group_score,
            best_version=versions.get(row.id),
            severity=row.group_severity,
            kev=row.kev,
            withdrawn=row.withdrawn is not None,
            status=status,
            status_origin=origin,
        )
    return list(found.values())
