"""`scripts/test-env` gives each run a PostgreSQL database of its own and drops only that one.

Two runs on one host used to share ``stockade_test``, which each run dropped and recreated. These
tests run the script (already run once by ``make test``: every tool it installs is present) twice
and check the two runs get different databases, that ``--drop`` removes a run's database, and that
it leaves any other database alone. PostgreSQL only.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_URL, ROOT

pytestmark = pytest.mark.skipif(PG_URL is None, reason="PostgreSQL not configured")

SCRIPT = ROOT / "scripts" / "test-env"
RUN_DB = re.compile(r"^stockade_test_[0-9a-f]{12}$")


def _test_env(*args: str) -> str:
    done = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


def _run_url() -> str:
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in _test_env().splitlines()
        if line.startswith("export ")
    )
    return exports["STOCKADE_TEST_PG_URL"]


def _databases() -> set[str]:
    assert PG_URL is not None
    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    finally:
        engine.dispose()


def test_each_run_gets_its_own_database_and_drops_only_it() -> None:
    first, second = _run_url(), _run_url()
    names = {url.rsplit("/", 1)[1] for url in (first, second)}
    try:
        assert len(names) == 2, names
        assert all(RUN_DB.match(name) for name in names), names
        assert names <= _databases()
    finally:
        for url in (first, second):
            _test_env("--drop", url)
    assert not names & _databases()
    assert PG_URL is not None
    assert PG_URL.rsplit("/", 1)[1] in _databases()  # this run's database is untouched


def test_drop_keeps_databases_the_script_did_not_make() -> None:
    assert PG_URL is not None
    base = PG_URL.rsplit("/", 1)[0]
    others = {"postgres", "stockade_test", "stockade_t_0123456789ab", "stockade_test_x; --"}
    before = _databases() & others
    for name in sorted(others):
        _test_env("--drop", f"{base}/{name}")
    assert _databases() & others == before
    assert "postgres" in before
