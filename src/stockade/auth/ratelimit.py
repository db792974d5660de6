"""Failed sign-ins per client address: after too many in a minute, answer 429 for a while.

IPv6 clients are counted per /64 (one host usually owns the whole prefix). The table is bounded:
when full, the addresses idle longest are forgotten first, never everyone at once.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque

from stockade.core.errors import TooManyRequestsError

WINDOW_S = 60.0
MAX_ADDRESSES = 100_000


def client_key(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(address)


class AttemptLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, ip: str | None) -> None:
        if ip is None:
            return
        now = time.monotonic()
        with self._lock:
            window = self._failures.get(client_key(ip))
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
        key = client_key(ip)
        with self._lock:
            window = self._failures.pop(key, None) or deque(maxlen=self.per_minute * 2)
            window.append(time.monotonic())
            self._failures[key] = window  # most recent last
            while len(self._failures) > MAX_ADDRESSES:
                self._failures.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()
