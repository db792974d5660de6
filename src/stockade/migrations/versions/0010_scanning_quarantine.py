"""malware scanning and quarantine: scan state, the servable rule, scan requests, results, rules

Artifacts stored before scanning existed were never scanned: they become ``pending`` with a scan
request each, and stay servable while they are scanned (a malicious verdict takes them out), so an
upgrade does not empty every index. Self-contained (no application models).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 21:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import stockade.db.base

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
_TS = stockade.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN (SQLite supports it with a constant default): a batch
    # rebuild of ``artifacts`` on SQLite would drop the old table, and the foreign keys that
    # cascade from it (vulnerability matches, summaries) would take their rows along.
    op.add_column(
        "channels", sa.Column("scan_uploads", sa.String(16), nullable=False, server_default="hold")
    )
    op.add_column(
        "channels",
        sa.Column("scan_suspicious", sa.String(16), nullable=False, server_default="serve"),
    )
    op.add_column(
        "channels", sa.Column("scan_errors", sa.String(16), nullable=False, server_default="hold")
    )
    op.add_column(
        "artifacts", sa.Column("servable", sa.Boolean(), nullable=False, server_default=sa.true())
    )
    op.create_index(
        "ix_artifacts_channel_servable", "artifacts", ["channel_id", "subdir", "servable"]
    )
    op.create_table(
        "scan_requests",
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("leased_until", _TS, nullable=True),
        sa.Column("lease_owner", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("artifact_id"),
    )
    op.create_index("ix_scan_requests_requested_at", "scan_requests", ["requested_at"])
    op.create_table(
        "artifact_scans",
        sa.Column("artifact_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("findings", _JSON, nullable=False),
        sa.Column("errors", _JSON, nullable=False),
        sa.Column("versions", _JSON, nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("scanned_at", _TS, nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("bytes_read", sa.Integer(), nullable=False),
        sa.Column("released_fingerprint", sa.String(64), nullable=True),
        sa.Column("release_note", sa.Text(), nullable=True),
        sa.Column("released_by_id", sa.Integer(), nullable=True),
        sa.Column("released_at", _TS, nullable=True),
        sa.ForeignKeyConstraint(["artifact_id"], ["artifacts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["released_by_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("artifact_id"),
    )
    op.create_index("ix_artifact_scans_sha_fp", "artifact_scans", ["sha256", "fingerprint"])
    op.create_index("ix_artifact_scans_fingerprint", "artifact_scans", ["fingerprint"])
    op.create_table(
        "scan_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    # Nothing was scanned before this version, whatever the column said.
    op.execute("UPDATE artifacts SET scan_status = 'pending' WHERE scan_status <> 'malicious'")
    op.execute("UPDATE artifacts SET servable = false WHERE scan_status = 'malicious'")
    op.execute(
        "INSERT INTO scan_requests (artifact_id, reason, requested_at, attempts) "
        "SELECT id, 'unscanned', CURRENT_TIMESTAMP, 0 FROM artifacts"
    )


def downgrade() -> None:
    op.drop_table("scan_rules")
    op.drop_index("ix_artifact_scans_fingerprint", table_name="artifact_scans")
    op.drop_index("ix_artifact_scans_sha_fp", table_name="artifact_scans")
    op.drop_table("artifact_scans")
    op.drop_index("ix_scan_requests_requested_at", table_name="scan_requests")
    op.drop_table("scan_requests")
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index("ix_artifacts_channel_servable")
        batch_op.drop_column("servable")
    with op.batch_alter_table("channels", schema=None) as batch_op:
        batch_op.drop_column("scan_errors")
        batch_op.drop_column("scan_suspicious")
        batch_op.drop_column("scan_uploads")
