"""What the vulnerability queries answer: advisories, their matches and curations as a caller sees them.

Plain dataclasses, so that the REST API (which turns them into its Pydantic schemas) and the web
pages (which render them) share one read model without either importing the other. Also the small
rules both need to show them: the worst of some match statuses, an advisory's blurb, and which
CVSS version its best score comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stockade.vulns.display import SUMMARY_LIMIT, display_summary
from stockade.vulns.models import MatchStatus
from stockade.vulns.models import Vulnerability as VulnRow

__all__ = [
    "ARTIFACTS_SHOWN",
    "CVSS_PREFERENCE",
    "NO_SCORE",
    "AdvisoryDetail",
    "AdvisorySummary",
    "AffectedArtifact",
    "CurationRecord",
    "MatchedPackage",
    "best_version",
    "blurb",
    "worst_of",
]

#: At most this many matched artifacts are listed on an advisory or a package.
ARTIFACTS_SHOWN = 5000
#: CVSS versions from the most to the least preferred, as ``Vulnerability.best_score`` picks them.
CVSS_PREFERENCE = ("4.0", "3.1", "3.0", "2.0")
NO_SCORE = -1.0  # sorts advisories without a CVSS vector below every scored one


@dataclass(frozen=True)
class MatchedPackage:
    """A package version an advisory matches in the channels the caller can read."""

    name: str
    version: str
    status: str  # the most severe status among its builds


@dataclass(frozen=True)
class AdvisorySummary:
    """One advisory (an alias group's primary record) in a list."""

    id: str
    aliases: list[str]
    summary: str
    best_score: float | None
    severity: str | None
    score_source: str | None
    kev: bool
    withdrawn: bool
    published: datetime | None
    modified: datetime | None
    packages: list[MatchedPackage] | None = None  # with a match filter: what it matched


@dataclass(frozen=True)
class AffectedArtifact:
    """An artifact an advisory matches, in a channel the caller can read."""

    channel: str
    subdir: str
    filename: str
    name: str
    version: str
    build: str
    status: str
    status_origin: str  # auto, curation or security-json


@dataclass(frozen=True)
class AdvisoryDetail:
    """One advisory with the merged view of its alias group."""

    id: str
    source: str
    feed: str | None
    aliases: list[str]
    group: list[str]
    summary: str
    details: str
    published: datetime | None
    modified: datetime | None
    withdrawn: datetime | None
    best_score: float | None
    severity: str | None
    score_source: str | None
    kev: bool
    epss: float | None
    scores: list[dict[str, Any]] = field(default_factory=list)
    cwes: list[str] = field(default_factory=list)
    references: list[dict[str, Any]] = field(default_factory=list)
    affected: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[AffectedArtifact] = field(default_factory=list)


@dataclass(frozen=True)
class CurationRecord:
    """A curation decision as shown: ``vulnerability`` is the id asked for, or the record's own
    id when the decision is kept on another record of the alias group."""

    id: int
    vulnerability: str
    package: str
    version: str
    builds: str | None
    status: str
    note: str
    created_by: str | None
    created_at: datetime


def worst_of(statuses: Iterable[str]) -> str | None:
    """The most severe of some statuses (``active`` > ``reported`` > ``disputed`` > …)."""
    known = [MatchStatus(s) for s in statuses if s in MatchStatus.__members__.values()]
    return max(known, key=lambda s: s.rank).value if known else None


def blurb(row: VulnRow, limit: int = SUMMARY_LIMIT) -> str:
    """The advisory's summary, else the start of its details (many OSV records have no summary)."""
    return display_summary(row.summary, row.details, limit)


def best_version(scores: Sequence[dict[str, Any]] | None) -> str | None:
    """The CVSS version the best score comes from (v4, else v3.1, v3.0, v2)."""
    versions = {str(s.get("version")) for s in scores or []}
    return next((v for v in CVSS_PREFERENCE if v in versions), None)
