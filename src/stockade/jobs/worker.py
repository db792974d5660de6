"""``stockade worker``: a process that runs jobs, schedules, scans and publication, and nothing else."""

from __future__ import annotations

from stockade.container import Container
from stockade.jobs.queue import JobQueue
from stockade.jobs.runtime import BackgroundRuntime


def run_worker(container: Container) -> None:
    """Blocks until SIGINT/SIGTERM (Huey's consumer owns the signals in this process)."""
    queue = JobQueue(container)
    queue.install()
    runtime = BackgroundRuntime(container, queue)
    runtime.start()
    try:
        queue.consumer(embedded=False).run()
    finally:
        runtime.stop()
        queue.close()
        container.close()
