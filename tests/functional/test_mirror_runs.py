"""Mirror runs over the REST API (SPEC §5): one at a time per mirror, stop while pending or
running, scheduled runs, live progress and logs, and a failing upstream.

Two in-thread servers share the module: ``server`` runs jobs (embedded worker, a heartbeat every
0.2 s so progress shows quickly); ``idle`` runs none, so its runs stay pending until a test runs
one by hand.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from stockade.core.clock import utcnow
from stockade.mirroring.models import Mirror, MirrorRun
from stockade.mirroring.tasks import start_due_runs
from tests.conftest import own_server
from tests.support.mirror_data import TEST_RECIPES
from tests.support.mirror_runs import (
    RecordPool,
    create_mirror,
    get_run,
    log_length,
    package_downloads,
    package_requests,
    run_logs,
    served_records,
    start_run,
    step,
    wait_for,
    wait_run,
)
from tests.support.server import LiveServer, free_port
from tests.support.upstream import Upstream

pytestmark = [pytest.mark.functional, pytest.mark.slow]

DELAY_S = 0.3  # the upstream pauses this long after each package body


@pytest.fixture(scope="module")
def server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with own_server(backend, tmp_path_factory, "mirror-runs", mirror={"heartbeat_s": 0.2}) as live:
        yield live


@pytest.fixture(scope="module")
def idle(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with own_server(backend, tmp_path_factory, "mirror-idle", embedded_worker=False) as live:
        yield live


def _name(prefix: str = "mr") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _recipes_mirror(client: httpx.Client, **fields: Any) -> str:
    name = _name()
    body = {"subdirs": ["noarch", "linux-fake"], **fields}
    create_mirror(client, name, TEST_RECIPES.as_uri(), **body)
    return name


def _runs(client: httpx.Client, mirror: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/mirrors/{mirror}/runs")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()
    return found


def _is_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["status"] == status
    return body


# -- one run per mirror at a time --------------------------------------------------------------


def test_second_run_conflicts_naming_the_active_one(idle: LiveServer) -> None:
    client = idle.admin
    mirror = _recipes_mirror(client)
    run_id = start_run(client, mirror)
    body = _is_problem(client.post(f"/api/v1/mirrors/{mirror}/runs"), 409, "mirror:run-active")
    assert body["run"] == run_id
    assert str(run_id) in body["detail"]
    assert [r["id"] for r in _runs(client, mirror)] == [run_id]
    # Once it has ended (here: stopped), the next one may start.
    assert client.post(f"/api/v1/runs/{run_id}/stop").json()["state"] == "stopped"
    assert start_run(client, mirror) > run_id


def test_concurrent_requests_make_one_run(idle: LiveServer) -> None:
    mirror = _recipes_mirror(idle.admin)

    def ask(_: int) -> httpx.Response:
        with httpx.Client(
            base_url=idle.url, headers={"authorization": f"Bearer {idle.admin_token}"}, timeout=60
        ) as client:
            return client.post(f"/api/v1/mirrors/{mirror}/runs")

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(ask, range(10)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [202] + [409] * 9, [(r.status_code, r.text[:200]) for r in answers]
    winner = next(r.json()["id"] for r in answers if r.status_code == 202)
    for response in answers:
        if response.status_code == 409:
            body = _is_problem(response, 409, "mirror:run-active")
            assert body.get("run") == winner, f"the conflict does not name run {winner}: {body}"
    assert [r["id"] for r in _runs(idle.admin, mirror)] == [winner]


# -- stop ----------------------------------------------------------------------------------------


def test_stop_pending_run_never_runs(idle: LiveServer) -> None:
    client = idle.admin
    mirror = _recipes_mirror(client)
    run_id = start_run(client, mirror)
    assert get_run(client, run_id)["state"] == "pending"
    stopped = client.post(f"/api/v1/runs/{run_id}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["state"] == "stopped"
    assert stopped.json()["stop_requested"] is True
    run = get_run(client, run_id)
    assert run["state"] == "stopped" and run["finished_at"] is not None
    # The queue message is still there: when a worker takes it, the run is not its to run.
    assert idle.container.mirror_sync().execute(run_id) is None
    run = get_run(client, run_id)
    assert run["state"] == "stopped" and run["attempt"] == 0 and run["started_at"] is None
    assert run_logs(client, run_id) == []
    assert client.get(f"/api/v1/channels/{mirror}/files").json() == []
    _is_problem(client.post(f"/api/v1/runs/{run_id}/stop"), 409, "mirror:run-finished")


# One backend (CI time): stopping is the runner's; its database side is checked on both
# backends by the other tests of this file.
@pytest.mark.one_backend
def test_stop_running_run_keeps_index_and_blobs(server: LiveServer, tmp_path: Path) -> None:
    client = server.admin
    pool = RecordPool.build(tmp_path / "up", count=60)
    expected = pool.publish(pool.names)
    with Upstream(pool.root, chunk_delay_s=DELAY_S) as upstream:
        mirror = _name()
        create_mirror(client, mirror, upstream.url, concurrency=2)
        run_id = start_run(client, mirror)
        wait_for(
            lambda: step(get_run(client, run_id), "download", saved=False)["done"] >= 5,
            "five files downloaded",
        )
        asked = client.post(f"/api/v1/runs/{run_id}/stop")
        assert asked.status_code == 200, asked.text
        assert asked.json()["stop_requested"] is True
        assert asked.json()["state"] in ("running", "stopped")
        run = wait_run(client, run_id)
        assert run["state"] == "stopped", run
        assert "stopped" in (run["summary"] or "")
        assert step(run, "publish")["state"] == "skipped", run["steps"]
        assert step(run, "download")["state"] == "stopped", run["steps"]
        assert not any(s["state"] == "running" for s in run["steps"]), run["steps"]
        assert served_records(client, mirror) == {}
        assert client.get(f"/api/v1/channels/{mirror}/files").json() == []
        in_store = set(server.container.blobs.iter_all())  # through the store: S3 in a cluster
        stored = {fn for fn, sha in expected.items() if sha in in_store}
        assert 0 < len(stored) < len(expected), "the stop did not land mid-download"

        upstream.chunk_delay_s = 0
        time.sleep(DELAY_S + 0.5)  # bodies in flight at the stop end: the log after is run 2's
        split = log_length(upstream)
        again = wait_run(client, start_run(client, mirror))
        assert again["state"] == "completed", again
        asked_again = set(package_requests(upstream, split))
        assert not asked_again & stored, "files downloaded before the stop were fetched again"
        assert set(package_downloads(upstream, split)) == set(expected) - stored
        assert again["counts"]["files_present"] == len(stored)
        server.wait_published(mirror)
        assert served_records(client, mirror) == expected


# -- a scheduled run -----------------------------------------------------------------------------


def test_due_schedule_starts_a_scheduled_run(server: LiveServer) -> None:
    client = server.admin
    mirror = _recipes_mirror(client, schedule="0 3 * * *", mode="passive")
    shown = client.get(f"/api/v1/mirrors/{mirror}").json()
    assert shown["next_run_at"] is not None and shown["last_run"] is None
    past = utcnow() - timedelta(minutes=5)
    with server.container.factory() as session, session.begin():
        session.execute(update(Mirror).where(Mirror.name == mirror).values(next_run_at=past))
    start_due_runs(server.container)
    runs = wait_for(lambda: _runs(client, mirror), "the scheduled run")
    assert len(runs) == 1 and runs[0]["trigger"] == "schedule", runs
    run = wait_run(client, runs[0]["id"])
    assert run["state"] == "completed", run
    with server.container.factory() as session:
        moved = session.scalar(select(Mirror.next_run_at).where(Mirror.name == mirror))
    assert moved is not None and moved != past
    # That due time is taken: another pass starts nothing more.
    start_due_runs(server.container)
    assert [r["id"] for r in _runs(client, mirror)] == [run["id"]]
    server.wait_published(mirror)
    assert "python-3.99.99-0.conda" in served_records(client, mirror, "noarch")


# -- progress and logs while running ---------------------------------------------------------------


def test_progress_and_logs_while_running(server: LiveServer, tmp_path: Path) -> None:
    client = server.admin
    pool = RecordPool.build(tmp_path / "up", count=40, offset=100)
    expected = pool.publish(pool.names)
    with Upstream(pool.root, chunk_delay_s=DELAY_S) as upstream:
        mirror = _name()
        create_mirror(client, mirror, upstream.url, concurrency=2)
        run_id = start_run(client, mirror)
        seen_done: list[int] = []
        lines: list[dict[str, Any]] = []
        after = 0

        def progress() -> bool:
            nonlocal after
            run = get_run(client, run_id)
            new = run_logs(client, run_id, after)
            assert all(line["id"] > after for line in new), "after= returned old lines"
            if new:
                after = new[-1]["id"]
                lines.extend(new)
            if run["state"] == "running":
                download = step(run, "download", saved=False)
                if download["state"] == "running":
                    assert download["total"] == len(expected)
                    seen_done.append(download["done"])
            return run["state"] in ("completed", "failed", "stopped")

        wait_for(progress, "the run to end", timeout=90, interval=0.1)
    run = get_run(client, run_id)
    assert run["state"] == "completed", run
    assert seen_done == sorted(seen_done), f"progress went back: {seen_done}"
    assert len(set(seen_done)) >= 2, f"no progress seen while running: {seen_done}"
    assert any(0 < d < len(expected) for d in seen_done)
    assert any(line["message"].startswith("attempt 1 on ") for line in lines)
    # Lines seen while running are kept, in order; the rest came after.
    final = run_logs(client, run_id)
    assert [ln["id"] for ln in final] == sorted({ln["id"] for ln in final})
    assert [ln["id"] for ln in lines] == [ln["id"] for ln in final[: len(lines)]]
    assert run_logs(client, run_id, final[-1]["id"]) == []
    assert "40 added" in final[-1]["message"]
    assert run["counts"]["files_downloaded"] == len(expected)
    assert run["counts"]["added"] == len(expected)
    assert all(s["state"] == "done" for s in run["steps"]), run["steps"]


# -- a failing upstream -------------------------------------------------------------------------


def test_unreachable_upstream_fails_clearly(server: LiveServer) -> None:
    client = server.admin
    mirror = _name()
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    create_mirror(client, mirror, closed, check=False)  # the check at creation would refuse it
    run = wait_run(client, start_run(client, mirror))
    assert run["state"] == "failed", run
    assert run["error"] and "127.0.0.1" in run["error"], run
    assert any(s["state"] == "failed" for s in run["steps"]), run["steps"]
    messages = [line["message"] for line in run_logs(client, run["id"])]
    assert any("failed:" in m and "[mirror:" in m for m in messages), messages
    shown = client.get(f"/api/v1/mirrors/{mirror}").json()
    assert shown["last_run"]["state"] == "failed"
    # The mirror is still usable: point it somewhere that answers, and run it again.
    fixed = client.patch(
        f"/api/v1/mirrors/{mirror}",
        json={"source": TEST_RECIPES.as_uri(), "subdirs": ["noarch"]},
    )
    assert fixed.status_code == 200, fixed.text
    again = wait_run(client, start_run(client, mirror))
    assert again["state"] == "completed", again
    with server.container.factory() as session:
        states = session.scalars(
            select(MirrorRun.state).where(MirrorRun.mirror_id == _mirror_id(server, mirror))
        ).all()
    assert sorted(states) == ["completed", "failed"]


def _mirror_id(server: LiveServer, name: str) -> int:
    with server.container.factory() as session:
        found = session.scalar(select(Mirror.id).where(Mirror.name == name))
    assert found is not None
    return int(found)
