"""Mirror runs done by a separate ``stockade worker`` process (SPEC §11: Redis as the job broker,
any number of ``stockade serve`` replicas and ``stockade worker`` processes).

The web server runs no jobs (``embedded_worker = false``); a ``stockade worker`` subprocess with
the same database and data folder takes the run from the queue (Redis, or the SQLite queue under
the test data folder), runs it, and publishes the channel's index. The run's log names the
worker's process, not the test's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.conftest import PG_URL
from tests.support.mirror_data import TEST_RECIPES
from tests.support.mirror_runs import (
    create_mirror,
    run_logs,
    served_records,
    start_run,
    wait_for,
    wait_run,
)
from tests.support.process import PYCACHE, STOCKADE
from tests.support.published import check_channel
from tests.support.server import LiveServer, free_port, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.slow]


def _redis_binary() -> str | None:
    return os.environ.get("STOCKADE_TEST_REDIS_SERVER") or shutil.which("redis-server")


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, nothing persisted; yields its URL."""
    binary = _redis_binary()
    if binary is None:
        pytest.skip("redis-server not found (set STOCKADE_TEST_REDIS_SERVER or install redis)")
    port = free_port()
    log = (workdir / "redis.log").open("wb")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)

        def ready() -> bool:
            assert proc.poll() is None, (workdir / "redis.log").read_text()
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(ready, "redis-server to answer", timeout=20)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


@contextmanager
def worker_process(
    data_dir: Path, db_url: str, redis_url: str | None
) -> Iterator[subprocess.Popen[bytes]]:
    """``stockade worker`` configured as an operator would: environment variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "STOCKADE_DATA_DIR": str(data_dir),
            "STOCKADE_DATABASE_URL": db_url,
            "STOCKADE_LOG_FORMAT": "json",
            "STOCKADE_LOG_LEVEL": "info",
            "STOCKADE_MIRROR__HEARTBEAT_S": "0.5",
            "STOCKADE_PUBLICATION__COALESCE_MS": "20",
            "STOCKADE_VULNS__DEFAULT_FEEDS": "false",  # no internet feeds in tests
            "PYTHONPYCACHEPREFIX": str(PYCACHE),
        }
    )
    if redis_url:
        env["STOCKADE_JOBS__REDIS_URL"] = redis_url
    log_path = data_dir / "worker.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(STOCKADE), "worker"],
            env=env,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def _recipes(subdir: str) -> dict[str, str]:
    repodata = json.loads((TEST_RECIPES / subdir / "repodata.json").read_bytes())
    return {
        filename: record["sha256"]
        for key in ("packages", "packages.conda")
        for filename, record in repodata.get(key, {}).items()
    }


@pytest.mark.parametrize("queue", ["redis", "sqlite"])
def test_run_by_a_separate_worker(backend: str, tmp_path: Path, queue: str) -> None:
    if PG_URL and (backend == "postgresql") != (queue == "redis"):
        # CI time: with PostgreSQL at hand, each database runs with the broker it is deployed
        # with: PostgreSQL with Redis (beyond one machine), SQLite with its own queue (embedded).
        pytest.skip("PostgreSQL runs with Redis, SQLite with its own queue")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with (
        redis_server(tmp_path) if queue == "redis" else _no_redis() as redis_url,
        fresh_database(backend, data_dir, PG_URL) as db_url,
    ):
        jobs = {"redis_url": redis_url} if redis_url else {}
        with (
            # cluster=False: this test builds its own cluster (a server and a worker process
            # sharing the data folder and broker it configures)
            run_server(data_dir, db_url, embedded_worker=False, jobs=jobs, cluster=False) as server,
            worker_process(data_dir, db_url, redis_url) as worker,
        ):
            _run_through(server, worker, data_dir)


@contextmanager
def _no_redis() -> Iterator[None]:
    yield None


def _run_through(server: LiveServer, worker: subprocess.Popen[bytes], data_dir: Path) -> None:
    client = server.admin
    mirror = f"mw-{uuid.uuid4().hex[:10]}"
    create_mirror(
        client, mirror, TEST_RECIPES.as_uri(), subdirs=["noarch", "linux-fake"], concurrency=4
    )
    run_id = start_run(client, mirror)

    def worker_alive() -> None:
        assert worker.poll() is None, (data_dir / "worker.log").read_text()[-3000:]

    run = wait_run(client, run_id, timeout=120, alive=worker_alive)
    assert run["state"] == "completed", run
    first = run_logs(client, run_id)[0]["message"]
    found = re.match(r"attempt 1 on ([^:]+):(\d+):", first)
    assert found, first
    assert int(found.group(2)) == worker.pid, f"not run by the worker (pid {worker.pid}): {first}"
    assert int(found.group(2)) != os.getpid()
    # The worker publishes too: the server (which runs no jobs) serves the new index.
    wait_for(
        lambda: _published(server, mirror),
        "the worker to publish the channel",
        timeout=60,
        alive=worker_alive,
    )
    expected = {"noarch": _recipes("noarch"), "linux-fake": _recipes("linux-fake")}
    for subdir, records in expected.items():
        assert served_records(client, mirror, subdir) == records, subdir
    artifacts = client.get(f"/api/v1/channels/{mirror}/files", params={"limit": 1000}).json()
    check_channel(client, mirror, artifacts, blob_dir=data_dir / "blobs", exact=True)


def _published(server: LiveServer, channel: str) -> bool:
    subdirs = server.admin.get(f"/api/v1/channels/{channel}/subdirs").json()
    names = {s["subdir"] for s in subdirs}
    return {"noarch", "linux-fake"} <= names and not any(s["pending"] for s in subdirs)
