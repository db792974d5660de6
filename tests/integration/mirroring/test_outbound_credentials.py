"""Mirror credentials as stored (issue 11, items 2 and 3): proxy credentials encrypted apart,
the token's origin recorded (by the service, and by migration 0006 for existing rows), proxy
credentials stored in clear by an earlier version sealed when the server starts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from stockade.audit.models import AuditEvent
from stockade.auth.principal import Principal
from stockade.container import Container
from stockade.db.engine import make_engine, transaction
from stockade.db.migrate import upgrade
from stockade.mirroring.credentials import proxy_url
from stockade.mirroring.models import Mirror
from stockade.mirroring.service import MirrorService, MirrorSpec
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database

SECRET = "pr0xy-s3cret"


def _create(container: Container, admin: Principal) -> int:
    spec = MirrorSpec(
        source="HTTPS://Up.Example.Invalid/chan",
        token="stk-upstream-token",
        proxy=f"http://bob:{SECRET}@proxy.example.invalid:3128",
        subdirs=["noarch"],
        schedule="",
    )
    with transaction(container.factory) as session:
        service = MirrorService(session, container.secrets)  # the source is made up: no check
        return service.create(admin, "creds", spec, verify_source=False).id


def test_credentials_are_stored_encrypted_and_bound(container: Container, admin: Principal) -> None:
    mirror_id = _create(container, admin)
    with container.factory() as session:
        mirror = session.get(Mirror, mirror_id)
        assert mirror is not None
        assert mirror.source_url == "https://up.example.invalid/chan"
        assert mirror.source_token_origin == "https://up.example.invalid:443"
        assert mirror.proxy == "http://proxy.example.invalid:3128"
        assert mirror.proxy_auth_enc and SECRET not in mirror.proxy_auth_enc
        assert proxy_url(mirror, container.secrets) == (
            f"http://bob:{SECRET}@proxy.example.invalid:3128"
        )
        events = session.scalars(select(AuditEvent)).all()
        assert events and all(SECRET not in str(vars(e)) for e in events)


def test_clear_proxy_credentials_are_sealed_at_start(
    container: Container, admin: Principal
) -> None:
    mirror_id = _create(container, admin)
    legacy = f"http://bob:{SECRET}@proxy.example.invalid:3128"
    with transaction(container.factory) as session:  # as an earlier version stored it
        session.execute(
            sa.update(Mirror)
            .where(Mirror.id == mirror_id)
            .values(proxy=legacy, proxy_auth_enc=None)
        )
    container.bootstrap()
    with container.factory() as session:
        mirror = session.get(Mirror, mirror_id)
        assert mirror is not None and mirror.proxy == "http://proxy.example.invalid:3128"
        assert proxy_url(mirror, container.secrets) == legacy


@pytest.mark.parametrize("backend", backends())
def test_migration_0006_binds_existing_tokens_to_their_origin(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, PG_URL) as url:
        upgrade(url, "0005")
        engine = make_engine(url)
        now = datetime.now(UTC)
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO channels (id, name, privacy, kind, frozen, created_at, "
                        "updated_at) VALUES (1, 'c', 'public', 'mirror', false, :now, :now)"
                    ),
                    {"now": now},
                )
                for row_id, source, token in (
                    (1, "HTTPS://Up.Example/chan", "sealed"),
                    (2, "http://other.example:8080/c", None),
                ):
                    conn.execute(
                        sa.text(
                            "INSERT INTO mirrors (id, name, channel_id, source_url, "
                            "source_token_enc, mode, subdirs, concurrency, enabled, companions, "
                            "allowed_names, created_at, updated_at) VALUES (:id, :name, 1, "
                            ":source, :token, 'passive', '[]', 1, true, '[]', '[]', :now, :now)"
                        ),
                        {
                            "id": row_id,
                            "name": f"m{row_id}",
                            "source": source,
                            "token": token,
                            "now": now,
                        },
                    )
            upgrade(url)
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT id, source_token_origin, proxy_auth_enc FROM mirrors ORDER BY id"
                    )
                ).all()
        finally:
            engine.dispose()
    assert [tuple(r) for r in rows] == [(1, "https://up.example:443", None), (2, None, None)]
