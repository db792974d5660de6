"""The download flusher: writes this process's buffered downloads every ``flush_interval_s``.

Not part of the background runtime: it finishes the requests this process served (the records of
its own downloads, buffered in memory by ``audit.downloads.DownloadRecorder``), so every serving
process starts it, with or without the embedded worker (``app.py``); a ``stockade worker`` serves
nothing and has none. Each batch is one transaction (raw rows and daily counts,
``audit.downloads.write_batch``). On stop the buffer is drained, so a clean shutdown loses nothing;
a crash (kill -9) loses at most this process's buffer: the downloads served since its last flush
(at most one flush interval, and never more than ``[downloads] buffer_size`` records). Nothing else
is lost: the packages were served; only their download records are.

The retention of raw rows is a periodic job of the audit domain (``audit/tasks.py``).
"""

from __future__ import annotations

import logging

from stockade.audit.downloads import Download, DownloadRecorder, write_batch
from stockade.container import Container
from stockade.db.engine import transaction
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
