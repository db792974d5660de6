"""Principals and access (SPEC §4): users and service accounts, groups, roles, grants, tokens, sessions.

The foundation uses local users, the built-in roles, personal tokens and web sessions; the identity
issue fills in LDAP/OIDC sources, custom roles and resource/scope tokens on these same tables.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from stockade.core.clock import utcnow
from stockade.db.base import Base, JSONType, UTCDateTime


class User(Base):
    """A human user (``kind='user'``) or a service account (``kind='service'``)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(128), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    display_name: Mapped[str | None] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16), default="user")  # user | service
    source: Mapped[str] = mapped_column(String(16), default="local")  # local | ldap | oidc
    external_id: Mapped[str | None] = mapped_column(String(512))  # LDAP DN, OIDC subject
    password_hash: Mapped[str | None] = mapped_column(String(256))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # no longer read: failed sign-ins are counted per name and address in ``signin_throttle``
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # last seen in the directory
    disabled_reason: Mapped[str | None] = mapped_column(String(256))
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )  # who created a service account

    role_assignments: Mapped[list[RoleAssignment]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16), default="local")  # local | ldap | oidc
    external_id: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (UniqueConstraint("group_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16), default="local")


class Role(Base):
    """Built-in (``everyone``, ``author``, ``admin``) or custom; ``permissions`` maps category to level."""

    __tablename__ = "roles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    builtin: Mapped[bool] = mapped_column(Boolean, default=False)
    permissions: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class RoleAssignment(Base):
    """A role given to a user or to a group (exactly one of the two)."""

    __tablename__ = "role_assignments"
    __table_args__ = (
        UniqueConstraint("role_id", "user_id", "group_id"),
        Index("ix_role_assignments_group", "group_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    role_id: Mapped[int] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(
        String(16), default="local"
    )  # local | ldap | oidc (mapping)
    role: Mapped[Role] = relationship(lazy="joined")
    user: Mapped[User | None] = relationship(back_populates="role_assignments")


class ApiToken(Base):
    """A bearer token. Only the sha256 of the secret is stored; ``prefix`` helps people recognise it.

    ``kind``: ``personal`` (acts as its owner), ``resource`` (levels on listed channels, in
    ``resources``), ``scope`` (``category:action`` scopes, in ``scopes``).
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    kind: Mapped[str] = mapped_column(String(16), default="personal")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    display_prefix: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    resources: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )  # an admin creating a token for a service account

    user: Mapped[User] = relationship(lazy="joined", foreign_keys=[user_id])


class WebSession(Base):
    """A signed-in browser. The cookie holds a random secret; we keep its sha256."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))

    user: Mapped[User] = relationship(lazy="joined")


class ChannelGrant(Base):
    """A grant of ``read``, ``write`` or ``manage`` on a channel to a user or to a group."""

    __tablename__ = "channel_grants"
    __table_args__ = (UniqueConstraint("channel_id", "user_id", "group_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    group_id: Mapped[int | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), index=True
    )
    level: Mapped[str] = mapped_column(String(16))  # read | write | manage
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class SignInFailures(Base):
    """Failed sign-ins, counted in the database so that every process and replica shares them.

    ``key`` is ``ip:ADDRESS`` (the per-address limit per minute) or ``acct:SHA256`` (one account
    name from one address: the 15-minute lock). Names are kept only as hashes: people type
    passwords into the name field.
    """

    __tablename__ = "signin_throttle"

    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    window_started_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuthRevision(Base):
    """A counter (one row) bumped whenever credentials cached by any process may be stale:
    a token revoked, a user disabled or deleted, a password, role or group changed."""

    __tablename__ = "auth_revision"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
