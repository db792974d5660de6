"""The in-process scanner: wakes on changes (or every few seconds) and scans what was admitted.

Scan requests are intent rows (``channels/intake.py``), so nothing here needs to remember work: a
wake-up only makes it sooner. Several replicas each run one; the request lease keeps one scan per
artifact at a time.
"""

from __future__ import annotations

import logging
import threading

from stockade.scanning.service import ScanRunner

log = logging.getLogger("stockade.scanning")


class ScannerThread:
    def __init__(self, runner: ScanRunner, *, poll_s: float = 2.0) -> None:
        self.runner = runner
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stockade-scanner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        self.runner.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                while not self._stop.is_set() and self.runner.run_pending():
                    pass
            except Exception:
                log.exception("scanning failed; will retry")
                self._stop.wait(self.poll_s)
