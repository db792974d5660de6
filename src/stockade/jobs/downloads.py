"""The download flusher: writes this process's buffered downloads every ``flush_interval_s``.

Started by the background runtime (``jobs/runtime.py``) in every process that serves conda
requests: ``serve`` always starts it (with or without the embedded worker), and a ``worker``
process runs it too (its buffer stays empty). Each batch is one transaction (raw rows and daily
counts, ``audit.downloads.write_batch``). On stop the buffer is drained, so a clean shutdown loses
nothing; a crash loses at most one flush interval.
"""

from __future__ import annotations

import logging

from stockade.audit.downloads import Download, DownloadRecorder, prune_events, write_batch
from stockade.container import Container
from stockade.core.clock import utcnow
from stockade.db.engine import transaction
from stockade.jobs.scheduler import Job
from stockade.jobs.ticker import Ticker
from stockade.search.index import refresh_downloads

log = logging.getLogger("stockade.jobs")


class DownloadFlusher(Ticker):
    name = "stockade-downloads"

    def __init__(self, container: Container) -> None:
        self.container = container
        self.recorder: DownloadRecorder = container.downloads
        self._started = False
        super().__init__(container.settings.downloads.flush_interval_s)

    def start(self) -> None:
        if not self._started:
            self._started = True
            super().start()

    def _write(self, batch: list[Download]) -> None:
        with transaction(self.container.factory) as session:
            write_batch(session, batch)
            # search's "downloaded" filter and ranking follow within one flush interval
            refresh_downloads(session, {(d.channel_id, d.name) for d in batch})

    def tick(self) -> int:
        try:
            return self.recorder.flush(self._write, drain=True)
        except Exception as exc:  # noqa: BLE001 (kept for the next tick, never fatal)
            log.warning(
                "writing downloads failed (%s); %d kept for the next try",
                exc.__class__.__name__,
                self.recorder.pending(),
            )
            return 0

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        self.tick()  # what was buffered since the last pass


def prune_downloads(container: Container) -> str:
    """The retention job: raw rows older than ``[downloads] retention_days`` go (daily counts
    stay). Claimed once across replicas by the scheduler (``claim_due``)."""
    days = container.settings.downloads.retention_days
    with transaction(container.factory) as session:
        removed = prune_events(session, utcnow(), days)
    return f"{removed} download rows older than {days} days removed"


def download_jobs(container: Container) -> list[Job]:
    settings = container.settings.downloads
    if settings.retention_days <= 0 or not settings.prune_schedule:
        return []
    return [Job("downloads-prune", settings.prune_schedule, lambda: prune_downloads(container))]
