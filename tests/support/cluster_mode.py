"""The functional suite's cluster configuration (SPEC §11, issue 16): with
``STOCKADE_TEST_CLUSTER=1``, every live server on PostgreSQL (:func:`tests.support.server.run_server`)
is a small cluster inside the test process:

- blobs in an S3 bucket of its own on moto's server (:mod:`tests.support.s3`), package downloads
  streamed through the server (``s3.downloads = "stream"``: tests read bodies with httpx, which
  does not follow redirects; the presigned redirects have their own tests in ``test_s3_blobs.py``);
- Redis as the job broker: one ``redis-server`` per test process, a database index of its own per
  live server, so that servers never take each other's jobs;
- two replicas (two Containers and apps, each with a data folder of its own, on two ports, served
  by one event loop thread: see ``server._replica``): the first runs the background runtime
  (embedded worker), the second has ``embedded_worker = false``;
- a round-robin TCP proxy in front, whose URL is ``LiveServer.url`` and the servers' ``public_url``.
  Each client connection goes to the next replica (a kept-alive connection stays on its replica,
  as behind most load balancers; ``LiveServer.admin`` opens a new client at every use).

What replicas share as an operator configures it: ``secret_key``, the signing keys folder and the
air-gap folder (the first replica's). A test that checks something per process by design passes
``cluster=False`` to ``run_server``/``own_server``.
"""

from __future__ import annotations

import atexit
import itertools
import os
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.support.redis_server import RedisServer
from tests.support.s3 import S3Server, start_moto

ENABLED = os.environ.get("STOCKADE_TEST_CLUSTER", "") == "1"
SECRET_KEY = "stockade-cluster-test-secret-key-shared-by-replicas"
REDIS_DATABASES = 10_000  # one index per live server of a test process


def wanted(db_url: str) -> bool:
    """The cluster configuration: PostgreSQL with ``STOCKADE_TEST_CLUSTER=1``."""
    return ENABLED and db_url.startswith("postgresql")


class _Services:
    """moto's S3 server and a redis-server, started at first use in this test process (an xdist
    worker) and stopped when it exits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._s3: S3Server | None = None
        self._redis_port: int | None = None
        self._indexes = itertools.count(1)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._redis: list[RedisServer] = []
        self._root = Path(tempfile.mkdtemp(prefix="stockade-cluster-"))
        atexit.register(self.stop)

    def s3(self) -> S3Server:
        with self._lock:
            if self._s3 is None:
                proc, endpoint = start_moto(self._root / "moto.log")
                self._procs.append(proc)
                self._s3 = S3Server(endpoint, self._root / "moto.log")
            return self._s3

    def redis_url(self) -> str:
        with self._lock:
            if self._redis_port is None:
                self._redis_port = self._start_redis()
            index = next(self._indexes)
        assert index < REDIS_DATABASES, "more live servers than Redis databases"
        return f"redis://127.0.0.1:{self._redis_port}/{index}"

    def _start_redis(self) -> int:
        server = RedisServer(self._root, databases=REDIS_DATABASES).start()
        self._redis.append(server)
        return server.port

    def stop(self) -> None:
        for server in self._redis:
            server.stop()
        self._redis.clear()
        for proc in self._procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()


SERVICES = _Services()


def cluster_settings(data_dir: Path, proxy_url: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with the cluster's settings added where the test set none."""
    settings = dict(overrides)
    s3 = SERVICES.s3()
    settings.setdefault("storage", s3.storage(s3.new_bucket(), downloads="stream"))
    jobs = dict(settings.get("jobs") or {})
    jobs.setdefault("redis_url", SERVICES.redis_url())
    settings["jobs"] = jobs
    settings.setdefault("public_url", proxy_url)
    settings.setdefault("secret_key", SECRET_KEY)
    signing = dict(settings.get("signing") or {})
    signing.setdefault("keys_dir", data_dir / "keys")
    settings["signing"] = signing
    airgap = dict(settings.get("airgap") or {})
    airgap.setdefault("folder", data_dir / "airgap")
    settings["airgap"] = airgap
    return settings


class RoundRobinProxy:
    """A TCP proxy on loopback: each accepted connection is piped to the next port in turn."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.ports: list[int] = []
        self._turn = itertools.count()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="test-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ports: list[int]) -> None:
        self.ports = ports
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed: stop() was called
            port = self.ports[next(self._turn) % len(self.ports)]
            threading.Thread(target=self._serve, args=(client, port), daemon=True).start()

    def _serve(self, client: socket.socket, port: int) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", port))
        except OSError:
            client.close()
            return
        for sock in (client, upstream):  # small answers go at once (no Nagle, delayed-ACK waits)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._open.update((client, upstream))
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()

    def stop(self) -> None:
        with suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Copy until ``source`` ends, then end ``sink``'s writing half (half-closes pass through)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        with suppress(OSError):
            source.shutdown(socket.SHUT_RDWR)
    with suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextmanager
def proxy() -> Iterator[RoundRobinProxy]:
    balancer = RoundRobinProxy()
    try:
        yield balancer
    finally:
        balancer.stop()
