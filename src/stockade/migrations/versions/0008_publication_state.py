"""publication state: failed publications on the subdir; subchannels never looser than parents

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import stockade.db.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RANK = {"public": 0, "authenticated": 1, "private": 2}


def upgrade() -> None:
    with op.batch_alter_table("subdir_indexes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failed_rev", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("failed_at", stockade.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("retry_at", stockade.db.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "warnings",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )
    with op.batch_alter_table("subdir_indexes", schema=None) as batch_op:
        batch_op.alter_column("failures", server_default=None)
        batch_op.alter_column("warnings", server_default=None)
    _tighten_subchannels()


def _tighten_subchannels() -> None:
    """A subchannel is never more open than its parent: tighten rows that were (issue 11)."""
    bind = op.get_bind()
    channels = sa.table(
        "channels", sa.column("id", sa.Integer), sa.column("name"), sa.column("privacy")
    )
    rows = bind.execute(sa.select(channels.c.id, channels.c.name, channels.c.privacy)).all()
    effective: dict[str, str] = {}
    for _id, name, privacy in sorted(rows, key=lambda r: r.name.count("/")):
        parent = effective.get(name.rpartition("/")[0], "public") if "/" in name else "public"
        wanted = max(privacy, parent, key=lambda p: _RANK.get(p, 2))
        effective[name] = wanted
        if wanted != privacy:
            bind.execute(channels.update().where(channels.c.id == _id).values(privacy=wanted))


def downgrade() -> None:
    with op.batch_alter_table("subdir_indexes", schema=None) as batch_op:
        batch_op.drop_column("warnings")
        batch_op.drop_column("retry_at")
        batch_op.drop_column("failed_at")
        batch_op.drop_column("failures")
        batch_op.drop_column("failed_rev")
        batch_op.drop_column("failure")
