"""A server killed between intake and verdict loses no scan and never served the file in between.

The server is a real subprocess (:mod:`tests.support.process`) that dies at the scan's crash point
(``scan:before-record``: the archive was read and judged, the verdict not yet written). Uploads
answered 201 before the crash are held (pending, not in any index, not downloadable); after a
restart the request's lease runs out, another scan takes it, the clean file is published and the
hostile one quarantined.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_URL, TESTDATA
from tests.support.hostile import HOSTILE
from tests.support.process import ServerProcess
from tests.support.server import fresh_database

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.xdist_group("scan-crash")]

KILLED = 137
LEASE = {"STOCKADE_SCANNING__LEASE_S": "2"}


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with fresh_database(backend, tmp_path, PG_URL) as db_url:
        live = ServerProcess(tmp_path, db_url)
        try:
            yield live
        finally:
            live.kill()
            live.stop()


def _served(server: ServerProcess, channel: str, subdir: str) -> set[str]:
    with server.client() as client:
        response = client.get(f"/conda/{channel}/{subdir}/repodata.json")
    if response.status_code == 404:
        return set()
    body = response.json()
    return set(body.get("packages", {})) | set(body.get("packages.conda", {}))


# One backend (CI time): leases and verdicts on both backends are tests/integration's
# (scanning); this adds a real SIGKILL.
@pytest.mark.one_backend
def test_a_kill_between_intake_and_verdict_holds_then_scans_after_restart(
    server: ServerProcess, tmp_path: Path
) -> None:
    case = next(c for c in HOSTILE if c.scanner == "link-script" and c.verdict == "malicious")
    hostile = case.build(tmp_path)
    clean = TESTDATA / "channels" / "test-recipes" / "noarch" / "dependency-1.0-0.conda"
    server.start(crash_at="scan:before-record", **LEASE)
    channel = server.new_channel("scan-crash")
    with server.client() as client, clean.open("rb") as a, hostile.open("rb") as b:
        files = [("files", (clean.name, a)), ("files", (hostile.name, b))]
        # One request: both files are committed with their scan requests before any scan can
        # start; the answer may or may not beat the crash of the scan that follows.
        with contextlib.suppress(httpx.TransportError):
            answer = client.post(f"/api/v1/channels/{channel}/files", files=files)
            assert answer.status_code == 201, answer.text
            assert {u["scan_status"] for u in answer.json()["uploaded"]} == {"pending"}
    assert server.wait_exit() == KILLED, server.log_tail()

    server.start(**LEASE)
    with server.client() as client:
        listed = {a["filename"]: a["scan_status"] for a in server.artifacts(channel)}
    assert set(listed) >= {clean.name}, listed
    subdir = "noarch"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with server.client() as client:
            held = client.get("/api/v1/quarantine", params={"channel": channel}).json()
        if held and clean.name in _served(server, channel, subdir):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"not scanned after the restart: {server.log_tail()}")
    assert [h["filename"] for h in held] == [hostile.name]
    assert case.rule in {f["rule"] for f in held[0]["scan"]["findings"]}
    with server.client() as client:
        hostile_subdir = held[0]["subdir"]
        assert hostile.name not in _served(server, channel, hostile_subdir)
        assert client.get(f"/conda/{channel}/{hostile_subdir}/{hostile.name}").status_code == 404
        status = client.get("/api/v1/scans/status").json()
    assert status["queued"] == 0 and status["held"] >= 1
