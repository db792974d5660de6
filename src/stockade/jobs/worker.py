"""``stockade worker``: a process that runs the background runtime and nothing else."""

from __future__ import annotations

from stockade.container import Container
from stockade.jobs.queue import JobQueue
from stockade.jobs.runtime import BackgroundRuntime


def run_worker(container: Container) -> None:
    """Blocks until SIGINT/SIGTERM (Huey's consumer owns the signals in this process)."""
    queue = JobQueue(container)
    queue.install()
    try:
        BackgroundRuntime(container, queue).run()
    finally:
        container.close()
