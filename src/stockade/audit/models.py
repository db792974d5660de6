"""The audit event log (SPEC §10): append-only, hash-chained rows.

Each event carries ``seq`` (gapless, unique) and ``hash = sha256(prev_hash + canonical event)``, so
removing, reordering or editing any event breaks the chain at that point (``stockade audit verify``).
Triggers created by the migration refuse ``UPDATE`` and ``DELETE`` on this table.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from stockade.db.base import Base, JSONType, UTCDateTime


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_actor", "actor_name"),
        Index("ix_audit_events_type", "event_type"),
        Index("ix_audit_events_target", "target_type", "target_name"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event_type: Mapped[str] = mapped_column(String(64))  # noun.verb: auth.login, token.create...
    outcome: Mapped[str] = mapped_column(
        String(16), default="success"
    )  # success | failure | denied
    actor_id: Mapped[int | None] = mapped_column()
    actor_name: Mapped[str] = mapped_column(String(256))
    actor_kind: Mapped[str] = mapped_column(String(16))  # user | service | anonymous | system
    token_id: Mapped[int | None] = mapped_column()
    via: Mapped[str | None] = mapped_column(String(16))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(64))
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    target_name: Mapped[str | None] = mapped_column(String(512))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
