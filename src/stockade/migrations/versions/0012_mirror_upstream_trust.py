"""mirror upstream trust: the trust metadata a mirror's last run fetched (for dry runs, explain)

Plain ADD COLUMN (see 0011).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "mirrors",
        sa.Column(
            "upstream_trust",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
    )


def downgrade() -> None:
    op.drop_column("mirrors", "upstream_trust")
