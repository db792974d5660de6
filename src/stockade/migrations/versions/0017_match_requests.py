"""match requests: an artifact's vulnerability matching asked for in the database

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import stockade.db.base

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = stockade.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "match_requests",
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("leased_until", _TS, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("artifact_id"),
    )
    op.create_index("ix_match_requests_requested_at", "match_requests", ["requested_at"])


def downgrade() -> None:
    op.drop_index("ix_match_requests_requested_at", table_name="match_requests")
    op.drop_table("match_requests")
