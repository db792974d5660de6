"""The one background runtime: every domain's loops, the periodic jobs and the job queue.

``stockade serve`` (with the embedded worker, the default) and ``stockade worker`` start this
same runtime; what it runs is declared by the domains (``jobs/registry.py``). Every piece takes
its work from intent rows, leases or conditional updates in the database, so any number of
processes may run it at once: loops take each piece of work once, periodic jobs are claimed once
per due time (``db.schedules.claim_due``), queued tasks are claimed by id.

A serving process with ``embedded_worker = false`` builds no runtime at all (``app.py``).
"""

from __future__ import annotations

from huey.consumer import Consumer

from stockade.container import Container
from stockade.jobs.loops import LoopThread
from stockade.jobs.queue import JobQueue
from stockade.jobs.scheduler import SchedulerThread


class BackgroundRuntime:
    def __init__(self, container: Container, queue: JobQueue) -> None:
        self.container = container
        self.queue = queue
        registry = queue.registry
        self.loops = [LoopThread(loop) for loop in registry.loops]
        self.scheduler = SchedulerThread(container.factory, list(registry.periodic))
        self._on_stop = registry.on_stop
        self._consumer: Consumer | None = None

    def start(self, *, consumer: bool = True) -> None:
        """Start the loops and the scheduler, and (``consumer``) job threads in this process."""
        for thread in self.loops:
            if thread.loop.wake_on_change:
                self.container.change_listeners.append(thread.notify)
        for thread in self.loops:
            thread.start()
        self.scheduler.start()
        if consumer:
            self._consumer = self.queue.consumer(embedded=True)
            self._consumer.start()

    def run(self) -> None:
        """``stockade worker``: start, run the job queue's consumer in this thread until
        SIGINT/SIGTERM (Huey's consumer owns the signals in this process), then stop."""
        self.start(consumer=False)
        try:
            self.queue.consumer(embedded=False).run()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop in the reverse order; running jobs let go at their next safe point."""
        self.scheduler.stop()
        for thread in reversed(self.loops):
            self.container.change_listeners[:] = [
                f for f in self.container.change_listeners if f != thread.notify
            ]
            thread.stop()
        for let_go in self._on_stop:
            let_go()
        if self._consumer is not None:
            self._consumer.stop()
            self._consumer = None
