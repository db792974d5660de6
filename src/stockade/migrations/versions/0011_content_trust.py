"""content trust: trust metadata, record signatures, signed channels, upstream signature state

Self-contained (no application models). Plain ADD COLUMN, never a batch rebuild of ``artifacts``
(see 0010: a SQLite rebuild would cascade away the rows that reference it).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 23:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import stockade.db.base

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = stockade.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "trust_metadata",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("role", "version"),
    )
    op.create_table(
        "record_signatures",
        sa.Column("pubkey", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("pubkey", "digest"),
    )
    op.add_column(
        "channels", sa.Column("sign", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.add_column("artifacts", sa.Column("signature_status", sa.String(16), nullable=True))
    op.add_column("artifacts", sa.Column("signature_detail", sa.Text(), nullable=True))
    op.create_index(
        "ix_artifacts_channel_signature",
        "artifacts",
        ["channel_id", "subdir", "signature_status"],
    )
    op.add_column(
        "subdir_indexes",
        sa.Column("signing_done", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "subdir_indexes",
        sa.Column("signing_total", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("mirrors", sa.Column("trusted_root", sa.LargeBinary(), nullable=True))
    op.add_column("mirrors", sa.Column("signing_metadata_url", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("mirrors", "signing_metadata_url")
    op.drop_column("mirrors", "trusted_root")
    op.drop_column("subdir_indexes", "signing_total")
    op.drop_column("subdir_indexes", "signing_done")
    op.drop_index("ix_artifacts_channel_signature", table_name="artifacts")
    op.drop_column("artifacts", "signature_detail")
    op.drop_column("artifacts", "signature_status")
    op.drop_column("channels", "sign")
    op.drop_table("record_signatures")
    op.drop_table("trust_metadata")
