"""The one background runtime (ARCHITECTURE "One background runtime"): the domains declare their
work in their own ``tasks.py``, serve and worker start the same runtime, each due periodic job runs
once across replicas, and a replica with ``embedded_worker = false`` runs no background work."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from huey import MemoryHuey
from sqlalchemy import select

from stockade.app import create_app
from stockade.auth.principal import Principal
from stockade.channels.models import ScanRequest, SubdirIndex
from stockade.channels.service import ChannelService
from stockade.channels.upload import UploadService, validate_upload
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.core.tasks import Declared, Periodic
from stockade.db import schedules
from stockade.db.engine import transaction
from stockade.jobs import registry as registry_module
from stockade.jobs.queue import JobQueue
from stockade.jobs.registry import gather
from stockade.jobs.runtime import BackgroundRuntime
from stockade.settings import load_settings
from stockade.storage.staging import stage_stream
from tests.conftest import PG_URL
from tests.factories.packages import PackageSpec, build
from tests.support.server import fresh_database

LOOPS = {
    "stockade-publisher",
    "stockade-scanner",
    "stockade-mirror-schedule",
    "stockade-feed-schedule",
    "stockade-webhooks",
    "stockade-match-requests",
}


@pytest.mark.one_backend  # what is declared does not depend on the database
def test_each_domain_declares_its_work_and_names_are_unique(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = gather(container)
    assert {loop.name for loop in registry.loops} == LOOPS
    assert {t.name for t in registry.tasks} == {
        "run_mirror",
        "sync_feed",
        "match_artifacts",
        "deliver_webhook",
    }
    assert {p.name for p in registry.periodic} >= {"search-refresh", "downloads-prune"}
    twice = Declared(periodic=(Periodic("search-refresh", "0 * * * *", lambda: ""),))
    real = registry_module.declarations
    monkeypatch.setattr(registry_module, "declarations", lambda c: [*real(c), twice])
    with pytest.raises(ValueError, match="declared twice: search-refresh"):
        gather(container)


@contextmanager
def serving(container: Container) -> Iterator[None]:
    """The app of ``container`` started and stopped as uvicorn does (its lifespan)."""
    app = create_app(container.settings, container)
    lifespan = app.router.lifespan_context(app)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(lifespan.__aenter__())
    try:
        yield
    finally:
        loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()


def _threads_while_serving(container: Container) -> set[str]:
    """Names of the threads a serving app started."""
    before = set(threading.enumerate())
    with serving(container):
        started = {t.name for t in threading.enumerate() if t not in before}
    return {name for name in started if name.startswith("stockade")}


@pytest.fixture
def serving_only(tmp_path: Path) -> Iterator[Container]:
    with fresh_database("sqlite", tmp_path, PG_URL, migrated=True) as url:
        settings = load_settings(data_dir=tmp_path, database_url=url, embedded_worker=False)
        built = Container.build(settings)
        built.bootstrap()
        yield built
        built.close()


def _upload(container: Container, admin: Principal, tmp_path: Path) -> None:
    """An upload as the API records it: intent rows for its scan and publication."""
    with transaction(container.factory) as session:
        ChannelService(session).create(admin, "left")
    path = build(tmp_path, PackageSpec(name="waits"))
    with path.open("rb") as fh:
        staged = stage_stream(fh, container.blobs.staging_dir(), path.name, max_size=10**9)
    upload = validate_upload(staged, container.limits)
    container.blobs.put_file(staged.path, staged.sha256)
    with transaction(container.factory) as session:
        UploadService(session, container.blobs).record_all(admin, "left", [upload], force=False)


def _pending(container: Container) -> tuple[int, int]:
    """(scan requests, subdirs waiting for publication)."""
    with container.read_factory() as session:
        scans = len(session.scalars(select(ScanRequest)).all())
        waiting = session.scalars(
            select(SubdirIndex).where(SubdirIndex.published_rev < SubdirIndex.requested_rev)
        ).all()
    return scans, len(waiting)


def test_a_replica_without_the_embedded_worker_runs_no_background_work(
    serving_only: Container, tmp_path: Path
) -> None:
    from stockade.auth.service import UserService

    # serving: only the flusher of the downloads this process serves (jobs/downloads.py)
    assert _threads_while_serving(serving_only) == {"stockade-downloads"}
    with transaction(serving_only.factory) as session:
        users = UserService(session)
        admin = users.principal_for(users.get_by_name("admin"), via="password")
    with serving(serving_only):
        _upload(serving_only, admin, tmp_path)  # its commit wakes nobody here
        assert _pending(serving_only) == (1, 1), "left for a worker"
    # a worker's runtime (`stockade worker`) takes them
    runtime = BackgroundRuntime(serving_only, JobQueue(serving_only, huey=MemoryHuey("w")))
    runtime.start(consumer=False)
    try:
        deadline = time.monotonic() + 30
        while _pending(serving_only) != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runtime.stop()
    assert _pending(serving_only) == (0, 0)


@pytest.mark.one_backend  # threads of this process: the database plays no part
def test_the_embedded_worker_starts_the_whole_runtime(container: Container) -> None:
    """The counterpart of the test above: the same check sees every piece."""
    names = _threads_while_serving(container)
    assert names >= LOOPS | {"stockade-scheduler", "stockade-downloads"}
    assert any(name.startswith("stockade-jobs-Worker") for name in names)


@pytest.mark.skipif(PG_URL is None, reason="replicas share a PostgreSQL database")
def test_two_runtimes_on_postgresql_run_each_due_periodic_job_once(tmp_path: Path) -> None:
    overrides = {"audit": {"export_folder": str(tmp_path / "audit")}}
    with fresh_database("postgresql", tmp_path, PG_URL, migrated=True) as url:
        replicas = []
        for n in (1, 2):
            settings = load_settings(data_dir=tmp_path / f"r{n}", database_url=url, **overrides)
            replicas.append(Container.build(settings))
        replicas[0].bootstrap()
        try:
            _each_due_job_runs_once(replicas)
        finally:
            for replica in replicas:
                replica.close()


def _each_due_job_runs_once(replicas: list[Container]) -> None:
    runs: Counter[str] = Counter()

    def counted(job: Periodic) -> Periodic:
        def run() -> str:
            runs[job.name] += 1
            time.sleep(0.2)  # still running while the other replica polls
            return job.run()

        return dataclasses.replace(job, run=run)

    runtimes = []
    for n, replica in enumerate(replicas):
        declared = gather(replica)
        declared = dataclasses.replace(declared, periodic=tuple(map(counted, declared.periodic)))
        queue = JobQueue(replica, huey=MemoryHuey(f"r{n}"), registry=declared)
        runtime = BackgroundRuntime(replica, queue)
        runtime.scheduler.poll_s = 0.05
        runtime.scheduler.owner = f"replica-{n}:1"
        runtimes.append(runtime)
    names = {job.name for job in runtimes[0].scheduler.jobs}
    assert names >= {"search-refresh", "downloads-prune", "audit-export"}
    with transaction(replicas[0].factory) as session:  # every job due when both start
        for job in runtimes[0].scheduler.jobs:
            schedules.ensure_schedule(session, job.name, job.schedule, utcnow() - timedelta(1))
    barrier = threading.Barrier(len(runtimes))

    def start(runtime: BackgroundRuntime) -> None:
        barrier.wait()
        runtime.start()

    starters = [threading.Thread(target=start, args=(r,)) for r in runtimes]
    for starter in starters:
        starter.start()
    try:
        for starter in starters:
            starter.join(30)
        deadline = time.monotonic() + 30
        while _unfinished(replicas[0], names) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _unfinished(replicas[0], names)
        time.sleep(0.3)  # both schedulers poll several times more: nothing is due
    finally:
        for runtime in runtimes:
            runtime.stop()
    assert runs == dict.fromkeys(names, 1)


def _unfinished(container: Container, names: set[str]) -> set[str]:
    with container.read_factory() as session:
        rows = session.scalars(
            select(schedules.ScheduledJob).where(schedules.ScheduledJob.name.in_(names))
        ).all()
        return {r.name for r in rows if r.last_finished_at is None}
