"""Migration 0009 groups the records already stored that alias each other (issue 12, item 8)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

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
        upgrade(url)
        with engine.begin() as conn:
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
