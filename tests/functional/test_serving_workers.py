"""``stockade serve --workers 2``: a publication (by whichever worker) is served by every worker
within ``CHECK_SECONDS``: its index and its package files, without a database query per request
(``channels/servable.py``). Before, a worker could serve the previous index for up to 2 s.

Both workers are made to remember the previous state first (many requests on new connections,
which the kernel spreads over the workers), then a new package is published; once the database
says it is published and the bound has passed, every answer must show it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from stockade.channels.servable import CHECK_SECONDS
from tests.conftest import PG_URL, backends
from tests.support import process
from tests.support.process import ServerProcess
from tests.support.server import fresh_database

pytestmark = pytest.mark.functional

FIRST, SECOND = "dependency-1.0-0.conda", "dependency-2.0-0.conda"
TRIES = 16  # requests on new connections: both workers answer some


@pytest.fixture(params=backends())
def two_workers(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerProcess]:
    wrapper = tmp_path / "stockade-workers"
    wrapper.write_text(f'#!/bin/sh\nexec "{process.STOCKADE}" "$@" --workers 2\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(process, "STOCKADE", wrapper)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with fresh_database(request.param, data_dir, PG_URL) as db_url:
        # Two workers start slowly on a busy machine: more time than server_process gives.
        server = ServerProcess(data_dir, db_url, startup_timeout=240)
        try:
            yield server.start()
        finally:
            server.stop()


def _upload(server: ServerProcess, channel: str, path: Path) -> None:
    with server.client() as client:
        files = [("files", (path.name, path.read_bytes(), "application/octet-stream"))]
        response = client.post(f"/api/v1/channels/{channel}/files", files=files)
    assert response.status_code == 201, response.text


def _publish(server: ServerProcess, channel: str, path: Path) -> None:
    """Upload, wait for the verdict, then for the publication it asked for (in the database)."""
    _upload(server, channel, path)
    deadline = time.monotonic() + 120
    while not any(
        a["filename"] == path.name and a["scan_status"] == "clean"
        for a in server.artifacts(channel)
    ):
        assert time.monotonic() < deadline, f"{path.name} got no clean verdict"
        time.sleep(0.05)
    server.wait_published(channel)


def _answers(server: ServerProcess, channel: str) -> list[tuple[bool, bool, int]]:
    """Per new connection: (FIRST listed, SECOND listed, status of SECOND's file)."""
    seen = []
    for _ in range(TRIES):
        with httpx.Client(base_url=server.url, timeout=30) as http:
            index = http.get(f"/conda/{channel}/noarch/repodata.json")
            assert index.status_code == 200, index.text
            listed = index.json().get("packages.conda", {})
            status = http.get(f"/conda/{channel}/noarch/{SECOND}").status_code
        seen.append((FIRST in listed, SECOND in listed, status))
    return seen


@contextmanager
def _kept_busy(server: ServerProcess, channel: str) -> Iterator[None]:
    """Requests on new connections all along (so each worker has read the state shortly before
    the publication commits, whatever the bound it keeps to)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            with httpx.Client(base_url=server.url, timeout=30) as http:
                http.get(f"/conda/{channel}/noarch/repodata.json")
                http.get(f"/conda/{channel}/noarch/{SECOND}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


# One backend (CI time): `serve --workers 2` on the embedded default, several processes on one
# database file; the revision read is the same query on PostgreSQL, where
# test_serving_freshness.py checks another process's view too.
@pytest.mark.one_backend
def test_every_worker_serves_a_publication_within_the_bound(
    two_workers: ServerProcess, testdata: Path
) -> None:
    server = two_workers
    recipes = testdata / "channels" / "test-recipes" / "noarch"
    channel = server.new_channel(prefix="workers")
    _publish(server, channel, recipes / FIRST)
    assert set(_answers(server, channel)) == {(True, False, 404)}  # remembered by each worker
    with _kept_busy(server, channel):
        _publish(server, channel, recipes / SECOND)
    time.sleep(CHECK_SECONDS * 3)
    assert set(_answers(server, channel)) == {(True, True, 200)}
