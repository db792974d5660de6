"""A real ``redis-server`` on loopback for the tests (the job broker, ``jobs.redis_url``): the one
place that starts one. The binary is ``STOCKADE_TEST_REDIS_SERVER`` (``scripts/test-env`` prints
it) or ``redis-server`` on the PATH; without it, the test that asked is skipped with that reason.

    server = RedisServer(workdir)              # a free port, nothing persisted
    server.start(); server.url                 # redis://127.0.0.1:<port>/0
    server.kill(); server.start()              # SIGKILL, then back on the same port

    with redis_server(workdir) as url: ...     # started, and stopped at the end

``durable=True`` keeps an append-only file fsynced at every write, as a broker is deployed: a
killed server comes back with every job it acknowledged (the fault suite kills it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from tests.support.process import sigkill, terminate
from tests.support.server import free_port


def redis_binary() -> str:
    binary = os.environ.get("STOCKADE_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not found (set STOCKADE_TEST_REDIS_SERVER or install redis)")
    return binary


@dataclass
class RedisServer:
    workdir: Path
    durable: bool = False
    databases: int = 16
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> RedisServer:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--databases", str(self.databases)]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.durable else [
            "--appendonly", "no"
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [redis_binary(), *args],
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        try:
            while True:
                try:
                    if client.ping():
                        return self
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if not self.alive or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer:\n{self.log_tail()}")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL (no shutdown, no flush), and reap it."""
        sigkill(self.proc)

    def stop(self) -> None:
        terminate(self.proc, 20)

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port, nothing persisted; yields its URL."""
    server = RedisServer(workdir).start()
    try:
        yield server.url
    finally:
        server.stop()
