"""Content-trust tables: public metadata and the signatures made of records (never private keys)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stockade.core.clock import utcnow
from stockade.db.base import Base, UTCDateTime


class TrustMetadata(Base):
    """One version of ``root`` or ``key_mgr`` metadata, stored as the exact bytes served.

    Every root version stays (``N.root.json`` is how clients chain to the newest); the newest
    key_mgr is the one served as ``key_mgr.json``.
    """

    __tablename__ = "trust_metadata"
    __table_args__ = (UniqueConstraint("role", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(String(16))  # root | key_mgr
    version: Mapped[int] = mapped_column()
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RecordSignature(Base):
    """A pkg_mgr signature of one record, by the record bytes it covers.

    ``digest`` is a BLAKE2b-128 of the record as served (stored bytes after patches): a
    publication finds the signatures of unchanged records without serializing them again, and a
    rotated pkg_mgr key simply finds none (its records are signed again).
    """

    __tablename__ = "record_signatures"

    pubkey: Mapped[str] = mapped_column(String(64), primary_key=True)
    digest: Mapped[str] = mapped_column(String(32), primary_key=True)
    signature: Mapped[str] = mapped_column(String(128))
