"""A real HTTP endpoint for webhook tests: a threaded ``http.server`` that records every call.

Each path answers ``200`` unless told otherwise: :meth:`Receiver.script` sets the statuses its
next calls get (``[500, 500]``: fails twice, then 200 again). :meth:`Receiver.wait` blocks until
calls matching a predicate have arrived (or fails the test after a timeout).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    status: int  # what the receiver answered

    @property
    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    @property
    def event(self) -> str:
        return self.headers.get("x-stockade-event", "")

    def verifies(self, secret: str) -> bool:
        """The receiver's check of the docs: HMAC-SHA256 of ``{timestamp}.{body}``."""
        timestamp = self.headers.get("x-stockade-timestamp", "")
        expected = hmac.new(
            secret.encode(), timestamp.encode() + b"." + self.body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(
            "sha256=" + expected, self.headers.get("x-stockade-signature", "")
        )


class Receiver:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._scripts: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                status = receiver._next_status(self.path)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver._record(Call(self.path, headers, body, status))

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def script(self, path: str, statuses: list[int]) -> None:
        with self._lock:
            self._scripts[path] = list(statuses)

    def _next_status(self, path: str) -> int:
        with self._lock:
            queue = self._scripts.get(path)
            return queue.pop(0) if queue else 200

    def _record(self, call: Call) -> None:
        with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    def on(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]

    def wait(
        self, match: Callable[[Call], bool], count: int = 1, timeout: float = 60.0
    ) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [c for c in self.calls if match(c)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(c.path, c.event, c.status) for c in self.calls]
                    raise AssertionError(f"expected {count} matching calls in {timeout}s: {seen}")
                self._changed.wait(left)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
