"""A real HTTP endpoint for webhook tests: a threaded ``http.server`` that records every call.

Each path answers ``200`` unless told otherwise: :meth:`Receiver.script` sets the statuses its
next calls get (``[500, 500]``: fails twice, then 200 again). :meth:`Receiver.wait` blocks until
calls matching a predicate have arrived (or fails the test after a timeout).
:meth:`Receiver.misbehave` makes a path answer badly: a huge body, or an answer dripped one byte at
a time; the call records how many bytes of the answer the receiver managed to send.
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
    sent: int = 0  # bytes of the answer written (a misbehaving answer: until the caller hung up)

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
        self._behaviours: dict[str, str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                behaviour = receiver._behaviours.get(self.path)
                if behaviour is not None:
                    sent = receiver._misbehave(self, behaviour)
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver._record(Call(self.path, headers, body, 200, sent))
                    self.close_connection = True
                    return
                status = receiver._next_status(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                # recorded before answering: a caller that got the answer finds the call listed
                receiver._record(Call(self.path, headers, body, status))
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def script(self, path: str, statuses: list[int]) -> None:
        with self._lock:
            self._scripts[path] = list(statuses)

    def misbehave(self, path: str, behaviour: str) -> None:
        """Answer calls to ``path`` badly: ``huge`` (a 200 announcing and sending 300 MB),
        ``drip-body`` (a 200 whose 1 MB body comes one byte every 50 ms), ``drip-headers`` (the
        status line and headers one byte every 50 ms)."""
        assert behaviour in ("huge", "drip-body", "drip-headers")
        self._behaviours[path] = behaviour

    @staticmethod
    def _misbehave(handler: BaseHTTPRequestHandler, behaviour: str) -> int:
        size = 300 * 1024 * 1024 if behaviour == "huge" else 1024 * 1024
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nX-Pad: {'a' * 2000}\r\n\r\n"
        sent = 0
        try:
            if behaviour == "drip-headers":
                for byte in head.encode():
                    handler.wfile.write(bytes([byte]))
                    handler.wfile.flush()
                    sent += 1
                    time.sleep(0.05)
                return sent
            handler.wfile.write(head.encode())
            handler.wfile.flush()
            sent = len(head)
            chunk = b"x" * (64 * 1024) if behaviour == "huge" else b"x"
            while sent - len(head) < size:
                handler.wfile.write(chunk)
                handler.wfile.flush()
                sent += len(chunk)
                if behaviour == "drip-body":
                    time.sleep(0.05)
        except OSError:  # the caller hung up
            pass
        return sent

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
