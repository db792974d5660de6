"""download tracking: raw download rows and daily counts per file

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import stockade.db.base

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "download_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("occurred_at", stockade.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("principal_name", sa.String(length=256), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("token_id", sa.Integer(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=512), nullable=False),
        sa.Column("subdir", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.String(length=128), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_download_events")),
    )
    op.create_index(
        "ix_download_events_occurred_at", "download_events", ["occurred_at"], unique=False
    )
    op.create_index(
        "ix_download_events_channel_time",
        "download_events",
        ["channel_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_download_events_channel_name", "download_events", ["channel_id", "name"], unique=False
    )
    op.create_index(
        "ix_download_events_principal", "download_events", ["principal_name"], unique=False
    )
    op.create_table(
        "download_daily",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel_id", sa.Integer(), nullable=False),
        sa.Column("subdir", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.String(length=512), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day", "channel_id", "subdir", "filename", "name", name=op.f("pk_download_daily")
        ),
    )
    op.create_index(
        "ix_download_daily_channel_name", "download_daily", ["channel_id", "name"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_download_daily_channel_name", table_name="download_daily")
    op.drop_table("download_daily")
    op.drop_index("ix_download_events_principal", table_name="download_events")
    op.drop_index("ix_download_events_channel_name", table_name="download_events")
    op.drop_index("ix_download_events_channel_time", table_name="download_events")
    op.drop_index("ix_download_events_occurred_at", table_name="download_events")
    op.drop_table("download_events")
