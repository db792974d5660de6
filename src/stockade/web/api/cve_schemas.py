"""REST schemas of vulnerability feeds, advisories, their matches and curations (SPEC §7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from stockade.web.api.schemas import Strict

FeedFormatLiteral = Literal["osv", "nvd", "cve5", "kev", "epss", "bundle"]
StatusLiteral = Literal["reported", "active", "mitigated", "cleared", "disputed"]
SeverityLiteral = Literal["none", "low", "medium", "high", "critical"]


class FeedCreate(Strict):
    name: str = Field(min_length=1, max_length=128)
    url: str = Field(
        min_length=1, max_length=4096, examples=["file:///srv/advisories", "https://…/feed.json"]
    )
    format: FeedFormatLiteral
    schedule: str = Field(default="0 * * * *", min_length=1, max_length=128, description="cron")
    enabled: bool = True
    check: bool = Field(
        default=True,
        description="check the source first (the file or folder exists, the URL answers with "
        "something of the format); false for a source that is offline on purpose",
    )


class FeedUpdate(Strict):
    url: str | None = Field(default=None, min_length=1, max_length=4096)
    format: FeedFormatLiteral | None = None
    schedule: str | None = Field(default=None, min_length=1, max_length=128)
    enabled: bool | None = None
    check: bool = Field(
        default=True, description="check a new URL or format first, as when adding a feed"
    )


class FeedPublic(BaseModel):
    name: str
    url: str
    format: str
    schedule: str
    enabled: bool
    next_run_at: datetime | None
    last_sync_at: datetime | None
    last_status: str | None = Field(
        description="queued (a sync is asked for or running), ok, partial, unchanged, failed "
        "or unreachable (no answer: host unknown, no connection, timeout)"
    )
    last_error: str | None
    unreachable_since: datetime | None = Field(
        default=None, description="while unreachable: the first attempt that found it so"
    )
    advisories: int = Field(description="advisories stored from this feed")
    created_at: datetime
    href: str


class MatchedPackage(BaseModel):
    """A package version an advisory matches in the channels the caller can read."""

    name: str
    version: str
    status: StatusLiteral = Field(description="the most severe status among its builds")


class VulnerabilitySummary(BaseModel):
    id: str
    aliases: list[str]
    summary: str = Field(
        description="the advisory's summary, else the start of its details (vulns.display)"
    )
    best_score: float | None = Field(
        description="the best score of any record of its alias group (records aliasing it)"
    )
    severity: SeverityLiteral | None
    score_source: str | None = Field(
        default=None, description="the id of the record the score comes from"
    )
    kev: bool
    withdrawn: bool
    published: datetime | None
    modified: datetime | None
    packages: list[MatchedPackage] | None = Field(
        default=None, description="with a channel, package or status filter: what it matched"
    )


class AffectedArtifact(BaseModel):
    channel: str
    subdir: str
    filename: str
    name: str
    version: str
    build: str
    status: StatusLiteral
    status_origin: str = Field(description="auto, curation or security-json")


class VulnerabilityPublic(BaseModel):
    id: str
    source: str
    feed: str | None
    aliases: list[str] = Field(description="its aliases and every id of its alias group")
    group: list[str] = Field(
        default_factory=list,
        description="the stored records that are this one vulnerability (they alias each other)",
    )
    summary: str
    details: str
    published: datetime | None
    modified: datetime | None
    withdrawn: datetime | None
    best_score: float | None = Field(
        description="the best score of any record of its group; its own are under scores"
    )
    severity: SeverityLiteral | None
    score_source: str | None = Field(
        default=None, description="the id of the record the score comes from"
    )
    kev: bool
    epss: float | None
    scores: list[dict[str, Any]]
    cwes: list[str]
    references: list[dict[str, Any]]
    affected: list[dict[str, Any]] = Field(description="affected products and version ranges")
    artifacts: list[AffectedArtifact] = Field(
        description="matched artifacts in the channels the caller can read"
    )


class CurationCreate(Strict):
    package: str = Field(min_length=1, max_length=256)
    version: str = Field(min_length=1, max_length=128)
    builds: str | None = Field(
        default=None, max_length=256, description="fnmatch glob of build strings; none: every build"
    )
    status: StatusLiteral
    note: str = Field(min_length=1, max_length=4000)


class CurationPublic(BaseModel):
    id: int
    vulnerability: str
    package: str
    version: str
    builds: str | None
    status: StatusLiteral
    note: str
    created_by: str | None
    created_at: datetime
