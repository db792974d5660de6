"""Metrics of several processes: with ``stockade serve --workers 2``, ``/metrics`` on either
worker shows the totals of both (prometheus-client's multiprocess mode, in ``DATA_DIR/metrics``),
and the JSON log of a request carries the request id the client sent; a ``stockade worker``
serves the metrics of the jobs it runs on ``metrics.worker_port``."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support import process
from tests.support.mirror_data import TEST_RECIPES
from tests.support.mirror_runs import create_mirror, start_run, wait_for, wait_run
from tests.support.process import ServerProcess, worker_process
from tests.support.server import free_port, fresh_database, run_server

# SQLite only: what is checked is how worker processes add up their counts and what they log;
# the database's side of /metrics runs on both backends in test_metrics.
pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.one_backend]

REQUESTS = 24  # a batch, each on a new connection, 8 at once: the kernel spreads them over workers
MAX_REQUESTS = 480
HEALTHZ = re.compile(
    r'^stockade_http_requests_total\{method="GET",route="/healthz",status="200"\} (\S+)$', re.M
)


@pytest.fixture
def two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerProcess]:
    wrapper = tmp_path / "stockade-workers"
    wrapper.write_text(f'#!/bin/sh\nexec "{process.STOCKADE}" "$@" --workers 2\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(process, "STOCKADE", wrapper)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    stale = data_dir / "metrics"
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"left by an earlier run")  # emptied at start
    with fresh_database("sqlite", data_dir, None) as db_url:
        server = ServerProcess(
            data_dir, db_url, startup_timeout=240, env={"STOCKADE_LOG_LEVEL": "info"}
        )
        try:
            yield server.start()
        finally:
            server.stop()


def _healthz_count(server: ServerProcess) -> float:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get("/metrics", headers={"authorization": f"Bearer {server.admin_token}"})
    assert response.status_code == 200, response.text
    found = HEALTHZ.search(response.text)
    return float(found[1]) if found else 0.0


def test_a_scrape_of_any_worker_counts_every_worker(two_workers: ServerProcess) -> None:
    server = two_workers
    before = [_healthz_count(server) for _ in range(4)]
    assert len(set(before)) == 1, before  # every worker gives the same total
    sent = 0
    while len(_counting_pids(server)) < 2 and sent < MAX_REQUESTS:
        with ThreadPoolExecutor(8) as pool:  # new connections at once: both workers take some
            assert set(pool.map(_healthz, [server.url] * REQUESTS)) == {200}
        sent += REQUESTS
    after = [_healthz_count(server) for _ in range(8)]
    assert all(count - before[0] == sent for count in after), (sent, before, after)
    pids = _counting_pids(server)
    assert len(pids) >= 2 and "1" not in pids, pids  # both workers counted; the stale file went

    with server.client() as client:
        response = client.get("/api/v1/channels", headers={"x-request-id": "scrape-test-0042"})
    assert response.headers["x-request-id"] == "scrape-test-0042"
    deadline = time.monotonic() + 10  # the line is written once the answer is sent
    while not (logged := _logged(server, "scrape-test-0042")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged and logged[-1]["path"] == "/api/v1/channels", server.log_tail()


def _healthz(url: str) -> int:
    with httpx.Client(base_url=url, timeout=30) as http:  # a new connection each
        return http.get("/healthz").status_code


def _counting_pids(server: ServerProcess) -> set[str]:
    files = (server.data_dir / "metrics").glob("counter_*.db")
    return {f.stem.rsplit("_", 1)[1] for f in files}


def _logged(server: ServerProcess, request_id: str) -> list[dict[str, object]]:
    lines = server.log_path.read_text().splitlines()
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    return [line for line in parsed if line.get("request_id") == request_id]


def test_a_worker_serves_the_metrics_of_the_jobs_it_runs(tmp_path: Path) -> None:
    """A mirror run (and the publication after it) done by a ``stockade worker`` is counted
    there, on metrics.worker_port: no web replica ever sees it."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()
    with (
        fresh_database("sqlite", data_dir, None, migrated=True) as db_url,
        run_server(data_dir, db_url, embedded_worker=False) as server,
        worker_process(data_dir, db_url, STOCKADE_METRICS__WORKER_PORT=str(port)) as worker,
    ):

        def alive() -> None:
            assert worker.poll() is None, (data_dir / "worker.log").read_text()[-3000:]

        scrape = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: _answers(scrape), "the worker's metrics port", timeout=120, alive=alive)
        mirror = f"mm-{uuid.uuid4().hex[:10]}"
        create_mirror(server.admin, mirror, TEST_RECIPES.as_uri(), subdirs=["noarch"])
        run = wait_run(server.admin, start_run(server.admin, mirror), timeout=120, alive=alive)
        assert run["state"] == "completed", run

        def counted() -> str | None:
            body = httpx.get(scrape, timeout=10).text
            done = 'stockade_mirror_runs_total{outcome="completed"} 1.0' in body
            published = re.search(r"^stockade_publication_latency_seconds_count [1-9]", body, re.M)
            return body if done and published else None

        wait_for(counted, "the run and its publication counted", timeout=60, alive=alive)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False
