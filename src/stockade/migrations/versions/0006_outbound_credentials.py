"""outbound credentials: a mirror's token bound to its origin, proxy credentials apart (encrypted)

The token of every existing mirror is bound to the origin of its source as it is now. Proxy
credentials already stored in clear in ``mirrors.proxy`` cannot be encrypted here (the key is the
server's, not the migration's): they are never shown (redacted), and the server stores them
encrypted apart when it starts (``mirroring.credentials.seal_legacy_proxies``, docs/adr/0010).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 17:00:00
"""

from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None else "")


def upgrade() -> None:
    with op.batch_alter_table("mirrors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_token_origin", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("proxy_auth_enc", sa.Text(), nullable=True))
    mirrors = sa.table(
        "mirrors",
        sa.column("id", sa.Integer()),
        sa.column("source_url", sa.Text()),
        sa.column("source_token_enc", sa.Text()),
        sa.column("source_token_origin", sa.Text()),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(mirrors.c.id, mirrors.c.source_url).where(mirrors.c.source_token_enc.is_not(None))
    ).all()
    for row_id, source_url in rows:
        connection.execute(
            sa.update(mirrors)
            .where(mirrors.c.id == row_id)
            .values(source_token_origin=_origin(source_url or ""))
        )


def downgrade() -> None:
    with op.batch_alter_table("mirrors", schema=None) as batch_op:
        batch_op.drop_column("proxy_auth_enc")
        batch_op.drop_column("source_token_origin")
