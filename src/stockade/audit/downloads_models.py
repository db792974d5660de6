"""Download records (SPEC §10): every package file served, and daily counts per file.

``download_events`` is its own append-only table, not part of the hash-chained audit log: chaining
each download would serialise serving on one row lock. The recorder (``audit/downloads.py``)
buffers rows in memory and a background flusher writes them in batches, one transaction per batch,
adding to ``download_daily`` in the same transaction.

Neither table has foreign keys: a channel, user or token deleted between a download and its flush
must not make the whole batch fail, and the history outlives what it names (``channel`` and
``principal_name`` keep the names as they were).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from stockade.db.base import Base, UTCDateTime

_BIGINT_ID = BigInteger().with_variant(Integer(), "sqlite")


class DownloadEvent(Base):
    """One response to a package file request (200, 206, 304, 416…), kept per retention."""

    __tablename__ = "download_events"
    __table_args__ = (
        Index("ix_download_events_occurred_at", "occurred_at"),
        Index("ix_download_events_channel_time", "channel_id", "occurred_at"),
        Index("ix_download_events_channel_name", "channel_id", "name"),
        Index("ix_download_events_principal", "principal_name"),
    )

    id: Mapped[int] = mapped_column(_BIGINT_ID, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    principal_name: Mapped[str] = mapped_column(String(256))  # "anonymous" for anonymous
    user_id: Mapped[int | None] = mapped_column()
    token_id: Mapped[int | None] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    channel_id: Mapped[int] = mapped_column()
    channel: Mapped[str] = mapped_column(String(512))
    subdir: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(512))
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[str] = mapped_column(String(128))
    sha256: Mapped[str | None] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[int] = mapped_column(SmallInteger)
    request_id: Mapped[str | None] = mapped_column(String(64))


class DownloadDaily(Base):
    """Downloads of one file on one UTC day: ``count`` full downloads (status 200) and ``bytes``
    sent (200 and 206). Additive upserts, so any number of processes may flush into it."""

    __tablename__ = "download_daily"
    __table_args__ = (Index("ix_download_daily_channel_name", "channel_id", "name"),)

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    channel_id: Mapped[int] = mapped_column(primary_key=True)
    subdir: Mapped[str] = mapped_column(String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(String(512), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
