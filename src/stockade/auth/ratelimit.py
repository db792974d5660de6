"""Failed sign-ins per client address: after too many in a minute, answer 429 for a while."""

from __future__ import annotations

import threading
import time
from collections import deque

from stockade.core.errors import TooManyRequestsError

WINDOW_S = 60.0


class AttemptLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, ip: str | None) -> None:
        if ip is None:
            return
        now = time.monotonic()
        with self._lock:
            window = self._failures.get(ip)
            if window is None:
                return
            while window and window[0] <= now - WINDOW_S:
                window.popleft()
            if len(window) >= self.per_minute:
                retry = int(window[0] + WINDOW_S - now) + 1
                raise TooManyRequestsError(
                    "too many failed sign-ins from your address; wait a minute and try again",
                    retry_after=retry,
                )

    def failed(self, ip: str | None) -> None:
        if ip is None:
            return
        with self._lock:
            if len(self._failures) > 100_000:
                self._failures.clear()
            self._failures.setdefault(ip, deque()).append(time.monotonic())
