"""Channels, artifacts, patches and the published state of each subdir (SPEC §2, §3).

Later issues hang mirrors, policies, scans, signatures and vulnerability matches off ``channels``
and ``artifacts``; the columns they need on these two tables are already here (``kind``,
``source``, ``scan_status``, ``signature``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from stockade.auth.models import User
from stockade.core.clock import utcnow
from stockade.db.base import Base, JSONType, UTCDateTime


class Channel(Base):
    __tablename__ = "channels"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(512), unique=True)  # full path: parent/child
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    description: Mapped[str | None] = mapped_column(Text)
    privacy: Mapped[str] = mapped_column(String(16), default="public")
    kind: Mapped[str] = mapped_column(String(16), default="local")  # local | mirror
    frozen: Mapped[bool] = mapped_column(Boolean, default=False)
    channeldata_sha256: Mapped[str | None] = mapped_column(String(64))
    # The rebuild of channeldata.json, an intent row (``channels/publication_channeldata.py``):
    # asked for in the transaction that switches a subdir's index in (when the oldest request not
    # yet built was made), cleared when a rebuild commits; one publisher at a time rebuilds it,
    # under the lease, not before ``channeldata_next_at`` (the rate limit after a build that took
    # ``channeldata_build_ms``).
    channeldata_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    channeldata_next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # a server default: added to the table without rebuilding it (SQLite), triggers and all
    channeldata_build_ms: Mapped[int] = mapped_column(default=0, server_default="0")
    channeldata_lease_owner: Mapped[str | None] = mapped_column(String(64))
    channeldata_lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Malware scanning (SPEC §8, ``channels/scanstate.py``): what a new upload is until its verdict
    # (``hold`` or ``serve-first`` for trusted CI), and whether suspicious files and files the
    # scanners could not judge are served or held.
    scan_uploads: Mapped[str] = mapped_column(String(16), default="hold")
    scan_suspicious: Mapped[str] = mapped_column(String(16), default="serve")
    scan_errors: Mapped[str] = mapped_column(String(16), default="hold")
    notices_sha256: Mapped[str | None] = mapped_column(String(64))
    # Content trust (SPEC §8): every record the channel serves carries a pkg_mgr signature.
    sign: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    owner: Mapped[User | None] = relationship(lazy="joined")


class PackageContent(Base):
    """What we read from a package's ``info/`` once, keyed by the archive's sha256.

    Shared by every artifact with the same bytes (copies between channels, mirrors).
    """

    __tablename__ = "package_contents"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    index_json: Mapped[dict[str, Any]] = mapped_column(JSONType)
    about_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    run_exports_json: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    paths_json: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    link_scripts: Mapped[list[str]] = mapped_column(JSONType, default=list)
    unpacked_size: Mapped[int] = mapped_column(BigInteger, default=0)
    # ``vulns_mitigated`` of info/security.json; None: read before it was kept (look in the blob)
    vulns_mitigated: Mapped[list[str] | None] = mapped_column(JSONType)


class Artifact(Base):
    """One package file in one channel subdir. ``record_json`` is the published record, canonical."""

    __tablename__ = "artifacts"
    __table_args__ = (
        UniqueConstraint("channel_id", "subdir", "filename"),
        Index("ix_artifacts_name", "name"),
        Index("ix_artifacts_channel_name", "channel_id", "name"),
        Index("ix_artifacts_sha256", "sha256"),
        # What a mirror run asks of its channel each time: names not brought by a mirror (the
        # dependency-confusion guard) and malicious files, without reading every row.
        Index("ix_artifacts_channel_source_name", "channel_id", "source", "name"),
        Index("ix_artifacts_channel_scan", "channel_id", "scan_status"),
        Index("ix_artifacts_channel_servable", "channel_id", "subdir", "servable"),
        # a publication looks up the kept upstream signatures of its subdir (few or none)
        Index("ix_artifacts_channel_signature", "channel_id", "subdir", "signature_status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    subdir: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(512))
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(128))
    build: Mapped[str] = mapped_column(String(256))
    build_number: Mapped[int] = mapped_column(default=0)
    format: Mapped[str] = mapped_column(String(8))  # conda | tar.bz2
    sha256: Mapped[str] = mapped_column(String(64))
    md5: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(BigInteger)
    record_json: Mapped[bytes] = mapped_column(LargeBinary)
    timestamp_ms: Mapped[int | None] = mapped_column(BigInteger)
    indexed_timestamp: Mapped[int] = mapped_column(BigInteger)
    license: Mapped[str | None] = mapped_column(String(256))
    summary: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="upload")  # upload|copy|mirror|import
    uploaded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The mirror a mirrored record came from (``source == "mirror"``); its file may not be stored
    # yet (passive mode fetches it on first request).
    mirror_id: Mapped[int | None] = mapped_column(
        ForeignKey("mirrors.id", ondelete="SET NULL"), index=True
    )
    scan_status: Mapped[str] = mapped_column(String(16), default="pending")  # ScanStatus
    # The one rule every read path asks (``channels/scanstate.py`` keeps it up to date): whether
    # the record may be listed in an index and its file downloaded.
    servable: Mapped[bool] = mapped_column(Boolean, default=False)
    # The upstream's ``signatures`` entry of a mirrored record ({pubkey: {"signature": hex}}),
    # kept while the record is what upstream signed; ``signature_status`` says what it proves
    # (``signing/upstream.py``: verified, unverified, invalid, dropped) and ``signature_detail``
    # why.
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    signature_status: Mapped[str | None] = mapped_column(String(16))
    signature_detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RepodataPatch(Base):
    """A hot-fix for one filename of a subdir, re-applied on every publication.

    ``changes`` sets record fields (a ``null`` value deletes the field), ``revoked`` marks the build
    revoked, ``removed`` moves it to the ``removed`` list.
    """

    __tablename__ = "repodata_patches"
    __table_args__ = (UniqueConstraint("channel_id", "subdir", "filename"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    subdir: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(512))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SubdirIndex(Base):
    """The published index of one channel subdir, switched atomically in one row update.

    Writers bump ``requested_rev``; the publisher builds files for it and, in one transaction,
    points the ``*_sha256`` columns at the new blobs and sets ``published_rev``.
    """

    __tablename__ = "subdir_indexes"
    __table_args__ = (UniqueConstraint("channel_id", "subdir"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    subdir: Mapped[str] = mapped_column(String(64))
    requested_rev: Mapped[int] = mapped_column(BigInteger, default=1)
    published_rev: Mapped[int] = mapped_column(BigInteger, default=0)
    # When the first request not yet published was made (``channels/publishing.py``); cleared by
    # the publication that covers every request. The publication latency is measured from it.
    requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    repodata_sha256: Mapped[str | None] = mapped_column(String(64))
    repodata_zst_sha256: Mapped[str | None] = mapped_column(String(64))
    repodata_bz2_sha256: Mapped[str | None] = mapped_column(String(64))
    shard_index_sha256: Mapped[str | None] = mapped_column(String(64))
    run_exports_sha256: Mapped[str | None] = mapped_column(String(64))
    record_count: Mapped[int] = mapped_column(default=0)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))  # informational: who publishes
    # The last publication that failed (cleared by the next success): why, which revision, how
    # many times in a row, and when the publisher tries again (backing off); a newer change
    # (``requested_rev > failed_rev``) is tried at once.
    failure: Mapped[str | None] = mapped_column(Text)
    failed_rev: Mapped[int | None] = mapped_column(BigInteger)
    failures: Mapped[int] = mapped_column(default=0)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What the last publication had to leave out to publish at all (stored patches it skipped).
    warnings: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # Signing of a signed channel's records: how many of this publication's records are signed
    # so far, of how many (live while a publication signs; a whole channel signs once).
    signing_done: Mapped[int] = mapped_column(default=0)
    signing_total: Mapped[int] = mapped_column(default=0)


class SubdirShard(Base):
    """A CEP 16 shard of one package name in a subdir, with a fingerprint of its input.

    The current shard of a name has ``retired_at`` unset. Superseded shards stay servable for a
    while (clients cache the shard index) and are purged after ``SHARD_GRACE``.
    """

    __tablename__ = "subdir_shards"
    __table_args__ = (
        Index("ix_subdir_shards_lookup", "subdir_index_id", "shard_sha256"),
        Index("ix_subdir_shards_name", "subdir_index_id", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subdir_index_id: Mapped[int] = mapped_column(
        ForeignKey("subdir_indexes.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(256))
    fingerprint: Mapped[str] = mapped_column(String(64))
    shard_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Notice(Base):
    """A message broadcast to every conda user of a channel (conda's ``notices.json``)."""

    __tablename__ = "notices"

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    message: Mapped[str] = mapped_column(Text)
    level: Mapped[str] = mapped_column(String(16), default="info")  # info | warning | critical
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ScanRequest(Base):
    """An intent row: this artifact must be scanned (written in the transaction that admitted it).

    The scanner claims a row with a lease (``leased_until``), so a crash leaves the row to be taken
    again; the row is deleted in the transaction that records the verdict.
    """

    __tablename__ = "scan_requests"

    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(String(32))  # ScanReason
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))


class MatchRequest(Base):
    """An intent row: this artifact must be matched against the stored advisories (written in
    the transaction that admitted it, ``channels.intake``).

    The queued match job is the fast path; a loop (``vulns.match_requests``) takes the rows the
    job never did (a lost queue message, a killed worker) once their lease is free. The row is
    deleted in the transaction that writes the artifact's matches.
    """

    __tablename__ = "match_requests"

    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
