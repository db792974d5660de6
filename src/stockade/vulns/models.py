"""Tables of vulnerability intelligence (SPEC §7): feeds, advisories, the name map, matches, curation.

- :class:`VulnFeed`: a feed URL (``https://`` or ``file://``), its format and schedule, and what the
  last conditional fetch saw (``etag``, ``last_modified``, ``content_sha256``).
- :class:`Vulnerability`: one advisory as the feed stated it, stored by ``vuln_id``. The JSON
  columns use the serialisation of ``vulns.serial`` (round-trips to :class:`vulns.model.Vulnerability`);
  ``digest`` hashes that serialisation, so a re-sync skips unchanged records.
  ``alias_group``, ``group_score``, ``group_severity`` and ``score_source`` are the merged view of
  the records that alias each other (``vulns.aliases``), recomputed whenever one of them changes.
- :class:`VulnAliasId`: every id of an advisory, the index alias groups are found by.
- :class:`VulnTarget`: the conda names an advisory can affect, through the name map; the reverse index
  the incremental matcher reads (new artifact of name ``x``: advisories targeting ``x``).
- :class:`NameMapEntry`: one identifier (a purl or ``vendor:product``) of a conda name, by origin
  (``shipped`` table, package ``metadata``, ``admin``).
- :class:`VulnMatch`: an advisory affecting an artifact, with its curation status and where the
  status came from.
- :class:`Curation`: append-only decisions of curators per advisory, package and version, optionally
  narrowed to builds (an ``fnmatch`` glob).
- :class:`ArtifactVulnSummary`: per-artifact figures (highest score, its severity, most severe
  status, counts per status), kept apart from ``artifacts`` so that table stays lean.
- :class:`VulnState`: one row whose ``revision`` grows whenever advisories, matches or curations
  change; the policy engine's lookup reports it as its data version.
- :class:`VulnEnrichment`: what the CISA KEV catalogue and EPSS say of a CVE id, kept apart from
  the advisories so it applies to an advisory (by id or alias) whichever arrives first.
- :class:`Webhook` and :class:`WebhookDelivery`: a channel's notification endpoints, and an outbox
  of calls written in the same transaction as the change they announce, retried until delivered.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from stockade.core.clock import utcnow
from stockade.db.base import Base, JSONType, UTCDateTime

DEFAULT_FEED_SCHEDULE = "0 * * * *"  # hourly


class FeedFormat(StrEnum):
    OSV = "osv"
    NVD = "nvd"
    CVE5 = "cve5"
    KEV = "kev"  # CISA Known Exploited Vulnerabilities catalogue (enrichment)
    EPSS = "epss"  # FIRST EPSS scores, CSV (enrichment)
    BUNDLE = "bundle"  # Stockade's own cve.zip


class WebhookEvent(StrEnum):
    MATCHED = "vulnerability.matched"  # a new match in the channel
    ACTIVE = "vulnerability.active"  # a match in the channel turned ``active``
    QUARANTINED = "artifact.quarantined"  # a file of the channel got a malicious verdict
    HELD = "artifact.held"  # a suspicious or unjudged file the channel holds
    PING = "ping"  # sent on request, to try an endpoint


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the last attempt


class MatchStatus(StrEnum):
    """SPEC §7 curation statuses; :attr:`rank` orders them from least to most severe."""

    CLEARED = "cleared"
    MITIGATED = "mitigated"
    DISPUTED = "disputed"
    REPORTED = "reported"
    ACTIVE = "active"

    @property
    def rank(self) -> int:
        return list(MatchStatus).index(self)


class StatusOrigin(StrEnum):
    AUTO = "auto"  # matched, nothing else known: ``reported``
    CURATION = "curation"  # a curator's decision covers the artifact
    SECURITY_JSON = "security-json"  # the package's info/security.json lists it as mitigated


class NameOrigin(StrEnum):
    SHIPPED = "shipped"
    METADATA = "metadata"
    ADMIN = "admin"


class VulnFeed(Base):
    __tablename__ = "vuln_feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    url: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    schedule: Mapped[str] = mapped_column(String(128), default=DEFAULT_FEED_SCHEDULE)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[str | None] = mapped_column(String(16))  # ok | unchanged | failed
    last_error: Mapped[str | None] = mapped_column(Text)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Vulnerability(Base):
    __tablename__ = "vulnerabilities"
    __table_args__ = (
        Index("ix_vulnerabilities_severity", "severity", "best_score"),
        Index("ix_vulnerabilities_alias_group", "alias_group"),
        Index("ix_vulnerabilities_group_severity", "group_severity", "group_score"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    vuln_id: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(String(16))  # osv | nvd | cve5
    feed_id: Mapped[int | None] = mapped_column(
        ForeignKey("vuln_feeds.id", ondelete="SET NULL"), index=True
    )
    aliases: Mapped[list[str]] = mapped_column(JSONType, default=list)
    summary: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[str] = mapped_column(Text, default="")
    published: Mapped[datetime | None] = mapped_column(UTCDateTime())
    modified: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn: Mapped[datetime | None] = mapped_column(UTCDateTime())
    scores: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    best_score: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str | None] = mapped_column(String(16))
    cwes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    references: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    affected: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    kev: Mapped[bool] = mapped_column(Boolean, default=False)
    epss: Mapped[float | None] = mapped_column(Float)
    digest: Mapped[str] = mapped_column(String(64))
    # The merged view of its alias group (``vulns.aliases``), kept when records are stored:
    alias_group: Mapped[str] = mapped_column(String(128), default="")  # the group's primary id
    group_score: Mapped[float | None] = mapped_column(Float)  # the best score of any member
    group_severity: Mapped[str | None] = mapped_column(String(16))
    score_source: Mapped[str | None] = mapped_column(String(128))  # the member it came from
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class VulnTarget(Base):
    __tablename__ = "vuln_targets"
    __table_args__ = (
        UniqueConstraint("vulnerability_id", "conda_name"),
        Index("ix_vuln_targets_conda_name", "conda_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    vulnerability_id: Mapped[int] = mapped_column(
        ForeignKey("vulnerabilities.id", ondelete="CASCADE")
    )
    conda_name: Mapped[str] = mapped_column(String(256))


class VulnAliasId(Base):
    """Every id of a live advisory (its own and its aliases, upper-cased): how alias groups are
    found without reading the JSON of every record (``vulns.aliases``)."""

    __tablename__ = "vuln_alias_ids"
    __table_args__ = (Index("ix_vuln_alias_ids_alias", "alias"),)

    vulnerability_id: Mapped[int] = mapped_column(
        ForeignKey("vulnerabilities.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)


class NameMapEntry(Base):
    __tablename__ = "vuln_name_map"
    __table_args__ = (UniqueConstraint("conda_name", "identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    conda_name: Mapped[str] = mapped_column(String(256))
    identifier: Mapped[str] = mapped_column(String(512))  # pkg:... purl, or vendor:product
    origin: Mapped[str] = mapped_column(String(16))  # shipped | metadata | admin
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class VulnMatch(Base):
    __tablename__ = "vuln_matches"
    __table_args__ = (
        UniqueConstraint("vulnerability_id", "artifact_id"),
        Index("ix_vuln_matches_artifact", "artifact_id", "status"),
        Index("ix_vuln_matches_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    vulnerability_id: Mapped[int] = mapped_column(
        ForeignKey("vulnerabilities.id", ondelete="CASCADE")
    )
    artifact_id: Mapped[int] = mapped_column(ForeignKey("artifacts.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=MatchStatus.REPORTED.value)
    status_origin: Mapped[str] = mapped_column(String(16), default=StatusOrigin.AUTO.value)
    matched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Curation(Base):
    """One decision; never updated. The latest (``created_at``, then id) whose selector covers a
    build wins; decisions imported from a ``cve.zip`` keep the time they were made."""

    __tablename__ = "vuln_curations"
    __table_args__ = (
        Index("ix_vuln_curations_selector", "vulnerability_id", "package", "version"),
        Index("ix_vuln_curations_package", "package", "version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    vulnerability_id: Mapped[int] = mapped_column(
        ForeignKey("vulnerabilities.id", ondelete="CASCADE")
    )
    package: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(128))
    builds: Mapped[str | None] = mapped_column(String(256))  # fnmatch glob; None: every build
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ArtifactVulnSummary(Base):
    """Per artifact; no row means no match. ``counts`` maps each status to its number of matches."""

    __tablename__ = "artifact_vuln_summaries"
    __table_args__ = (Index("ix_artifact_vuln_summaries_score", "max_score"),)

    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    max_score: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str | None] = mapped_column(String(16))
    worst_status: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, int]] = mapped_column(JSONType, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class VulnState(Base):
    """A single row (id 1); ``revision`` grows with every change that can alter a lookup answer."""

    __tablename__ = "vuln_state"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class VulnEnrichment(Base):
    """KEV and EPSS figures of one CVE id; applied to advisories whose id or aliases name it."""

    __tablename__ = "vuln_enrichments"

    cve_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kev: Mapped[bool] = mapped_column(Boolean, default=False)
    kev_date_added: Mapped[str | None] = mapped_column(String(32))
    kev_due_date: Mapped[str | None] = mapped_column(String(32))
    kev_ransomware: Mapped[str | None] = mapped_column(String(32))
    epss: Mapped[float | None] = mapped_column(Float)
    epss_percentile: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Webhook(Base):
    """An endpoint a channel's owners registered; the secret signs each call (stored encrypted)."""

    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(Text)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One call to make (the outbox): written with the change it announces, sent after commit."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    delivery_id: Mapped[str] = mapped_column(String(36), unique=True)  # uuid4, sent as a header
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
