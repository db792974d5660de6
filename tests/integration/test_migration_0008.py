"""Migration 0008 tightens subchannels stored looser than their parent (issue 11, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from stockade.db.migrate import upgrade
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database


@pytest.mark.parametrize("backend", backends())
def test_upgrade_tightens_looser_subchannels(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, PG_URL) as url:
        upgrade(url, "0007")
        engine = create_engine(url)
        rows = [
            ("team", "private"),
            ("team/nightly", "public"),
            ("team/nightly/deep", "authenticated"),
            ("org", "authenticated"),
            ("org/pub", "public"),
            ("org/priv", "private"),
            ("open", "public"),
            ("open/kid", "public"),
        ]
        with engine.begin() as conn:
            for name, privacy in rows:
                conn.execute(
                    text(
                        "INSERT INTO channels (name, privacy, kind, frozen, created_at, "
                        "updated_at) VALUES (:n, :p, 'local', false, :t, :t)"
                    ),
                    {"n": name, "p": privacy, "t": "2026-01-01 00:00:00+00:00"},
                )
        upgrade(url)
        with engine.begin() as conn:
            got = dict(conn.execute(text("SELECT name, privacy FROM channels")).all())
        engine.dispose()
        assert got == {
            "team": "private",
            "team/nightly": "private",
            "team/nightly/deep": "private",
            "org": "authenticated",
            "org/pub": "authenticated",
            "org/priv": "private",
            "open": "public",
            "open/kid": "public",
        }
