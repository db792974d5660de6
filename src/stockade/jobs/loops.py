"""The thread that runs one declared :class:`~stockade.core.tasks.Loop`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from stockade.core.tasks import Loop

log = logging.getLogger("stockade.jobs")


class LoopThread:
    """Calls the loop's ``tick`` at start and then every ``poll_s`` (sooner when woken); a
    failing pass is logged and the next one runs after a poll.

    Woken, a loop with ``coalesce_s`` waits that long first so that a burst of changes lands in
    one pass, unless it has been quiet for at least that long: the first change after a quiet
    spell is worked on at once (one upload is published without the pause), and the rest of a
    burst, arriving while or just after that pass runs, waits as before."""

    def __init__(self, loop: Loop, clock: Callable[[], float] = time.monotonic) -> None:
        self.loop = loop
        self._clock = clock
        self._quiet_since: float | None = None  # when the last pass ended (None: none yet)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=loop.name, daemon=True)

    def start(self) -> None:
        if self.loop.on_start is not None:
            self.loop.on_start()
        self._wake.set()  # the first pass at once
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.loop.on_stop is not None:
            self.loop.on_stop()

    def _run(self) -> None:
        loop = self.loop
        while not self._stop.is_set():
            woke = self._wake.wait(loop.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            if woke and loop.coalesce_s and not self._quiet(loop.coalesce_s):
                self._stop.wait(loop.coalesce_s)
            try:
                while loop.tick() and loop.drain and not self._stop.is_set():
                    pass
            except Exception:
                log.exception("%s: a pass failed; will retry", loop.name)
                self._stop.wait(loop.poll_s)
            self._quiet_since = self._clock()

    def _quiet(self, seconds: float) -> bool:
        """Whether no pass ended in the last ``seconds`` (true before the first pass)."""
        return self._quiet_since is None or self._clock() - self._quiet_since >= seconds
