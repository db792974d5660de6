"""Migration 0010 (scanning): stored artifacts are queued for a scan and stay served meanwhile,
and nothing hanging off ``artifacts`` is lost (SQLite cascades on a table rebuild)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from stockade.db.migrate import upgrade
from tests.conftest import PG_URL, backends
from tests.integration.test_migration_0009_aliases import ROWS, _matched_twice
from tests.support.server import fresh_database


@pytest.mark.parametrize("backend", backends())
def test_upgrade_queues_stored_artifacts_and_keeps_their_matches(
    backend: str, tmp_path: Path
) -> None:
    with fresh_database(backend, tmp_path, PG_URL) as url:
        upgrade(url, "0008")
        engine = create_engine(url)
        with engine.begin() as conn:
            for vuln_id, aliases, score, withdrawn in ROWS:
                conn.execute(
                    text(
                        "INSERT INTO vulnerabilities (vuln_id, source, aliases, summary, details, "
                        'scores, best_score, cwes, "references", affected, kev, digest, '
                        "withdrawn, created_at, updated_at) VALUES (:v, 'osv', :a, '', '', '[]', "
                        ":s, '[]', '[]', '[]', false, 'x', :w, :t, :t)"
                    ),
                    {
                        "v": vuln_id,
                        "a": json.dumps(aliases),
                        "s": score,
                        "w": withdrawn,
                        "t": "2026-01-01 00:00:00+00:00",
                    },
                )
            _matched_twice(conn)
            before = conn.execute(text("SELECT count(*) FROM vuln_matches")).scalar()
            artifacts = conn.execute(text("SELECT count(*) FROM artifacts")).scalar()
        upgrade(url)
        with engine.begin() as conn:
            kept = conn.execute(text("SELECT count(*) FROM vuln_matches")).scalar()
            rows = conn.execute(text("SELECT scan_status, servable FROM artifacts")).all()
            queued = conn.execute(text("SELECT count(*) FROM scan_requests")).scalar()
            settings = conn.execute(
                text("SELECT scan_uploads, scan_suspicious, scan_errors FROM channels")
            ).all()
        engine.dispose()
        assert before and kept == before
        assert artifacts and len(rows) == artifacts == queued
        assert all(status == "pending" and bool(servable) for status, servable in rows)
        assert set(settings) == {("hold", "serve", "hold")}
