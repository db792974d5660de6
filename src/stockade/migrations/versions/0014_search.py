"""search index: one document per package name of a channel, with full text and trigrams

SQLite: two FTS5 tables over ``search_documents`` (external content, kept by triggers): words of
name, summary and description (porter stemming), and the name's trigrams (substring and fuzzy
names). PostgreSQL: a stored weighted tsvector column with a GIN index, and a pg_trgm GIN index on
the name (pg_trgm is a trusted extension: the database owner may create it). These objects are
named ``search_fts*`` / ``ixr_search_*`` and left out of the drift check (migrations/env.py).

Documents of what is already served are inserted here from ``artifacts`` with no fingerprint; the
``search-refresh`` recurring job rebuilds them properly (latest version by conda ordering, the
package's description).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import stockade.db.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_UP = [
    "CREATE VIRTUAL TABLE search_fts USING fts5(name, summary, description, "
    "content='search_documents', content_rowid='id', tokenize='porter unicode61')",
    "CREATE VIRTUAL TABLE search_fts_names USING fts5(name, "
    "content='search_documents', content_rowid='id', tokenize='trigram')",
    """CREATE TRIGGER search_fts_insert AFTER INSERT ON search_documents BEGIN
      INSERT INTO search_fts(rowid, name, summary, description)
        VALUES (new.id, new.name, new.summary, new.description);
      INSERT INTO search_fts_names(rowid, name) VALUES (new.id, new.name);
    END""",
    """CREATE TRIGGER search_fts_delete AFTER DELETE ON search_documents BEGIN
      INSERT INTO search_fts(search_fts, rowid, name, summary, description)
        VALUES ('delete', old.id, old.name, old.summary, old.description);
      INSERT INTO search_fts_names(search_fts_names, rowid, name)
        VALUES ('delete', old.id, old.name);
    END""",
    """CREATE TRIGGER search_fts_update AFTER UPDATE OF name, summary, description
    ON search_documents BEGIN
      INSERT INTO search_fts(search_fts, rowid, name, summary, description)
        VALUES ('delete', old.id, old.name, old.summary, old.description);
      INSERT INTO search_fts_names(search_fts_names, rowid, name)
        VALUES ('delete', old.id, old.name);
      INSERT INTO search_fts(rowid, name, summary, description)
        VALUES (new.id, new.name, new.summary, new.description);
      INSERT INTO search_fts_names(rowid, name) VALUES (new.id, new.name);
    END""",
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS search_fts_update",
    "DROP TRIGGER IF EXISTS search_fts_delete",
    "DROP TRIGGER IF EXISTS search_fts_insert",
    "DROP TABLE IF EXISTS search_fts_names",
    "DROP TABLE IF EXISTS search_fts",
]
_PG_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """ALTER TABLE search_documents ADD COLUMN search_fts_tsv tsvector GENERATED ALWAYS AS (
      setweight(to_tsvector('english'::regconfig, name), 'A')
      || setweight(to_tsvector('english'::regconfig, coalesce(summary, '')), 'B')
      || setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')
    ) STORED""",
    "CREATE INDEX ixr_search_documents_tsv ON search_documents USING gin (search_fts_tsv)",
    "CREATE INDEX ixr_search_documents_name_trgm ON search_documents USING gin (name gin_trgm_ops)",
]
_BACKFILL = """INSERT INTO search_documents (channel_id, name, summary, latest_version, license,
    subdirs, build_count, downloads, updated_at)
  SELECT channel_id, name, max(summary), max(version), max(license), '', count(*), 0,
    CURRENT_TIMESTAMP
  FROM artifacts WHERE servable GROUP BY channel_id, name"""


def upgrade() -> None:
    op.create_table(
        "search_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("latest_version", sa.String(length=128), nullable=False),
        sa.Column("license", sa.String(length=256), nullable=True),
        sa.Column("subdirs", sa.String(length=1024), nullable=False),
        sa.Column("build_count", sa.Integer(), nullable=False),
        sa.Column("downloads", sa.BigInteger(), nullable=False),
        sa.Column("fingerprint", sa.String(length=40), nullable=True),
        sa.Column("updated_at", stockade.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["channel_id"],
            ["channels.id"],
            name=op.f("fk_search_documents_channel_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_documents")),
        sa.UniqueConstraint("channel_id", "name", name=op.f("uq_search_documents_channel_id_name")),
    )
    op.create_index("ix_search_documents_name", "search_documents", ["name"], unique=False)
    statements = _PG_UP if op.get_bind().dialect.name == "postgresql" else _SQLITE_UP
    for statement in statements:
        op.execute(statement)
    op.execute(_BACKFILL)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for statement in _SQLITE_DOWN:
            op.execute(statement)
    op.drop_index("ix_search_documents_name", table_name="search_documents")
    op.drop_table("search_documents")
