"""A background thread that calls ``tick()`` every few seconds until stopped (housekeeping)."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("stockade.jobs")


class Ticker:
    """Subclasses implement ``tick``; a failing tick is logged and the next one runs as planned."""

    name = "stockade-ticker"

    def __init__(self, poll_s: float) -> None:
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def tick(self) -> object:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("%s: a pass failed", self.name)
            self._stop.wait(self.poll_s)
