"""Mirror runs in a process of their own (``[mirror] run_apart``, ``mirroring/placement.py``).

A real ``stockade serve`` subprocess (:mod:`tests.support.process`) runs mirrors whose runs
execute in a child process (``jobs/apart.py``): the run's log names the process that ran it
(``attempt N on host:pid:…``), so each test knows which process ran it and can kill that process.

- by default (``auto``) a mirror's first run goes apart and a small mirror's next run stays in the
  server's process; both publish what the upstream has;
- a stop asked through the API reaches the run's process, as it reaches a run in the server;
- a SIGKILLed run process leaves the channel as it was; the server resumes the same run (attempt 2)
  once its heartbeat is stale;
- a graceful stop of the server lets go of the run (its process ends), and a SIGKILLed server
  leaves no run process behind (``PR_SET_PDEATHSIG``); a restart finishes the run.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_URL
from tests.support.mirror_runs import (
    RecordPool,
    check_served_exactly,
    create_mirror,
    get_run,
    package_downloads,
    run_logs,
    served_records,
    start_run,
    step,
    wait_for,
    wait_run,
)
from tests.support.process import ServerProcess, server_process
from tests.support.published import artifact_rows
from tests.support.server import fresh_database
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.functional, pytest.mark.slow, pytest.mark.xdist_group("mirror-apart")]

DELAY_S = 0.3  # the upstream pauses this long after each package body
BASE_ENV = {"STOCKADE_MIRROR__HEARTBEAT_S": "0.5"}
RESUME_ENV = {"STOCKADE_MIRROR__STALE_AFTER_S": "2", "STOCKADE_MIRROR__SCHEDULER_POLL_S": "0.5"}
ATTEMPT = re.compile(r"^attempt (\d+) on [^:]+:(\d+):")


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[ServerProcess]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with (
        fresh_database(backend, data_dir, PG_URL) as db_url,
        server_process(data_dir, db_url, start=False, **BASE_ENV) as live,
    ):
        yield live


def _mirror(server: ServerProcess, upstream: Upstream, **fields: object) -> str:
    name = f"ma-{uuid.uuid4().hex[:10]}"
    with server.client() as client:
        create_mirror(client, name, upstream.url, **fields)
    return name


def _attempts(client: httpx.Client, run_id: int) -> dict[int, int]:
    """attempt -> id of the process that ran it, from the run's log."""
    found = {}
    for line in run_logs(client, run_id):
        match = ATTEMPT.match(line["message"])
        if match:
            found[int(match[1])] = int(match[2])
    return found


def _ended(server: ServerProcess, pid: int, what: str) -> None:
    """Wait for the process to end; failing, say what it was doing and what the server logged."""
    try:
        wait_for(lambda: not _running(pid), what)
    except AssertionError as exc:
        status = Path(f"/proc/{pid}/status").read_text() if _running(pid) else ""
        raise AssertionError(f"{exc}\n{status}\n{server.log_tail()}") from None


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie (its parent may be gone, unreaped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next(line for line in status.splitlines() if line.startswith("State:"))
    return "zombie" not in state and "(dead)" not in state


def _run_pid(server: ServerProcess, client: httpx.Client, run_id: int, attempt: int = 1) -> int:
    """The id of the process running the run's ``attempt`` (once it has logged it)."""
    pid: int = wait_for(
        lambda: _attempts(client, run_id).get(attempt),
        f"attempt {attempt} of run {run_id} to be logged",
        alive=server.assert_alive,
    )
    return pid


def _downloading(server: ServerProcess, client: httpx.Client, run_id: int, files: int) -> None:
    wait_for(
        lambda: step(get_run(client, run_id), "download", saved=False)["done"] >= files,
        f"{files} files downloaded",
        alive=server.assert_alive,
    )


def test_first_run_apart_small_runs_in_the_server(server: ServerProcess, tmp_path: Path) -> None:
    pool = RecordPool.build(tmp_path / "up", count=30)
    with Upstream(pool.root) as upstream:
        server.start(STOCKADE_MIRROR__RUN_APART="auto")
        assert server.proc is not None
        mirror = _mirror(server, upstream)
        first = pool.publish(pool.names[:20])
        with server.client() as client:
            run_id = start_run(client, mirror)
            run = wait_run(client, run_id, alive=server.assert_alive)
            assert run["state"] == "completed", run
            apart = _attempts(client, run_id)[1]
        assert apart != server.proc.pid, "the first run ran in the server's process"
        _ended(server, apart, "the run's process to end after the run")
        assert run["counts"]["upstream"] == 20, run["counts"]
        check_served_exactly(server, mirror, first)

        second = pool.publish(pool.names[5:])
        with server.client() as client:
            run_id = start_run(client, mirror)
            run = wait_run(client, run_id, alive=server.assert_alive)
            assert run["state"] == "completed", run
            # 20 upstream records last time, under apart_from_records: in the server's process
            assert _attempts(client, run_id)[1] == server.proc.pid
        check_served_exactly(server, mirror, second)


@pytest.mark.one_backend  # the stop is a flag in the run's row, read the same on both
def test_stop_reaches_the_run_apart(server: ServerProcess, tmp_path: Path) -> None:
    pool = RecordPool.build(tmp_path / "up", count=40)
    pool.publish(pool.names)
    with Upstream(pool.root, chunk_delay_s=DELAY_S) as upstream:
        server.start(STOCKADE_MIRROR__RUN_APART="always")
        mirror = _mirror(server, upstream, concurrency=2)
        with server.client() as client:
            run_id = start_run(client, mirror)
            pid = _run_pid(server, client, run_id)
            _downloading(server, client, run_id, 3)
            asked = client.post(f"/api/v1/runs/{run_id}/stop")
            assert asked.status_code == 200, asked.text
            run = wait_run(client, run_id, alive=server.assert_alive)
            assert run["state"] == "stopped", run
            assert step(run, "publish")["state"] == "skipped", run["steps"]
            assert served_records(client, mirror) == {}
        _ended(server, pid, "the run's process to end")
        assert artifact_rows(server.db_url, mirror) == {}


@pytest.mark.one_backend  # the database's side of a kill is checked on both by test_mirror_crash
def test_killed_run_process_leaves_the_channel_and_is_resumed(
    server: ServerProcess, tmp_path: Path
) -> None:
    pool = RecordPool.build(tmp_path / "up", count=40)
    with Upstream(pool.root) as upstream:
        server.start(STOCKADE_MIRROR__RUN_APART="always", **RESUME_ENV)
        mirror = _mirror(server, upstream, concurrency=2)
        old = pool.publish(pool.names[:10])
        with server.client() as client:
            assert wait_run(client, start_run(client, mirror))["state"] == "completed"
        server.wait_published(mirror)
        new = pool.publish(pool.names[5:])
        upstream.chunk_delay_s = DELAY_S
        with server.client() as client:
            run_id = start_run(client, mirror)
            pid = _run_pid(server, client, run_id)
            _downloading(server, client, run_id, 3)
            os.kill(pid, signal.SIGKILL)
            _ended(server, pid, "the killed process to end")
            server.assert_alive()
            assert served_records(client, mirror) == old
            assert artifact_rows(server.db_url, mirror) == old
            upstream.chunk_delay_s = 0
            run = wait_run(client, run_id, alive=server.assert_alive)
            assert run["state"] == "completed", run
            assert run["attempt"] == 2, run
            assert _attempts(client, run_id)[2] not in (pid, server.proc and server.proc.pid)
        check_served_exactly(server, mirror, new)
        assert set(package_downloads(upstream)) >= set(new) - set(old)


@pytest.mark.one_backend
def test_server_stop_or_kill_ends_the_run_process(server: ServerProcess, tmp_path: Path) -> None:
    pool = RecordPool.build(tmp_path / "up", count=40)
    expected = pool.publish(pool.names)
    with Upstream(pool.root, chunk_delay_s=DELAY_S) as upstream:
        server.start(STOCKADE_MIRROR__RUN_APART="always")
        mirror = _mirror(server, upstream, concurrency=2)
        with server.client() as client:
            run_id = start_run(client, mirror)
            pid = _run_pid(server, client, run_id)
            _downloading(server, client, run_id, 2)
        assert server.proc is not None
        server.proc.terminate()  # a graceful stop: the run lets go at its next safe point
        server.wait_exit()
        _ended(server, pid, "the run's process to end with the server")

        server.start(STOCKADE_MIRROR__RUN_APART="always", **RESUME_ENV)
        with server.client() as client:
            pid = _run_pid(server, client, run_id, attempt=2)
            _downloading(server, client, run_id, 1)
        server.kill()  # SIGKILL: the run's process is told by the kernel
        _ended(server, pid, "the run's process to end after the server's kill")
        assert artifact_rows(server.db_url, mirror) == {}

        upstream.chunk_delay_s = 0
        server.start(STOCKADE_MIRROR__RUN_APART="always", **RESUME_ENV)
        with server.client() as client:
            run = wait_run(client, run_id, alive=server.assert_alive)
            assert run["state"] == "completed", run
            # 3, or more: a run released by a stopping server may be claimed by a job of it
            # that was still starting, which lets go at once in turn
            assert run["attempt"] >= 3, run
    check_served_exactly(server, mirror, expected)
