"""The one background runtime: publication, scanning, schedules, the job queue and housekeepers.

``serve`` (embedded default) and ``worker`` start the same set; each piece takes its work from
intent rows or leases in the database, so several processes can run it at once.
"""

from __future__ import annotations

from typing import Protocol

from stockade.container import Container
from stockade.jobs.downloads import DownloadFlusher
from stockade.jobs.mirrors import MirrorHousekeeper
from stockade.jobs.publisher import PublisherThread
from stockade.jobs.queue import JobQueue
from stockade.jobs.recurring import recurring_jobs
from stockade.jobs.scanner import ScannerThread
from stockade.jobs.scheduler import SchedulerThread
from stockade.jobs.vulns import FeedHousekeeper
from stockade.jobs.webhooks import WebhookHousekeeper


class _Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class BackgroundRuntime:
    def __init__(self, container: Container, queue: JobQueue) -> None:
        settings = container.settings
        self.container = container
        self.queue = queue
        self.publisher = PublisherThread(
            container.publisher, coalesce_s=settings.publication.coalesce_ms / 1000
        )
        self.scanner = ScannerThread(container.scans)
        # In every serving process, with or without the embedded worker (``app.py``).
        self.downloads = DownloadFlusher(container)
        # Started in this order, stopped in the reverse one.
        self._services: list[_Service] = [
            self.publisher,
            self.scanner,
            SchedulerThread(container.factory, recurring_jobs(container)),
            MirrorHousekeeper(container),
            FeedHousekeeper(container),
            WebhookHousekeeper(container),
            self.downloads,
        ]

    def start(self) -> None:
        self.container.change_listeners.append(self.publisher.notify)
        self.container.change_listeners.append(self.scanner.notify)
        for service in self._services:
            service.start()
        self.publisher.notify()
        self.scanner.notify()

    def stop(self) -> None:
        for service in reversed(self._services):
            service.stop()
