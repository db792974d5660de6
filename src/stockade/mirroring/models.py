"""Mirrors, their runs (state, steps, counts, log) and what each run last saw upstream (SPEC §5).

A run is a row whose ``state`` moves ``pending`` → ``running`` → ``completed`` | ``failed`` |
``stopped``. At most one run per mirror is pending or running: a partial unique index says so, so
two replicas asking at once get one run and a conflict. A running run carries a lease
(``lease_owner``, ``heartbeat_at``); a run whose heartbeat is stale was left by a dead worker and is
taken over by the next attempt, which resumes (blobs already stored are not downloaded again).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from stockade.core.clock import utcnow
from stockade.db.base import Base, JSONType, UTCDateTime

DEFAULT_SCHEDULE = "0 0 * * *"


class MirrorMode(StrEnum):
    ACTIVE = "active"  # download every kept file during the run
    PASSIVE = "passive"  # publish kept records; fetch each file on its first request


class RunState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


ACTIVE_STATES = (RunState.PENDING.value, RunState.RUNNING.value)
FINAL_STATES = frozenset({RunState.COMPLETED, RunState.FAILED, RunState.STOPPED})


class Mirror(Base):
    __tablename__ = "mirrors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    channel_id: Mapped[int] = mapped_column(
        ForeignKey("channels.id", ondelete="CASCADE"), index=True
    )
    source_url: Mapped[str] = mapped_column(Text)
    # Sent upstream, so it cannot be hashed: encrypted with the server's secret key (SecretBox).
    source_token_enc: Mapped[str | None] = mapped_column(Text)
    # The origin (scheme://host:port) the token was given for: it is sent there only, and
    # dropped when the source moves to another origin or the proxy changes (docs/adr/0010).
    source_token_origin: Mapped[str | None] = mapped_column(Text)
    mode: Mapped[str] = mapped_column(String(16), default=MirrorMode.PASSIVE.value)
    subdirs: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # None: manual runs only. (No column default: an explicit None must stay None.)
    schedule: Mapped[str | None] = mapped_column(String(128))
    proxy: Mapped[str | None] = mapped_column(Text)  # without credentials
    # The proxy's ``user:password`` (percent-encoded), encrypted like the token.
    proxy_auth_enc: Mapped[str | None] = mapped_column(Text)
    ca_bundle: Mapped[str | None] = mapped_column(Text)
    concurrency: Mapped[int] = mapped_column(default=8)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Dependency-confusion guard: local channels whose package names this mirror never takes
    # (besides its own channel), and the names an admin allowed anyway.
    companions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    allowed_names: Mapped[list[str]] = mapped_column(JSONType, default=list)
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Content trust of the upstream (SPEC §8): the upstream's root metadata an admin trusts, and
    # where its key_mgr.json is (default: the source URL's channel root).
    trusted_root: Mapped[bytes | None] = mapped_column(LargeBinary)
    signing_metadata_url: Mapped[str | None] = mapped_column(Text)
    # What the last run fetched of the upstream's trust metadata (root updates, key_mgr.json, or
    # why not): dry runs and explain check records with it again, never fetching
    # (``signing.upstream.stored_trust``).
    upstream_trust: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class MirrorRun(Base):
    __tablename__ = "mirror_runs"
    __table_args__ = (
        Index("ix_mirror_runs_mirror", "mirror_id", "id"),
        Index("ix_mirror_runs_state", "state"),
        Index(
            "uq_mirror_runs_one_active",
            "mirror_id",
            unique=True,
            sqlite_where=text("state IN ('pending', 'running')"),
            postgresql_where=text("state IN ('pending', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    mirror_id: Mapped[int] = mapped_column(ForeignKey("mirrors.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default=RunState.PENDING.value)
    trigger: Mapped[str] = mapped_column(String(16), default="manual")  # manual | schedule
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    attempt: Mapped[int] = mapped_column(default=0)
    stop_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    summary: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class MirrorRunLog(Base):
    __tablename__ = "mirror_run_logs"
    __table_args__ = (Index("ix_mirror_run_logs_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    run_id: Mapped[int] = mapped_column(ForeignKey("mirror_runs.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(8), default="info")  # info | warning | error
    message: Mapped[str] = mapped_column(Text)


class MirrorSubdirState(Base):
    """What the last run saw of one upstream subdir, and what it made of it.

    ``raw_sha256`` is the upstream repodata as fetched (kept as a blob: dry runs and explain read it
    without the network). ``fingerprint`` digests every input of the last completed apply (upstream
    bytes, policies, guard names, mirror settings); an unchanged fingerprint before ``valid_until``
    (when a cooldown lets a record in) means there is nothing to do. ``exclusions_sha256`` is a blob
    with every excluded filename and its reasons.
    """

    __tablename__ = "mirror_subdir_states"
    __table_args__ = (UniqueConstraint("mirror_id", "subdir"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mirror_id: Mapped[int] = mapped_column(ForeignKey("mirrors.id", ondelete="CASCADE"))
    subdir: Mapped[str] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(String(512))
    last_modified: Mapped[str | None] = mapped_column(String(128))
    variant: Mapped[str | None] = mapped_column(String(32))
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    base_url: Mapped[str | None] = mapped_column(Text)
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    exclusions_sha256: Mapped[str | None] = mapped_column(String(64))
    upstream_count: Mapped[int] = mapped_column(default=0)
    kept_count: Mapped[int] = mapped_column(default=0)
