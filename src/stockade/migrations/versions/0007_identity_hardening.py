"""identity hardening: shared sign-in throttle (per account and address) and a credential revision

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import stockade.db.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signin_throttle",
        sa.Column("key", sa.String(length=96), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", stockade.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", stockade.db.base.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_signin_throttle")),
    )
    op.create_index(
        op.f("ix_signin_throttle_window_started_at"),
        "signin_throttle",
        ["window_started_at"],
        unique=False,
    )
    revision_table = op.create_table(
        "auth_revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_revision")),
    )
    op.bulk_insert(revision_table, [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("auth_revision")
    op.drop_index(op.f("ix_signin_throttle_window_started_at"), table_name="signin_throttle")
    op.drop_table("signin_throttle")
