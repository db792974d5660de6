"""``upgrade`` recognises a database already at the newest revision without loading Alembic (each
server start did, ~0.3 s of CPU: issue 18 target 6), and still migrates every other database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from stockade.db.migrate import at_head, head_revisions, upgrade
from tests.conftest import PG_URL, backends
from tests.support.server import fresh_database


def test_head_is_the_newest_migration_file() -> None:
    versions = Path(__file__).resolve().parents[2] / "src/stockade/migrations/versions"
    newest = max(p.name for p in versions.glob("[0-9]*.py"))
    assert head_revisions() == frozenset({newest.split("_")[0]})


@pytest.mark.parametrize("backend", backends())
def test_at_head_only_when_every_migration_ran(backend: str, tmp_path: Path) -> None:
    with fresh_database(backend, tmp_path, PG_URL) as url:
        assert not at_head(url)  # empty: no alembic_version table
        upgrade(url, "0008")
        assert not at_head(url)
        upgrade(url)  # the fast path must not stop this one
        assert at_head(url)
        engine = create_engine(url)
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT COUNT(*) FROM alembic_version")).scalar_one()
        engine.dispose()
        assert versions == 1


def test_a_second_upgrade_loads_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stockade.db'}"
    upgrade(url)
    probe = (
        "import sys\n"
        "from stockade.db.migrate import upgrade\n"
        f"upgrade({url!r})\n"
        "print('alembic' in sys.modules, 'mako' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["False", "False"]
