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
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
from tests.support.process import worker_process
from tests.support.published import check_channel
from tests.support.redis_server import redis_server
from tests.support.server import LiveServer, fresh_database, run_server

pytestmark = [pytest.mark.functional, pytest.mark.slow]


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
