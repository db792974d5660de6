"""A REAL ``stockade serve`` in a subprocess, for tests that kill it (SIGKILL) and start it again.

Unlike :mod:`tests.support.server` (uvicorn in a thread of the test process), this runs the
installed console script exactly as an administrator would, configured only by ``STOCKADE_*``
environment variables, so a test can kill it at any moment and restart it on the same data folder
and database::

    with server_process(data_dir, db_url) as server:     # started, admin token ready
        channel = server.new_channel()
        with server.client() as client:                   # bearer admin token
            client.post(f"/api/v1/channels/{channel}/files", files=...)
        server.kill()                                     # SIGKILL: no shutdown, no flush
        server.start()                                    # same data dir, same database, port
        server.restart(crash_at="publication:after-blobs", wait=False)
        assert server.wait_exit() == 137                  # died at that point (core/faults.py)

The server logs (JSON) to ``DATA_DIR/server.log``; failures quote its tail.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.server import ADMIN_PASSWORD, free_port

ROOT = Path(__file__).resolve().parents[2]
STOCKADE = Path(sys.executable).with_name("stockade")
if not STOCKADE.exists():
    STOCKADE = ROOT / ".venv" / "bin" / "stockade"
CRASH_ENV = "STOCKADE_TEST_CRASH_AT"
PYCACHE = Path(tempfile.gettempdir()) / "stockade-tests-pycache"


def sigkill(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL (no shutdown, no flush) and reap: nothing in it gets to run again."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(30)


def terminate(proc: subprocess.Popen[bytes] | None, grace_s: float) -> None:
    """A graceful stop (SIGTERM), then SIGKILL if it lingers past ``grace_s``."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        sigkill(proc)


class ServerDied(RuntimeError):
    """The process ended while the test expected it to serve."""


@dataclass
class ServerProcess:
    data_dir: Path
    db_url: str
    env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 60.0
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    admin_token: str | None = None
    starts: int = 0
    _log: Any = None

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, crash_at: str | None = None, wait: bool = True, **env: str) -> ServerProcess:
        """Start ``stockade serve``; with ``wait``, return once ``/healthz`` answers.

        ``crash_at`` sets ``STOCKADE_TEST_CRASH_AT`` for this run only; ``env`` adds variables.
        """
        if self.alive:
            raise RuntimeError("the server is already running")
        if not self.port:  # kept across restarts, so clients can keep their URL
            self.port = free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
        full = {
            **inherited,
            "STOCKADE_DATA_DIR": str(self.data_dir),
            "STOCKADE_DATABASE_URL": self.db_url,
            "STOCKADE_HOST": "127.0.0.1",
            "STOCKADE_PORT": str(self.port),
            "STOCKADE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "STOCKADE_LOG_FORMAT": "json",
            "STOCKADE_LOG_LEVEL": "warning",
            "STOCKADE_PUBLICATION__COALESCE_MS": "20",
            # test upstreams run on 127.0.0.1, refused by default (docs/adr/0010)
            "STOCKADE_OUTBOUND__ALLOW_LOOPBACK": "true",
            # no test fetches the internet's default feeds (a test turns them on with env)
            "STOCKADE_VULNS__DEFAULT_FEEDS": "false",
            # runs in the server's own process (conftest.py; test_mirror_apart.py sets it)
            "STOCKADE_MIRROR__RUN_APART": "never",
            **self.env,
            **env,
        }
        full.pop(CRASH_ENV, None)
        # Each start imports the whole application: let the servers share compiled bytecode
        # (outside the source tree) instead of compiling every module at every start.
        full.pop("PYTHONDONTWRITEBYTECODE", None)
        full.setdefault("PYTHONPYCACHEPREFIX", str(PYCACHE))
        if crash_at:
            full[CRASH_ENV] = crash_at
        if self._log is None:
            self._log = self.log_path.open("ab")
        self._log.write(f"\n=== start {self.starts} crash_at={crash_at}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            [str(STOCKADE), "serve"],
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.data_dir,
        )
        self.starts += 1
        if wait:
            try:
                self.wait_ready()
            except ServerDied:
                if "address already in use" not in self.log_tail(5).lower():
                    raise
                self.port = 0  # someone took the port while the server was down: move
                return self.start(crash_at=crash_at, wait=wait, **env)
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready():
            if not self.alive:
                raise ServerDied(f"stockade serve exited with {self.returncode}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ServerDied(f"stockade serve did not start\n{self.log_tail()}")
            time.sleep(0.05)
        if self.admin_token is None:
            self.admin_token = self._new_token()

    def _ready(self) -> bool:
        """``/healthz`` answers and, once we have a token, it is this server's database that
        knows it (not another test's server that took the port while this one was down)."""
        try:
            if httpx.get(f"{self.url}/healthz", timeout=2).status_code != 200:
                return False
            if self.admin_token is None:
                return self.alive
            with self.client(timeout=5) as client:
                return client.get("/api/v1/whoami").status_code == 200 and self.alive
        except httpx.TransportError:
            return False

    def _new_token(self) -> str:
        response = httpx.post(
            f"{self.url}/api/v1/tokens",
            json={"name": f"tests-{uuid.uuid4().hex[:6]}", "expires_in_days": 30},
            auth=("admin", ADMIN_PASSWORD),
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def assert_alive(self) -> None:
        assert self.alive, f"the server died\n{self.log_tail()}"

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """SIGKILL the server and reap it: nothing in it gets to run again."""
        sigkill(self.proc)

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait for the server to end by itself (at a crash point); its exit code."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit\n{self.log_tail()}") from None

    def restart(self, **kwargs: Any) -> ServerProcess:
        self.kill()
        return self.start(**kwargs)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it lingers."""
        terminate(self.proc, 15)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- HTTP -------------------------------------------------------------------------------

    def client(self, *, token: str | None = None, timeout: float = 60.0) -> httpx.Client:
        """A client of the server (its URL survives restarts); close it after use."""
        token = token or self.admin_token
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def new_channel(self, prefix: str = "ch") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        with self.client() as client:
            response = client.post("/api/v1/channels", json={"name": name, "privacy": "public"})
        assert response.status_code == 201, response.text
        return name

    def wait_published(self, channel: str, timeout: float = 60.0) -> None:
        """Until every subdir of ``channel`` has published its last requested revision."""
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                if not self.alive:
                    raise ServerDied(f"the server died\n{self.log_tail()}")
                subdirs = client.get(f"/api/v1/channels/{channel}/subdirs").json()
                if subdirs and not any(s["pending"] for s in subdirs):
                    return
                time.sleep(0.05)
        raise AssertionError(f"channel {channel} was not published within {timeout}s: {subdirs}")

    def artifacts(self, channel: str) -> list[dict[str, Any]]:
        """Every artifact of ``channel``, following the ``after`` cursor."""
        found: list[dict[str, Any]] = []
        after = 0
        with self.client() as client:
            while True:
                response = client.get(
                    f"/api/v1/channels/{channel}/files", params={"after": after, "limit": 1000}
                )
                assert response.status_code == 200, response.text
                page = response.json()
                found.extend(page)
                if len(page) < 1000:
                    return found
                after = page[-1]["id"]


@contextmanager
def server_process(
    data_dir: Path, db_url: str, *, start: bool = True, **env: str
) -> Iterator[ServerProcess]:
    """A server (started unless ``start`` is false: the test starts it with its own variables)
    that is stopped (and, if need be, killed) at the end."""
    server = ServerProcess(data_dir, db_url, env=dict(env))
    try:
        if start:
            server.start()
        yield server
    finally:
        server.kill()
        server.stop()


@contextmanager
def worker_process(
    data_dir: Path, db_url: str, redis_url: str | None = None, **extra_env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``stockade worker`` configured as an operator would: environment variables (``extra_env``
    added); its output goes to ``data_dir/worker.log``. Stopped at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        {
            "STOCKADE_DATA_DIR": str(data_dir),
            "STOCKADE_DATABASE_URL": db_url,
            "STOCKADE_LOG_FORMAT": "json",
            "STOCKADE_LOG_LEVEL": "info",
            "STOCKADE_MIRROR__HEARTBEAT_S": "0.5",
            "STOCKADE_PUBLICATION__COALESCE_MS": "20",
            "STOCKADE_VULNS__DEFAULT_FEEDS": "false",  # no internet feeds in tests
            "STOCKADE_MIRROR__RUN_APART": "never",  # as in conftest.py
            "PYTHONPYCACHEPREFIX": str(PYCACHE),
        }
    )
    if redis_url:
        env["STOCKADE_JOBS__REDIS_URL"] = redis_url
    env.update(extra_env)
    log_path = data_dir / "worker.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(STOCKADE), "worker"],
            env=env,
            cwd=data_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            terminate(proc, 20)
