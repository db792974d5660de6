"""A run writes its new rows in short transactions, invisible until its last one (issue 18).

SQLite has one writer: a run that wrote all its rows in its switching transaction held the write
lock for ~45 s at conda-forge scale and the API answered 503. A run now stages its rows in batches
of ``[mirror] stage_batch`` (``mirroring.staging``). These tests pause the run between two
batches through its ``between_batches`` hook (no timing involved) and check that

- nothing of the run is listed, served or published before the run completes, and no transaction
  of the run is open then (another writer gets the SQLite write lock at once);
- the API answers a read there (not 503);
- a run that dies between two batches resumes without writing a staged row twice, and one that
  fails or stops leaves no staged row behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from stockade.auth.principal import Principal
from stockade.auth.service import UserService
from stockade.channels.models import Artifact, Channel, SubdirIndex
from stockade.channels.scanstate import ScanStatus
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.mirroring import sync as sync_module
from stockade.mirroring.job import load_job
from stockade.mirroring.models import RunState
from stockade.mirroring.plan import build_plan
from stockade.mirroring.runs import RunService
from stockade.mirroring.service import MirrorService, MirrorSpec
from stockade.mirroring.staging import stage
from stockade.mirroring.sync import MirrorSync
from stockade.mirroring.upstream import evaluate_upstream, fetch_upstream
from stockade.policies.engine import InMemoryVulnerabilities
from tests.conftest import own_server

BATCH = 5
RECORDS = 32  # test-recipes/noarch


def _request_run(container: Container, admin: Principal, testdata: Path, name: str) -> int:
    source = (testdata / "channels" / "test-recipes").resolve().as_uri()
    with transaction(container.factory) as session:
        MirrorService(session, container.secrets).create(
            admin, name, MirrorSpec(source=source, mode="passive", subdirs=["noarch"])
        )
        return int(RunService(session, container.secrets).request(admin, name).id)


def _sync(container: Container, hook: Callable[[int, int], None]) -> MirrorSync:
    sync = container.mirror_sync()
    sync.settings = sync.settings.model_copy(update={"stage_batch": BATCH})
    sync.between_batches = hook
    return sync


def _rows(container: Container, name: str) -> dict[str, int]:
    """scan_status -> count of the channel's rows; ``servable`` -> how many are servable."""
    with container.factory() as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.name == name))
        found: dict[str, int] = {
            str(status): int(count)
            for status, count in session.execute(
                select(Artifact.scan_status, func.count())
                .where(Artifact.channel_id == channel_id)
                .group_by(Artifact.scan_status)
            ).all()
        }
        found["servable"] = (
            session.scalar(
                select(func.count()).where(
                    Artifact.channel_id == channel_id, Artifact.servable.is_(True)
                )
            )
            or 0
        )
        published = session.scalar(
            select(func.count()).where(
                SubdirIndex.channel_id == channel_id, SubdirIndex.published_rev > 0
            )
        )
        found["published"] = published or 0
    return found


def _write_lock_free(container: Container) -> bool:
    """On SQLite: whether another connection gets the write lock at once (no wait)."""
    url = container.settings.db_url
    if not url.startswith("sqlite"):
        return True  # PostgreSQL locks rows: other writers never wait for the whole run
    conn = sqlite3.connect(url.split("///", 1)[1], timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


def test_batches_show_nothing_until_the_run_completes(
    container: Container, admin: Principal, testdata: Path
) -> None:
    run_id = _request_run(container, admin, testdata, "batched")
    seen: list[dict[str, Any]] = []

    def pause(rid: int, written: int) -> None:
        assert rid == run_id
        seen.append({"written": written, "rows": _rows(container, "batched")})
        assert _write_lock_free(container), "a transaction of the run is open between batches"

    outcome = _sync(container, pause).execute(run_id)
    assert outcome is not None and outcome.state == RunState.COMPLETED, outcome
    assert [s["written"] for s in seen] == [5, 10, 15, 20, 25, 30, 32]
    for s in seen:
        assert s["rows"] == {
            ScanStatus.STAGED: s["written"],
            "servable": 0,
            "published": 0,
        }, "rows of the run were visible before it completed"
    after = _rows(container, "batched")
    assert after[ScanStatus.UNFETCHED] == RECORDS
    assert after["servable"] == RECORDS
    assert ScanStatus.STAGED not in after


def test_an_api_read_between_batches_is_answered(
    backend: str,
    tmp_path_factory: pytest.TempPathFactory,
    testdata: Path,
) -> None:
    with own_server(backend, tmp_path_factory, "staged-api", embedded_worker=False) as live:
        with transaction(live.container.factory) as session:
            users = UserService(session)
            admin = users.principal_for(users.get_by_name("admin"), via="password")
        run_id = _request_run(live.container, admin, testdata, "api-read")
        answers: list[int] = []

        def read(rid: int, written: int) -> None:
            client = live.admin
            answers.append(client.get(f"/api/v1/runs/{rid}/logs").status_code)
            answers.append(client.get("/api/v1/mirrors").status_code)

        outcome = _sync(live.container, read).execute(run_id)
        assert outcome is not None and outcome.state == RunState.COMPLETED, outcome
    assert answers, "the run never paused between batches"
    assert set(answers) == {200}, answers


def _plan(container: Container, run_id: int) -> tuple[Any, Any, Any]:
    with container.factory() as session:
        job = load_job(session, run_id, container.secrets)
    snapshot = fetch_upstream(job, container.blobs, None)
    verdict = evaluate_upstream(job, snapshot, InMemoryVulnerabilities(), utcnow())
    with container.factory() as session:
        plan = build_plan(session, job, verdict)
    return job, snapshot, plan


class Killed(BaseException):
    """What a SIGKILL between two batches leaves: the batches committed so far, nothing else."""


def test_staging_resumed_after_a_death_between_batches_writes_nothing_twice(
    container: Container, admin: Principal, testdata: Path
) -> None:
    run_id = _request_run(container, admin, testdata, "resumed")

    def die_after_two(written: int) -> None:
        if written >= 2 * BATCH:
            raise Killed

    job, snapshot, plan = _plan(container, run_id)
    with pytest.raises(Killed):
        stage(container.factory, job, plan, snapshot, batch=BATCH, between=die_after_two)
    with container.factory() as session:
        first = dict(
            session.execute(
                select(Artifact.filename, Artifact.id).where(
                    Artifact.scan_status == ScanStatus.STAGED
                )
            ).all()
        )
    assert len(first) == 2 * BATCH

    job, snapshot, plan = _plan(container, run_id)  # the next attempt plans again
    assert len(plan.staged) == 2 * BATCH and len(plan.add) == RECORDS
    written = stage(container.factory, job, plan, snapshot, batch=BATCH, between=lambda n: None)
    assert written == RECORDS - 2 * BATCH, "rows staged by the first attempt were written again"
    with container.factory() as session:
        now = dict(
            session.execute(
                select(Artifact.filename, Artifact.id).where(
                    Artifact.scan_status == ScanStatus.STAGED
                )
            ).all()
        )
    assert len(now) == RECORDS
    assert {fn: now[fn] for fn in first} == first, "a staged row was replaced"


@pytest.mark.parametrize("ending", ["stopped", "failed"])
def test_a_run_that_does_not_complete_leaves_no_staged_row(
    container: Container, admin: Principal, testdata: Path, ending: str
) -> None:
    run_id = _request_run(container, admin, testdata, "ended")

    def end(rid: int, written: int) -> None:
        if written < 2 * BATCH:
            return
        if ending == "stopped":
            with transaction(container.factory) as session:
                RunService(session, container.secrets).stop(admin, rid)
            return
        raise RuntimeError("the run fails between two batches")

    sync = _sync(container, end)
    sync.settings = sync.settings.model_copy(update={"heartbeat_s": 0.05})
    outcome = sync.execute(run_id)
    assert outcome is not None
    assert outcome.state == (RunState.STOPPED if ending == "stopped" else RunState.FAILED)
    rows = _rows(container, "ended")
    assert rows == {"servable": 0, "published": 0}, rows


def test_the_plan_step_holds_no_write_lock(
    container: Container, admin: Principal, testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning compares every record of the mirror (seconds at 600,000 records): it reads in a
    read-only session, so other writers (heartbeats, publications, the API) never wait for it."""
    run_id = _request_run(container, admin, testdata, "planned")
    free: list[bool] = []

    def planning(session: Any, job: Any, verdict: Any) -> Any:
        plan = build_plan(session, job, verdict)  # its queries have run in this session
        free.append(_write_lock_free(container))
        return plan

    monkeypatch.setattr(sync_module, "build_plan", planning)
    outcome = container.mirror_sync().execute(run_id)
    assert outcome is not None and outcome.state == RunState.COMPLETED, outcome
    assert free == [True], "the plan step held the write lock"
