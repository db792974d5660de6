"""The search index: one document per package name of a channel (docs/adr/0016-search-index.md).

A document holds what is searched as text (name, summary, description) and shown in a hit (latest
version, platforms, license), refreshed in the transaction that switches a subdir's published index
(``search/index.py``), so a package is findable exactly when its index is served. Whatever a filter
asks of a build (subdir, license, scan verdict, signature, CVE severity) and the one ``servable``
rule are read from ``artifacts`` at query time, never copied here.

The full-text and trigram structures are not tables SQLAlchemy knows: FTS5 virtual tables (and
their shadow tables) on SQLite, GIN indexes on PostgreSQL, created by migration 0014 in raw SQL and
left out of the drift check (:func:`unmanaged`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from stockade.core.clock import utcnow
from stockade.db.base import Base, UTCDateTime

#: Prefix of every database object the migration creates outside the models.
UNMANAGED_PREFIXES = ("search_fts", "ixr_search_")


def unmanaged(name: str | None) -> bool:
    """True for the FTS5 tables (SQLite) and raw indexes (PostgreSQL) of the search index."""
    return bool(name) and str(name).startswith(UNMANAGED_PREFIXES)


class SearchDocument(Base):
    __tablename__ = "search_documents"
    __table_args__ = (
        UniqueConstraint("channel_id", "name"),
        Index("ix_search_documents_name", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("channels.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    summary: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    latest_version: Mapped[str] = mapped_column(String(128))
    license: Mapped[str | None] = mapped_column(String(256))
    subdirs: Mapped[str] = mapped_column(String(1024))  # space-separated, sorted
    build_count: Mapped[int] = mapped_column(default=0)
    # Full downloads of the name in the channel (sum of ``download_daily.count``), refreshed by the
    # download flusher for each batch's names and by the ``search-refresh`` job for all: a ranking
    # tie-breaker and the "has downloads" filter.
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)
    # Of the servable builds the document was made from; NULL: to be rebuilt (after migration).
    fingerprint: Mapped[str | None] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
