"""Migration 0009 groups the records already stored that alias each other (issue 12, item 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text

from stockade.db.migrate import upgrade
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database

ROWS = [  # vuln_id, aliases, best score, withdrawn
    ("PYSEC-2018-66", ["CVE-2018-1000656", "GHSA-562c-5r94-xh97"], None, None),
    ("CVE-2018-1000656", [], 7.5, None),
    ("GHSA-562c-5r94-xh97", ["CVE-2018-1000656"], 5.0, None),
    ("PYSEC-2099-1", [], None, None),
    ("PYSEC-2099-2", ["CVE-2018-1000656"], 9.9, "2020-01-01 00:00:00+00:00"),  # withdrawn: alone
]


@pytest.mark.parametrize("backend", backends())
def test_upgrade_groups_stored_aliases(backend: str, tmp_path: Path) -> None:
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
        upgrade(url)
        with engine.begin() as conn:
            summary = conn.execute(
                text("SELECT counts, max_score, severity FROM artifact_vuln_summaries")
            ).one()
            got = {
                r[0]: tuple(r[1:])
                for r in conn.execute(
                    text(
                        "SELECT vuln_id, alias_group, group_score, group_severity, score_source "
                        "FROM vulnerabilities"
                    )
                )
            }
            indexed = conn.execute(text("SELECT count(*) FROM vuln_alias_ids")).scalar()
            kept = conn.execute(text("SELECT count(*) FROM vuln_matches")).scalar()
        engine.dispose()
        # the primary: the smallest id that is not a CVE id
        merged = ("GHSA-562c-5r94-xh97", 7.5, "high", "CVE-2018-1000656")
        assert got == {
            "PYSEC-2018-66": merged,
            "CVE-2018-1000656": merged,
            "GHSA-562c-5r94-xh97": merged,
            "PYSEC-2099-1": ("PYSEC-2099-1", None, None, None),
            "PYSEC-2099-2": ("PYSEC-2099-2", 9.9, "critical", "PYSEC-2099-2"),
        }
        assert indexed == 3 + 1 + 2 + 1  # the live records' ids and aliases
        assert kept == 2  # no table rebuilt under the matches (SQLite cascades on DROP TABLE)
        counts = summary[0] if isinstance(summary[0], dict) else json.loads(summary[0])
        assert (counts, summary[1], summary[2]) == ({"reported": 1}, 7.5, "high")  # was 2


T = "2026-01-01 00:00:00+00:00"


def _matched_twice(conn: Connection) -> None:
    """An artifact matched by PYSEC-2018-66 and by CVE-2018-1000656, counted twice (as before)."""
    conn.execute(
        text(
            "INSERT INTO channels (name, privacy, kind, frozen, created_at, updated_at) "
            "VALUES ('internal', 'public', 'local', false, :t, :t)"
        ),
        {"t": T},
    )
    conn.execute(
        text(
            "INSERT INTO artifacts (channel_id, subdir, filename, name, version, build, "
            "build_number, format, sha256, md5, size, record_json, indexed_timestamp, source, "
            "scan_status, created_at) SELECT id, 'noarch', 'flask-0.12.2-py_0.conda', 'flask', "
            "'0.12.2', 'py_0', 0, 'conda', :sha, :md5, 1, :rec, 0, 'upload', 'clean', :t "
            "FROM channels"
        ),
        {"sha": "0" * 64, "md5": "0" * 32, "rec": b"{}", "t": T},
    )
    for vuln_id in ("PYSEC-2018-66", "CVE-2018-1000656"):
        conn.execute(
            text(
                "INSERT INTO vuln_matches (vulnerability_id, artifact_id, status, status_origin, "
                "matched_at, updated_at) SELECT v.id, a.id, 'reported', 'auto', :t, :t "
                "FROM vulnerabilities v, artifacts a WHERE v.vuln_id = :v"
            ),
            {"v": vuln_id, "t": T},
        )
    conn.execute(
        text(
            "INSERT INTO artifact_vuln_summaries (artifact_id, max_score, severity, worst_status, "
            "counts, updated_at) SELECT id, 7.5, 'high', 'reported', :c, :t FROM artifacts"
        ),
        {"c": json.dumps({"reported": 2}), "t": T},
    )
