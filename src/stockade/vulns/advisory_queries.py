"""Advisories with their matches, as a caller may see them (the API's and the pages' one rule).

Advisory data (ids, scores, ranges) is not channel-sensitive: ``cve:read`` shows every advisory.
Matches are: a match is shown only on an artifact of a channel the caller can read, and filtering
by a channel the caller cannot read answers as a channel that does not exist. So a private
channel's packages never show through the vulnerability list or an advisory's page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, String, cast, or_, select
from sqlalchemy.orm import Session

from stockade.auth.access import AccessService
from stockade.auth.models import User
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.channels.service import ChannelService
from stockade.core.errors import InvalidInputError
from stockade.vulns.advisory_views import (
    ARTIFACTS_SHOWN,
    AdvisoryDetail,
    AdvisorySummary,
    AffectedArtifact,
    CurationRecord,
    MatchedPackage,
)
from stockade.vulns.aliases import group_spellings, merged_aliases
from stockade.vulns.curation import CurationService
from stockade.vulns.display import display_summary
from stockade.vulns.errors import VulnerabilityNotFoundError
from stockade.vulns.ids import find_vulnerability
from stockade.vulns.models import Curation, MatchStatus, VulnFeed, VulnMatch
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.store import chunked

__all__ = [
    "VulnFilters",
    "advisory_summary",
    "check_known_version",
    "curation_history",
    "curation_record",
    "find",
    "list_vulnerabilities",
    "match_conditions",
    "matched_advisories",
    "readable_channels",
    "show_vulnerability",
]


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


def match_conditions(filters: VulnFilters, channel_ids: Sequence[int]) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Artifact.channel_id.in_(list(channel_ids))]
    if filters.package:
        where.append(Artifact.name == filters.package.strip().lower())
    if filters.status:
        where.append(VulnMatch.status.in_(list(filters.status)))
    return where


def matched_advisories(
    filters: VulnFilters, where: Sequence[ColumnElement[bool]]
) -> Select[VulnRow]:
    """Advisories the filters select, unordered; ``where``: the match conditions, if any.

    One row per alias group (its primary record, ``vulns.aliases``): the severity is the group's,
    and the other conditions hold when they hold for any record of the group."""
    query = select(VulnRow).where(VulnRow.vuln_id == VulnRow.alias_group)
    if filters.severity:
        query = query.where(VulnRow.group_severity.in_(list(filters.severity)))
    if filters.kev is not None:
        known = select(VulnRow.alias_group).where(VulnRow.kev.is_(True))
        in_kev = VulnRow.alias_group.in_(known)
        query = query.where(in_kev if filters.kev else ~in_kev)
    if filters.q:
        text = filters.q.strip()
        said = select(VulnRow.alias_group).where(
            or_(
                VulnRow.vuln_id.icontains(text, autoescape=True),
                VulnRow.summary.icontains(text, autoescape=True),
                cast(VulnRow.aliases, String).icontains(text, autoescape=True),
            )
        )
        query = query.where(VulnRow.alias_group.in_(said))
    if where:
        matched = (
            select(VulnRow.alias_group)
            .join(VulnMatch, VulnMatch.vulnerability_id == VulnRow.id)
            .join(Artifact, Artifact.id == VulnMatch.artifact_id)
            .where(Artifact.servable.is_(True))  # quarantined: in no report
            .where(*where)
        )
        query = query.where(VulnRow.alias_group.in_(matched))
    return query


def advisory_summary(
    row: VulnRow, packages: list[MatchedPackage] | None, spelled: dict[str, list[str]]
) -> AdvisorySummary:
    return AdvisorySummary(
        id=row.vuln_id,
        aliases=merged_aliases(row.vuln_id, row.aliases or [], spelled.get(row.alias_group, [])),
        summary=display_summary(row.summary, row.details),
        best_score=row.group_score,
        severity=row.group_severity,
        score_source=row.score_source,
        kev=row.kev,
        withdrawn=row.withdrawn is not None,
        published=row.published,
        modified=row.modified,
        packages=packages,
    )


def list_vulnerabilities(
    session: Session,
    principal: Principal,
    filters: VulnFilters,
    *,
    after: int,
    limit: int,
) -> tuple[list[AdvisorySummary], int | None]:
    """A page of advisories in row order after ``after``; the last row id for the next page."""
    AccessService(session).require(principal, Permission.CVE_READ)
    where: list[ColumnElement[bool]] = []
    if filters.by_match:
        channels = readable_channels(session, principal, filters.channel)
        where = match_conditions(filters, list(channels))
    query = (
        matched_advisories(filters, where)
        .where(VulnRow.id > after)
        .order_by(VulnRow.id)
        .limit(limit)
    )
    rows = session.scalars(query).all()
    groups = [r.alias_group for r in rows]
    packages = _packages(session, groups, where) if filters.by_match else {}
    spelled = group_spellings(session, groups)
    found = [
        advisory_summary(r, packages.get(r.alias_group, []) if filters.by_match else None, spelled)
        for r in rows
    ]
    return found, rows[-1].id if len(rows) == limit else None


def _packages(
    session: Session, groups: list[str], where: list[ColumnElement[bool]]
) -> dict[str, list[MatchedPackage]]:
    """Alias group -> the package versions any of its records matched, worst status each."""
    worst: dict[str, dict[tuple[str, str], MatchStatus]] = defaultdict(dict)
    for part in chunked(groups):
        query = (
            select(VulnRow.alias_group, Artifact.name, Artifact.version, VulnMatch.status)
            .join(VulnMatch, VulnMatch.vulnerability_id == VulnRow.id)
            .join(Artifact, Artifact.id == VulnMatch.artifact_id)
            .where(Artifact.servable.is_(True))  # quarantined: in no report
            .where(VulnRow.alias_group.in_(list(part)), *where)
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
    """By id, else by alias (``vulns.ids``): ``/cves/CVE-2021-21330`` shows ``PYSEC-2021-76``."""
    row = find_vulnerability(session, vuln_id)
    if row is None:
        raise VulnerabilityNotFoundError(f"vulnerability {vuln_id!r} not found")
    return row


def show_vulnerability(session: Session, principal: Principal, vuln_id: str) -> AdvisoryDetail:
    """The record ``vuln_id`` names, with the merged view of its alias group: the group's score
    (and which record it came from), every id, and the artifacts any of its records matched."""
    AccessService(session).require(principal, Permission.CVE_READ)
    row = find(session, vuln_id)
    records = session.scalars(
        select(VulnRow.vuln_id)
        .where(VulnRow.alias_group == row.alias_group)
        .order_by(VulnRow.vuln_id)
    ).all()
    spelled = group_spellings(session, [row.alias_group]).get(row.alias_group, [])
    feed = session.get(VulnFeed, row.feed_id) if row.feed_id is not None else None
    return AdvisoryDetail(
        id=row.vuln_id,
        source=row.source,
        feed=feed.name if feed else None,
        aliases=merged_aliases(row.vuln_id, row.aliases or [], spelled),
        group=list(records),
        summary=row.summary,
        details=row.details,
        published=row.published,
        modified=row.modified,
        withdrawn=row.withdrawn,
        best_score=row.group_score,
        severity=row.group_severity,
        score_source=row.score_source,
        kev=row.kev,
        epss=row.epss,
        scores=list(row.scores or []),
        cwes=list(row.cwes or []),
        references=list(row.references or []),
        affected=list(row.affected or []),
        artifacts=_group_artifacts(session, principal, row.alias_group),
    )


def _group_artifacts(session: Session, principal: Principal, group: str) -> list[AffectedArtifact]:
    """Artifacts the records of an alias group match in readable channels, once each (the most
    severe status of the group's matches on it)."""
    channels = readable_channels(session, principal)
    query = (
        select(
            Artifact.id,
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
        .join(VulnRow, VulnRow.id == VulnMatch.vulnerability_id)
        .where(
            VulnRow.alias_group == group,
            Artifact.channel_id.in_(list(channels)),
            Artifact.servable.is_(True),  # quarantined: in no report
        )
        .order_by(Artifact.channel_id, Artifact.subdir, Artifact.filename)
        .limit(ARTIFACTS_SHOWN)
    )
    found: dict[int, AffectedArtifact] = {}
    for aid, cid, subdir, filename, name, version, build, status, origin in session.execute(query):
        seen = found.get(aid)
        if seen is None or MatchStatus(status).rank > MatchStatus(seen.status).rank:
            found[aid] = AffectedArtifact(
                channel=channels[cid],
                subdir=subdir,
                filename=filename,
                name=name,
                version=version,
                build=build,
                status=status,
                status_origin=origin,
            )
    return sorted(found.values(), key=lambda a: (a.channel, a.subdir, a.filename))


def curation_record(session: Session, vuln_id: str, row: Curation) -> CurationRecord:
    """``vulnerability``: the id asked for, or the id of the record the decision is kept on when
    that is another record of its alias group (a decision on one id applies to all of them)."""
    user = session.get(User, row.created_by_id) if row.created_by_id is not None else None
    asked = find_vulnerability(session, vuln_id)
    record = session.get(VulnRow, row.vulnerability_id)
    other = record is not None and (asked is None or asked.id != record.id)
    return CurationRecord(
        id=row.id,
        vulnerability=record.vuln_id if record is not None and other else vuln_id,
        package=row.package,
        version=row.version,
        builds=row.builds,
        status=row.status,
        note=row.note,
        created_by=user.username if user else None,
        created_at=row.created_at,
    )


def curation_history(session: Session, principal: Principal, vuln_id: str) -> list[CurationRecord]:
    """Every decision on an advisory, oldest first (``cve:read``)."""
    rows = CurationService(session).history(principal, vuln_id)
    return [curation_record(session, vuln_id.strip(), r) for r in rows]


def check_known_version(session: Session, principal: Principal, package: str, version: str) -> None:
    """Refuse a package or version that no channel the caller can read holds."""
    name, ver = package.strip().lower(), version.strip()
    if not name or not ver:
        return  # the curation's own checks name the missing field
    channels = list(readable_channels(session, principal))
    versions = select(Artifact.version).where(
        Artifact.name == name, Artifact.channel_id.in_(channels)
    )
    if session.scalar(versions.limit(1)) is None:
        raise InvalidInputError(
            f"no package named {name!r} in the channels you can read", field="package"
        )
    if session.scalar(versions.where(Artifact.version == ver).limit(1)) is None:
        raise InvalidInputError(
            f"{name} has no version {ver!r} in the channels you can read", field="version"
        )
