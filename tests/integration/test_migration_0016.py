"""Migration 0016 (publication intents): publications waiting at the upgrade get a request time,
and every channel with a published index gets its channeldata.json rebuilt once (a rebuild the old
publisher kept in memory was lost when it stopped)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from stockade.db.migrate import upgrade
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database

CHANNEL = (
    "INSERT INTO channels (id, name, privacy, kind, frozen, scan_uploads, scan_suspicious, "
    "scan_errors, sign, created_at, updated_at) VALUES (:id, :name, 'public', 'local', false, "
    "'hold', 'serve', 'hold', false, :t, :t)"
)
SUBDIR = (
    "INSERT INTO subdir_indexes (id, channel_id, subdir, requested_rev, published_rev, "
    "record_count, failures, warnings, signing_done, signing_total) "
    "VALUES (:id, :id, 'noarch', :requested, :published, 0, 0, '[]', 0, 0)"
)


@pytest.mark.parametrize("backend", backends())
def test_upgrade_dates_waiting_publications_and_asks_for_channeldata(
    backend: str, tmp_path: Path
) -> None:
    with fresh_database(backend, tmp_path, PG_URL) as url:
        upgrade(url, "0015")
        engine = create_engine(url)
        # 1: published, more asked for; 2: published, nothing waiting; 3: never published
        revs = {1: (3, 2), 2: (2, 2), 3: (1, 0)}
        with engine.begin() as conn:
            for id_, (requested, published) in revs.items():
                conn.execute(text(CHANNEL), {"id": id_, "name": f"c{id_}", "t": "2026-01-01"})
                conn.execute(
                    text(SUBDIR), {"id": id_, "requested": requested, "published": published}
                )
        upgrade(url)
        with engine.begin() as conn:
            dated = conn.execute(
                text("SELECT id FROM subdir_indexes WHERE requested_at IS NOT NULL ORDER BY id")
            ).all()
            asked = conn.execute(
                text(
                    "SELECT id FROM channels WHERE channeldata_requested_at IS NOT NULL ORDER BY id"
                )
            ).all()
            ms = conn.execute(text("SELECT channeldata_build_ms FROM channels")).scalars().all()
        engine.dispose()
        assert [r[0] for r in dated] == [1, 3]
        assert [r[0] for r in asked] == [1, 2]
        assert ms == [0, 0, 0]
