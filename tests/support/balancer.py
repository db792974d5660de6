"""A small round-robin HTTP load balancer on loopback, in a thread, for the cluster tests.

It does what a load balancer with health checks does when a replica dies: a request whose
connection to one replica is refused or reset before any response byte arrived is sent to the
next replica (nginx's ``proxy_next_upstream error``); once a response has started, nothing is
retried: a replica that dies in the middle of a body leaves the client with a broken connection.

    balancer = Balancer(lambda: [replica.port for replica in replicas])
    balancer.start()            # balancer.url: http://127.0.0.1:<port>
    balancer.stop()
"""

from __future__ import annotations

import http.client
import itertools
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.server import free_port

# Before any response byte: the replica is down or died holding the request (retried elsewhere).
NOT_ANSWERED = (ConnectionRefusedError, ConnectionResetError, BrokenPipeError)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "upgrade"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self._forward()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _forward(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        for port in self.server.balancer.order():
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
            except (*NOT_ANSWERED, http.client.RemoteDisconnected):
                conn.close()
                self.server.balancer.resent += 1
                continue
            self.server.balancer.answered[port] = self.server.balancer.answered.get(port, 0) + 1
            self._relay(conn, response)
            return
        self.send_error(502, "no replica answered")

    def _relay(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        try:
            data = response.read()
        except (http.client.IncompleteRead, ConnectionError, TimeoutError):
            self.close_connection = True  # the replica died mid-body: so does this answer
            self.server.balancer.cut += 1
            return
        finally:
            conn.close()
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        length = response.getheader("content-length") if self.command == "HEAD" else None
        self.send_header("content-length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    balancer: Balancer


class Balancer:
    """Round robin over the ports ``ports()`` gives at each request (replicas may move)."""

    def __init__(self, ports: Callable[[], list[int]]) -> None:
        self.ports = ports
        self.port = free_port()
        self.answered: dict[int, int] = {}
        self.resent = 0  # requests a replica did not answer, sent to the next one
        self.cut = 0  # answers a replica died in the middle of (the client's connection closed)
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def order(self) -> list[int]:
        ports = self.ports()
        with self._lock:
            first = next(self._turn) % len(ports)
        return ports[first:] + ports[:first]

    def start(self) -> None:
        self._server = _Server(("127.0.0.1", self.port), _Handler)
        self._server.balancer = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
