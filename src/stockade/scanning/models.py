"""Scan results, releases and admins' own rules (SPEC §8)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stockade.core.clock import utcnow
from stockade.db.base import Base, JSONType, UTCDateTime


class ArtifactScan(Base):
    """The last scan of one artifact: its verdict, findings and the scanners' versions.

    ``fingerprint`` is a hash of the scanners' versions (their code and rules): a result with
    another fingerprint than the current one is out of date and the artifact is rescanned. A
    release (``released_*``) holds for the fingerprint it was made under: a rescan with the same
    rules keeps the artifact released, new rules judge it again.
    """

    __tablename__ = "artifact_scans"
    __table_args__ = (
        Index("ix_artifact_scans_sha_fp", "sha256", "fingerprint"),
        Index("ix_artifact_scans_fingerprint", "fingerprint"),
    )

    artifact_id: Mapped[int] = mapped_column(
        ForeignKey("artifacts.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(16))  # clean | suspicious | malicious | error
    findings: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    errors: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    versions: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    fingerprint: Mapped[str] = mapped_column(String(64))
    scanned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    duration_ms: Mapped[int] = mapped_column(default=0)
    bytes_read: Mapped[int] = mapped_column(default=0)
    released_fingerprint: Mapped[str | None] = mapped_column(String(64))
    release_note: Mapped[str | None] = mapped_column(Text)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ScanRule(Base):
    """An admin's own YARA rule set, compiled with the shipped rules."""

    __tablename__ = "scan_rules"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    source: Mapped[str] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
