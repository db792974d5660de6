"""Processes started together on a new PostgreSQL database (replicas and workers of a cluster,
each running the migrations at start) all come up: the migrations run once, the others wait."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from stockade.db.migrate import at_head, upgrade
from tests.conftest import PG_URL
from tests.support.server import fresh_database

pytestmark = pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL's advisory lock: STOCKADE_TEST_PG_URL"
)


def test_four_processes_migrating_a_new_database_at_once(tmp_path: Path) -> None:
    with fresh_database("postgresql", tmp_path, PG_URL) as url:
        assert not at_head(url)
        with ThreadPoolExecutor(4) as pool:  # each its own engine and connection, as processes
            outcomes = [pool.submit(upgrade, url) for _ in range(4)]
            for outcome in outcomes:
                outcome.result()  # before the lock, all but one died on a duplicate table
        assert at_head(url)
        upgrade(url)  # and again, at head: nothing to do
