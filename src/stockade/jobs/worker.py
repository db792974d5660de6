"""``stockade worker``: a process that runs jobs, schedules and publication, and nothing else."""

from __future__ import annotations

from stockade.container import Container
from stockade.jobs.mirrors import MirrorHousekeeper
from stockade.jobs.publisher import PublisherThread
from stockade.jobs.queue import JobQueue
from stockade.jobs.recurring import recurring_jobs
from stockade.jobs.scheduler import SchedulerThread
from stockade.jobs.vulns import FeedHousekeeper
from stockade.jobs.webhooks import WebhookHousekeeper


def run_worker(container: Container) -> None:
    """Blocks until SIGINT/SIGTERM (Huey's consumer owns the signals in this process)."""
    settings = container.settings
    publisher = PublisherThread(
        container.publisher, coalesce_s=settings.publication.coalesce_ms / 1000
    )
    container.change_listeners.append(publisher.notify)
    scheduler = SchedulerThread(container.factory, recurring_jobs(container))
    queue = JobQueue(container)
    queue.install()
    housekeeper = MirrorHousekeeper(container)
    feeds = FeedHousekeeper(container)
    hooks = WebhookHousekeeper(container)
    publisher.start()
    scheduler.start()
    housekeeper.start()
    feeds.start()
    hooks.start()
    try:
        queue.consumer(embedded=False).run()
    finally:
        queue.close()
        hooks.stop()
        feeds.stop()
        housekeeper.stop()
        scheduler.stop()
        publisher.stop()
        container.close()
