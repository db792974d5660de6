"""Stored policies and where they apply (SPEC §6).

A policy row holds its definition as the JSON shape of :class:`stockade.policies.model.Policy`
(``Policy.from_dict``), so the engine's validation is the only one. An assignment binds a policy to a
channel (bounding every mirror of that channel) or to one mirror.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stockade.core.clock import utcnow
from stockade.db.base import Base, JSONType, UTCDateTime


class PolicyRow(Base):
    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class PolicyAssignment(Base):
    """A policy applied to a channel (``channel_id``) or to one mirror (``mirror_id``), not both."""

    __tablename__ = "policy_assignments"
    __table_args__ = (
        UniqueConstraint("policy_id", "channel_id"),
        UniqueConstraint("policy_id", "mirror_id"),
        CheckConstraint("(channel_id IS NULL) <> (mirror_id IS NULL)", name="one_target"),
        Index("ix_policy_assignments_channel", "channel_id"),
        Index("ix_policy_assignments_mirror", "mirror_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("policies.id", ondelete="CASCADE"))
    channel_id: Mapped[int | None] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    mirror_id: Mapped[int | None] = mapped_column(ForeignKey("mirrors.id", ondelete="CASCADE"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
