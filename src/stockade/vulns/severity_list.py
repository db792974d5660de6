"""The advisories most severe first, each with its matches in the channels the caller can read.

The list of the web pages (``/cves``): the highest best score first (unscored last), paged by a
cursor of (score, row id) that a caller cannot forge into anything but a place in the list.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from stockade.auth.access import AccessService
from stockade.auth.permissions import Permission
from stockade.auth.principal import Principal
from stockade.channels.models import Artifact
from stockade.core.errors import InvalidInputError
from stockade.vulns.advisory_queries import (
    VulnFilters,
    advisory_summary,
    match_conditions,
    matched_advisories,
    readable_channels,
)
from stockade.vulns.advisory_views import NO_SCORE, AdvisorySummary, blurb, worst_of
from stockade.vulns.aliases import group_spellings, source_versions
from stockade.vulns.models import Vulnerability as VulnRow
from stockade.vulns.models import VulnMatch
from stockade.vulns.store import chunked

__all__ = ["MatchStats", "SeverityCursor", "VulnListRow", "list_most_severe"]


@dataclass(frozen=True)
class MatchStats:
    """An advisory's matches among what the caller can read (and the filters select)."""

    artifacts: int = 0
    channels: int = 0
    worst_status: str | None = None


@dataclass(frozen=True)
class VulnListRow:
    summary: AdvisorySummary
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
    where = match_conditions(filters, list(channels))
    score = func.coalesce(VulnRow.group_score, NO_SCORE)
    query = matched_advisories(filters, where if filters.by_match else [])
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
            advisory_summary(r, None, spelled),
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
