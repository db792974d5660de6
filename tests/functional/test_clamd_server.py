"""ClamAV end to end: a live server configured with a real clamd (its database written by the
test) quarantines a package carrying a signature; with clamd stopped, new uploads are held
(fail closed) with the scanner's error, and scanned once it is back (a rescan)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_URL, TESTDATA
from tests.support.clamd import run_clamd
from tests.support.hostile_yara import HOSTILE_YARA
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.xdist_group("clamd")]


def _held(live: LiveServer, channel: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        held = live.admin.get("/api/v1/quarantine", params={"channel": channel}).json()
        if len(held) >= count:
            return list(held)
        time.sleep(0.1)
    raise AssertionError(f"nothing held in {channel}")


def test_clamd_quarantines_and_a_stopped_clamd_holds(backend: str, tmp_path: Path) -> None:
    case = next(c for c in HOSTILE_YARA if c.scanner == "clamd")
    hostile = case.build(tmp_path)
    (tmp_path / "db").mkdir()
    clean = TESTDATA / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"
    with (
        run_clamd() as clamd,
        fresh_database(backend, tmp_path / "db", PG_URL, migrated=True) as db_url,
        run_server(tmp_path / "data", db_url, scanning={"clamd": clamd.address}) as live,
    ):
        channel = live.new_channel(prefix="clam")
        assert live.upload(channel, hostile).status_code == 201
        (held,) = _held(live, channel)
        assert held["status"] == "malicious"
        assert case.rule in {f["rule"] for f in held["scan"]["findings"]}
        status = live.admin.get("/api/v1/scans/status").json()
        assert "clamd" in status["scanners"]

        clamd.stop()
        down = live.new_channel(prefix="clam-down")
        assert live.upload(down, clean).status_code == 201
        (error,) = _held(live, down)
        assert error["status"] == "error" and "clamd" in error["scan"]["errors"]
        assert live.client().get(f"/conda/{down}/noarch/{clean.name}").status_code == 404
