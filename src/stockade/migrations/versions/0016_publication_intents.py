"""publication intents: channeldata.json rebuilds asked for in the database; request times

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 11:45:00.000000
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

import stockade.db.base

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "channeldata_requested_at",
                stockade.db.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "channeldata_next_at", stockade.db.base.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column("channeldata_build_ms", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("channeldata_lease_owner", sa.String(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "channeldata_lease_until",
                stockade.db.base.UTCDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(
            batch_op.f("ix_channels_channeldata_requested_at"),
            ["channeldata_requested_at"],
            unique=False,
        )
    with op.batch_alter_table("subdir_indexes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("requested_at", stockade.db.base.UTCDateTime(timezone=True), nullable=True)
        )
    _backfill()


def _backfill() -> None:
    """Publications waiting now were asked for at the latest now; and every channel with a
    published index gets its channeldata.json rebuilt once (a rebuild the old publisher kept in
    memory was lost when it stopped)."""
    now = datetime.now(UTC)
    when = stockade.db.base.UTCDateTime(timezone=True)
    subdirs = sa.table(
        "subdir_indexes",
        sa.column("channel_id", sa.Integer),
        sa.column("requested_rev", sa.BigInteger),
        sa.column("published_rev", sa.BigInteger),
        sa.column("requested_at", when),
    )
    channels = sa.table(
        "channels", sa.column("id", sa.Integer), sa.column("channeldata_requested_at", when)
    )
    op.execute(
        subdirs.update()
        .where(subdirs.c.requested_rev > subdirs.c.published_rev)
        .values(requested_at=now)
    )
    published = sa.select(subdirs.c.channel_id).where(subdirs.c.published_rev > 0)
    op.execute(
        channels.update().where(channels.c.id.in_(published)).values(channeldata_requested_at=now)
    )


def downgrade() -> None:
    with op.batch_alter_table("subdir_indexes", schema=None) as batch_op:
        batch_op.drop_column("requested_at")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channels_channeldata_requested_at"))
        batch_op.drop_column("channeldata_lease_until")
        batch_op.drop_column("channeldata_lease_owner")
        batch_op.drop_column("channeldata_build_ms")
        batch_op.drop_column("channeldata_next_at")
        batch_op.drop_column("channeldata_requested_at")
