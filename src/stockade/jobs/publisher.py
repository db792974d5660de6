"""The in-process publication worker: wakes on changes (or every few seconds) and publishes.

A short coalescing pause after a wake-up lets a burst of uploads land in one publication.
"""

from __future__ import annotations

import logging
import threading

from stockade.channels.publication import PublicationService

log = logging.getLogger("stockade.publisher")


class PublisherThread:
    def __init__(
        self, service: PublicationService, *, coalesce_s: float, poll_s: float = 2.0
    ) -> None:
        self.service = service
        self.coalesce_s = coalesce_s
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stockade-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            if woke and self.coalesce_s:
                self._stop.wait(self.coalesce_s)
            try:
                while self.service.run_pending():
                    pass
            except Exception:
                log.exception("publication failed; will retry")
                self._stop.wait(self.poll_s)
