"""Read models of the vulnerability API: advisories with their matches, as a caller may see them.

Advisory data (ids, scores, ranges) is not channel-sensitive: ``cve:read`` shows every advisory.
Matches are: a match is shown only on an artifact of a channel the caller can read, and filtering
by a channel the caller cannot read answers as a channel that does not exist. So a private
channel's packages never show through the vulnerability list or an advisory's page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, cast, func, or_, select
from sqlalchemy.orm import Session

from stockade.auth.access import AccessService
from stockade.auth.models import User
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.channels.service import ChannelService
from stockade.core.errors import InvalidInputError
from stockade.vulns.aliases import group_spellings, merged_aliases, source_versions
from stockade.vulns.curation import CurationService
from stockade.vulns.display import SUMMARY_LIMIT, display_summary
from stockade.vulns.errors import VulnerabilityNotFoundError
from stockade.vulns.ids import find_vulnerability
from stockade.vulns.models import (
    ArtifactVulnSummary,
    Curation,
    MatchStatus,
    VulnFeed,
    VulnMatch,
)
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.store import chunked
from stockade.web.api.cve_schemas import (
    AffectedArtifact,
    CurationPublic,
    MatchedPackage,
    VulnerabilityPublic,
    VulnerabilitySummary,
)

__all__ = [
    "ArtifactFigures",
    "ArtifactVuln",
    "MatchStats",
    "VulnFilters",
    "VulnListRow",
    "check_known_version",
    "curation_history",
    "curation_public",
    "list_most_severe",
    "list_vulnerabilities",
    "package_figures",
    "package_vulnerabilities",
    "show_vulnerability",
]

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


def _filtered(filters: VulnFilters, where: Sequence[ColumnElement[bool]]) -> Select[VulnRow]:
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


def _summary(
    row: VulnRow, packages: list[MatchedPackage] | None, spelled: dict[str, list[str]]
) -> VulnerabilitySummary:
    return VulnerabilitySummary(
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
) -> tuple[list[VulnerabilitySummary], int | None]:
    """A page of advisories in row order after ``after``; the last row id for the next page."""
    AccessService(session).require(principal, Permission.CVE_READ)
    where: list[ColumnElement[bool]] = []
    if filters.by_match:
        channels = readable_channels(session, principal, filters.channel)
        where = _match_conditions(filters, list(channels))
    query = _filtered(filters, where).where(VulnRow.id > after).order_by(VulnRow.id).limit(limit)
    rows = session.scalars(query).all()
    groups = [r.alias_group for r in rows]
    packages = _packages(session, groups, where) if filters.by_match else {}
    spelled = group_spellings(session, groups)
    found = [
        _summary(r, packages.get(r.alias_group, []) if filters.by_match else None, spelled)
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


def show_vulnerability(session: Session, principal: Principal, vuln_id: str) -> VulnerabilityPublic:
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
    return VulnerabilityPublic(
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


def curation_public(session: Session, vuln_id: str, row: Curation) -> CurationPublic:
    """``vulnerability``: the id asked for, or the id of the record the decision is kept on when
    that is another record of its alias group (a decision on one id applies to all of them)."""
    user = session.get(User, row.created_by_id) if row.created_by_id is not None else None
    asked = find_vulnerability(session, vuln_id)
    record = session.get(VulnRow, row.vulnerability_id)
    other = record is not None and (asked is None or asked.id != record.id)
    return CurationPublic(
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


# ------------------------------------------------------------------ read models of the web pages

#: CVSS versions from the most to the least preferred, as ``Vulnerability.best_score`` picks them.
CVSS_PREFERENCE = ("4.0", "3.1", "3.0", "2.0")
NO_SCORE = -1.0  # sorts advisories without a CVSS vector below every scored one


def blurb(row: VulnRow, limit: int = SUMMARY_LIMIT) -> str:
    """The advisory's summary, else the start of its details (many OSV records have no summary)."""
    return display_summary(row.summary, row.details, limit)


def best_version(scores: Sequence[dict[str, Any]] | None) -> str | None:
    """The CVSS version the best score comes from (v4, else v3.1, v3.0, v2)."""
    versions = {str(s.get("version")) for s in scores or []}
    return next((v for v in CVSS_PREFERENCE if v in versions), None)


@dataclass(frozen=True)
class MatchStats:
    """An advisory's matches among what the caller can read (and the filters select)."""

    artifacts: int = 0
    channels: int = 0
    worst_status: str | None = None


@dataclass(frozen=True)
class VulnListRow:
    summary: VulnerabilitySummary
    blurb: str
    best_version: str | None
    stats: MatchStats


@dataclass(frozen=True)
class SeverityCursor:
    """Where a page of the most-severe-first list ends: the score (or NO_SCORE) and row id."""

    score: float
    row_id: int

    def encode(self) -> str:
        return f"{self.score!r}_{self.row_id}"

    @classmethod
    def decode(cls, text: str) -> SeverityCursor:
        score, sep, row_id = text.partition("_")
        try:
            if not sep or not row_id.isascii() or not row_id.isdigit() or len(row_id) > 18:
                raise ValueError(text)
            value = float(score)
            if not NO_SCORE <= value <= 10.0:
                raise ValueError(text)
        except ValueError:
            raise InvalidInputError(
                "the page cursor is not valid; start again from the first page", field="after"
            ) from None
        return cls(value, int(row_id))


def list_most_severe(
    session: Session,
    principal: Principal,
    filters: VulnFilters,
    *,
    after: str | None,
    limit: int,
) -> tuple[list[VulnListRow], str | None]:
    """A page of advisories, the highest best score first (unscored last), each with its matches
    in the channels the caller can read; the cursor of the next page."""
    AccessService(session).require(principal, Permission.CVE_READ)
    channels = readable_channels(session, principal, filters.channel)
    where = _match_conditions(filters, list(channels))
    score = func.coalesce(VulnRow.group_score, NO_SCORE)
    query = _filtered(filters, where if filters.by_match else [])
    if after:
        cursor = SeverityCursor.decode(after)
        query = query.where(
            or_(score < cursor.score, and_(score == cursor.score, VulnRow.id > cursor.row_id))
        )
    rows = session.scalars(query.order_by(score.desc(), VulnRow.id).limit(limit)).all()
    groups = [r.alias_group for r in rows]
    stats = _stats(session, groups, where)
    spelled = group_spellings(session, groups)
    versions = source_versions(session, rows)
    found = [
        VulnListRow(
            _summary(r, None, spelled),
            blurb(r),
            versions.get(r.id),
            stats.get(r.alias_group, MatchStats()),
        )
        for r in rows
    ]
    if len(rows) < limit:
        return found, None
    last = rows[-1]
    next_score = last.group_score if last.group_score is not None else NO_SCORE
    return found, SeverityCursor(next_score, last.id).encode()


def _stats(
    session: Session, groups: list[str], where: list[ColumnElement[bool]]
) -> dict[str, MatchStats]:
    """Alias group -> its matches: each artifact once (in the worst status of the group's
    matches on it), and the channels they are in."""
    worst: dict[str, dict[int, str]] = defaultdict(dict)
    channels: dict[str, set[int]] = defaultdict(set)
    for part in chunked(groups):
        query = (
            select(VulnRow.alias_group, Artifact.id, Artifact.channel_id, VulnMatch.status)
            .join(VulnMatch, VulnMatch.vulnerability_id == VulnRow.id)
            .join(Artifact, Artifact.id == VulnMatch.artifact_id)
            .where(Artifact.servable.is_(True))  # quarantined: in no report
            .where(VulnRow.alias_group.in_(list(part)), *where)
        )
        for group, aid, channel_id, status in session.execute(query):
            channels[group].add(channel_id)
            seen = worst[group].get(aid)
            worst[group][aid] = worst_of([status, seen] if seen else [status]) or status
    return {
        group: MatchStats(
            artifacts=len(per),
            channels=len(channels[group]),
            worst_status=worst_of(per.values()),
        )
        for group, per in worst.items()
    }


def worst_of(statuses: Iterable[str]) -> str | None:
    """The most severe of some statuses (``active`` > ``reported`` > ``disputed`` > …)."""
    known = [MatchStatus(s) for s in statuses if s in MatchStatus.__members__.values()]
    return max(known, key=lambda s: s.rank).value if known else None


def curation_history(session: Session, principal: Principal, vuln_id: str) -> list[CurationPublic]:
    """Every decision on an advisory, oldest first (``cve:read``)."""
    rows = CurationService(session).history(principal, vuln_id)
    return [curation_public(session, vuln_id.strip(), r) for r in rows]


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
