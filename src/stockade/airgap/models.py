"""Air-gap tables: the bundles this server exported, and the bundles it imported or refused."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from stockade.core.clock import utcnow
from stockade.db.base import Base, JSONType, UTCDateTime


class ImportState(StrEnum):
    APPLIED = "applied"
    REFUSED = "refused"


class AirgapEvent(StrEnum):
    """Audit event types of air-gap work."""

    EXPORT = "airgap:export"
    APPLY = "airgap:apply"
    REFUSE = "airgap:refuse"


class BundleKind(StrEnum):
    PACKAGES = "packages"
    CVE = "cve"


class AirgapExport(Base):
    """A package bundle made here. Its manifest (the file list, every sha256) and the set of
    files the other side has once it is applied (``covered``: what an incremental bundle made
    from this one leaves out) are blobs; the signature is small and kept here."""

    __tablename__ = "airgap_exports"

    id: Mapped[int] = mapped_column(primary_key=True)
    bundle_id: Mapped[str] = mapped_column(String(40), unique=True)
    parent_id: Mapped[str | None] = mapped_column(String(40))
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    channel_name: Mapped[str] = mapped_column(String(300))
    subdirs: Mapped[list[str]] = mapped_column(JSONType)
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    covered_sha256: Mapped[str] = mapped_column(String(64))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    files: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class AirgapImport(Base):
    """A bundle taken from the air-gap folder: applied (by a mirror run, or by the CVE bundle
    feed) or refused, with why. A package bundle is applied at most once per mirror."""

    __tablename__ = "airgap_imports"
    __table_args__ = (Index("ix_airgap_imports_mirror_bundle", "mirror_id", "bundle_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default=BundleKind.PACKAGES)
    bundle_id: Mapped[str | None] = mapped_column(String(40))
    parent_id: Mapped[str | None] = mapped_column(String(40))
    mirror_id: Mapped[int | None] = mapped_column(ForeignKey("mirrors.id", ondelete="CASCADE"))
    file_name: Mapped[str] = mapped_column(String(300))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    code: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str | None] = mapped_column(String(300))
    created: Mapped[str | None] = mapped_column(String(40))  # as the manifest says
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    run_id: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
