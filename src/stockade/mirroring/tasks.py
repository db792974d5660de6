"""The mirroring domain's background work.

- ``run_mirror`` (queued by run id): runs a mirror run if it is ours to run (pending, or abandoned
  by a dead worker: ``MirrorSync.execute`` claims it); a completed run's new artifacts are handed
  to vulnerability matching.
- the mirror schedule (a loop in every runtime): starts the runs whose schedule is due (taking a
  due time is a conditional update of ``mirrors.next_run_at``, so each is taken by one process)
  and hands runs left behind (a dead worker's, or a lost queue message's) to the queue again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from stockade.channels.models import Artifact
from stockade.core.context import Origin, origin
from stockade.core.secrets import SecretBox
from stockade.core.tasks import Declared, Loop, QueueTask
from stockade.db.engine import transaction
from stockade.mirroring import runs
from stockade.mirroring.errors import RunActiveError
from stockade.mirroring.models import Mirror, MirrorRun, RunState
from stockade.mirroring.placement import NOT_OURS, ApartExit, runs_apart
from stockade.mirroring.sync import MirrorSync
from stockade.settings import Settings

log = logging.getLogger("stockade.jobs")

__all__ = ["MirrorTaskDeps", "declare", "mirror_run_artifacts", "start_due_runs"]


class MirrorTaskDeps(Protocol):
    settings: Settings
    factory: sessionmaker[Session]
    secrets: SecretBox

    @property
    def dispatch_run(self) -> Callable[[int], None]: ...

    @property
    def dispatch_match(self) -> Callable[[list[int]], None]: ...

    @property
    def run_mirror_apart(self) -> Callable[[int, threading.Event], ApartExit] | None: ...

    def mirror_sync(self) -> MirrorSync: ...


def declare(deps: MirrorTaskDeps) -> Declared:
    sync = deps.mirror_sync()

    def run_mirror(run_id: int) -> None:
        apart = deps.run_mirror_apart
        if apart is not None and _placed_apart(deps, run_id):
            state = _run_apart(deps, apart, run_id, sync.shutdown)
            if state is None:
                return
            sync.on_change()  # its publication requests, for this process's publisher
        else:
            with origin(Origin(channel="job")):
                outcome = sync.execute(run_id)
            if outcome is None:
                return
            log.info("mirror run %s: %s (%s)", run_id, outcome.state, outcome.summary)
            state = outcome.state
        if state == RunState.COMPLETED:
            with transaction(deps.factory) as session:
                added = mirror_run_artifacts(session, run_id)
            if added:
                deps.dispatch_match(added)

    schedule = Loop(
        "stockade-mirror-schedule",
        deps.settings.mirror.scheduler_poll_s,
        lambda: start_due_runs(deps),
    )
    return Declared(
        tasks=(QueueTask("run_mirror", run_mirror),),
        loops=(schedule,),
        on_stop=(sync.close,),  # running runs let go at their next safe point
    )


def _placed_apart(deps: MirrorTaskDeps, run_id: int) -> bool:
    with transaction(deps.factory) as session:
        return runs_apart(session, run_id, deps.settings.mirror)


def _run_apart(
    deps: MirrorTaskDeps,
    apart: Callable[[int, threading.Event], ApartExit],
    run_id: int,
    shutdown: threading.Event,
) -> RunState | None:
    """The run in a process of its own (``placement.py``); the state it left the run in, or None
    when it did not run it (another worker had it, or the process failed: the run's lease then
    lapses and the schedule hands it on, as after a crash)."""
    ended = apart(run_id, shutdown)
    if ended.status == NOT_OURS:
        return None
    peak = ended.peak_rss_bytes // 2**20
    if ended.status != 0:
        log.warning(
            "mirror run %s: its process ended with status %s (peak %d MiB)",
            run_id,
            ended.status,
            peak,
        )
        return None
    with transaction(deps.factory) as session:
        run = session.get(MirrorRun, run_id)
        state = RunState(run.state) if run is not None else None
    log.info("mirror run %s: %s (in a process of its own, peak %d MiB)", run_id, state, peak)
    return state


def start_due_runs(deps: MirrorTaskDeps) -> list[int]:
    """One pass of the mirror schedule; returns the run ids handed to the queue."""
    factory = deps.factory
    started: list[int] = []
    with transaction(factory) as session:
        due = runs.take_due_mirrors(session)
    for mirror_id in due:
        try:
            with transaction(factory) as session:
                mirror = session.get(Mirror, mirror_id)
                if mirror is None:
                    continue
                run = runs.RunService(session, deps.secrets).create(mirror, trigger="schedule")
                started.append(run.id)
        except RunActiveError:
            log.info("mirror %s: scheduled run skipped, one is in progress", mirror_id)
    stale = timedelta(seconds=deps.settings.mirror.stale_after_s)
    with transaction(factory) as session:
        started += runs.runs_to_resume(session, stale_after=stale, pending_after=stale)
    for run_id in started:
        deps.dispatch_run(run_id)
    return started


def mirror_run_artifacts(session: Session, run_id: int) -> list[int]:
    """Artifacts of the run's mirror created since the run was (what its apply step added: a
    cheap indexed query; the run's apply step does not hand its ids back)."""
    run = session.get(MirrorRun, run_id)
    if run is None:
        return []
    query = select(Artifact.id).where(
        Artifact.mirror_id == run.mirror_id, Artifact.created_at >= run.created_at
    )
    return list(session.scalars(query))
