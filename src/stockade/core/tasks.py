"""What a domain declares for the one background runtime, as data.

Each domain's ``tasks.py`` has ``declare(deps) -> Declared``: its queued tasks, its periodic
(cron) jobs and its loops. ``stockade.jobs.registry`` gathers every domain's declarations and
``stockade.jobs.runtime`` runs them, the same in ``stockade serve`` (embedded worker) and in
``stockade worker``. The types live here, below every domain, so that a domain declares its work
without importing the job edge (``stockade.jobs``), nor a job library.

How each kind stays correct with any number of processes running it:

- :class:`QueueTask`: a job taken from the queue (Huey) by one worker thread of one process; it
  takes ids, and its state is in the database (a run row, a delivery claim), so a job that runs
  again after a crash finds where it was.
- :class:`Periodic`: a cron job, claimed once across replicas by ``db.schedules.claim_due`` (a
  conditional row update with a lease): each due run happens in one process.
- :class:`Loop`: a thread in every runtime that polls intent rows or leases; each pass takes its
  work with a conditional update or a lease (a due mirror, a scan request, a publication), so any
  number of processes may run it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = ["Declared", "Loop", "Periodic", "QueueTask"]


@dataclass(frozen=True)
class QueueTask:
    """A task of the job queue, by name; ``run`` takes the ids it was enqueued with."""

    name: str
    run: Callable[..., Any]


@dataclass(frozen=True)
class Periodic:
    """A job on a cron schedule (croniter syntax); ``run`` returns a one-line summary."""

    name: str
    schedule: str
    run: Callable[[], str]
    #: How long the claim holds before another process may take an unfinished run over.
    lease: timedelta = timedelta(minutes=30)


@dataclass(frozen=True)
class Loop:
    """A background thread that calls ``tick`` every ``poll_s`` seconds until stopped.

    ``drain``: call ``tick`` again at once while it returns something true (more work waits).
    ``wake_on_change``: a committed change that asked for work (``Container.notify_changes``)
    wakes it before its poll; ``coalesce_s`` then waits a little so a burst lands in one pass
    (not after a quiet spell: the first change is worked on at once, ``jobs/loops.py``).
    ``on_start`` runs in the starting thread before the loop's first pass; ``on_stop`` after the
    thread ended.
    """

    name: str  # the thread's name
    poll_s: float
    tick: Callable[[], object]
    drain: bool = False
    wake_on_change: bool = False
    coalesce_s: float = 0.0
    on_start: Callable[[], None] | None = None
    on_stop: Callable[[], None] | None = None


@dataclass(frozen=True)
class Declared:
    """One domain's background work."""

    tasks: tuple[QueueTask, ...] = ()
    periodic: tuple[Periodic, ...] = ()
    loops: tuple[Loop, ...] = ()
    #: Called when the runtime stops, after its loops (running tasks let go at a safe point).
    on_stop: tuple[Callable[[], None], ...] = ()
