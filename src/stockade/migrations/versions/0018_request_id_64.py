"""request ids of up to 64 characters in the audit log and the download records

The request middleware keeps a client's (a load balancer's) ``X-Request-ID`` of up to 64 safe
characters, a UUID (36) among them, but both columns held 32: on PostgreSQL every audited action
under such an id failed with a 500, and a batch of download records holding one was retried for
good. SQLite does not enforce the length; its tables are rebuilt so that the schema says the same,
and a rebuild drops a table's triggers: the audit log's append-only triggers (0002) are made again.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("audit_events", "download_events")


def upgrade() -> None:
    _alter(sa.String(32), sa.String(64))


def downgrade() -> None:
    _alter(sa.String(64), sa.String(32))


#: 0002's message, which tests and operators look for.
APPEND_ONLY = "audit_events is append-only"


def _alter(before: sa.String, after: sa.String) -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                "request_id", existing_type=before, type_=after, existing_nullable=True
            )
    if op.get_bind().dialect.name == "sqlite":  # PostgreSQL alters in place: its triggers stay
        for action in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS audit_events_no_{action.lower()}")
            op.execute(
                f"CREATE TRIGGER audit_events_no_{action.lower()} BEFORE {action} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
            )
