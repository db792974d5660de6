"""A live Stockade server for functional tests: real uvicorn on a loopback port, in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from stockade.app import create_app
from stockade.container import Container
from stockade.core.logging import configure_logging
from stockade.db.migrate import upgrade
from stockade.settings import Settings, load_settings
from stockade.web.middleware import CondaFastPath
from tests.support.templates import clone_sqlite, pg_template

ADMIN_PASSWORD = "admin-password-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fresh_database(
    backend: str, data_dir: Path, pg_url: str | None, *, migrated: bool = False
) -> Iterator[str]:
    """A brand-new database of the given backend, dropped afterwards: empty, or with
    ``migrated`` a clone of a migrated template (tests/support/templates.py)."""
    if backend == "sqlite":
        path = data_dir / "stockade.db"
        if migrated:
            clone_sqlite(path)
        yield f"sqlite:///{path}"
        return
    assert pg_url is not None
    name = f"stockade_t_{uuid.uuid4().hex[:12]}"
    template = f' TEMPLATE "{pg_template(pg_url)}"' if migrated else ""
    admin = create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"{template}'))
    base = pg_url.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        try:
            _drop_database(admin, name)
        finally:
            admin.dispose()


def _drop_database(admin: Engine, name: str) -> None:
    """Drop a test database; an autovacuum worker still in it (a process of another role, which
    ``WITH (FORCE)`` may not terminate) only delays the drop for a moment."""
    for attempt in range(40):
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except (ProgrammingError, OperationalError):
            if attempt == 39:
                raise
            time.sleep(0.25)


@dataclass
class LiveServer:
    url: str
    settings: Settings
    container: Container
    admin_token: str
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)
        self._clients.append(client)
        return client

    @property
    def process_url(self) -> str:
        """The URL of ``container``'s own process (the first replica in a cluster, not the
        proxy): for a test that checks what that process does or remembers."""
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def admin(self) -> httpx.Client:
        return self.client(self.admin_token)

    def new_channel(self, privacy: str = "public", prefix: str = "ch") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        response = self.admin.post("/api/v1/channels", json={"name": name, "privacy": privacy})
        assert response.status_code == 201, response.text
        return name

    def upload(self, channel: str, *paths: Path, token: str | None = None) -> httpx.Response:
        files = [("files", (p.name, p.read_bytes(), "application/octet-stream")) for p in paths]
        return self.client(token or self.admin_token).post(
            f"/api/v1/channels/{channel}/files", files=files
        )

    def wait_published(self, channel: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            subdirs = self.admin.get(f"/api/v1/channels/{channel}/subdirs").json()
            if subdirs and not any(s["pending"] for s in subdirs):
                return
            time.sleep(0.05)
        raise AssertionError(f"channel {channel} was not published within {timeout}s")

    def close(self) -> None:
        for client in self._clients:
            client.close()


@contextmanager
def run_server(
    data_dir: Path, db_url: str, *, cluster: bool | None = None, **overrides: Any
) -> Iterator[LiveServer]:
    """A live server on ``db_url`` with settings ``overrides``. ``cluster`` (default: on for
    PostgreSQL with ``STOCKADE_TEST_CLUSTER=1``): two replicas behind a proxy, S3 blobs and Redis
    jobs (:mod:`tests.support.cluster_mode`); ``False`` for a test of one process by design."""
    from tests.support import cluster_mode  # it imports this module

    if cluster is None:
        cluster = cluster_mode.wanted(db_url)
    if not cluster:
        settings = _settings(data_dir, db_url, free_port(), overrides)
        with _replica(settings, bootstrap=True) as container:
            with _signed_in(f"http://127.0.0.1:{settings.port}", settings, container) as live:
                yield live
        return
    with cluster_mode.proxy() as balancer:
        overrides = cluster_mode.cluster_settings(data_dir, balancer.url, overrides)
        first = _settings(data_dir, db_url, free_port(), overrides)
        second = _settings(
            data_dir.with_name(f"{data_dir.name}-replica2"),
            db_url,
            free_port(),
            {**overrides, "embedded_worker": False},
        )
        with (
            _event_loop() as loop,
            _replica(first, bootstrap=True, loop=loop) as container,
            _replica(second, bootstrap=False, loop=loop),
        ):
            balancer.start([first.port, second.port])
            with _signed_in(balancer.url, first, container) as live:
                yield live


def _settings(data_dir: Path, db_url: str, port: int, overrides: dict[str, Any]) -> Settings:
    overrides = dict(overrides)
    # Every test client signs in from 127.0.0.1: keep the per-address limit out of their way
    # (tests of the limit pass their own value).
    overrides.setdefault("auth", {"login_attempts_per_minute": 10_000})
    # Test upstreams, feeds, webhook receivers and OpenID providers run on 127.0.0.1: loopback is
    # refused by default (docs/adr/0010), so live servers allow it unless a test says otherwise.
    overrides.setdefault("outbound", {"allow_loopback": True})
    overrides["publication"] = {"coalesce_ms": 20, **overrides.get("publication", {})}
    return load_settings(
        data_dir=data_dir,
        database_url=db_url,
        host="127.0.0.1",
        port=port,
        admin_password=ADMIN_PASSWORD,
        **overrides,
    )


@contextmanager
def _replica(
    settings: Settings, *, bootstrap: bool, loop: asyncio.AbstractEventLoop | None = None
) -> Iterator[Container]:
    """One serving process's app (as `stockade serve` runs it) on uvicorn: in a thread of its
    own, or on ``loop`` (the replicas of a cluster share one: FastAPI builds a route's
    dependencies at its first request, on route objects every app of the process shares, and two
    threads building one at once fail with a 500)."""
    configure_logging("info", "json")  # as in production: the access log goes through logging
    if bootstrap:
        upgrade(settings.db_url)
    container = Container.build(settings)
    if bootstrap:
        container.bootstrap()
    app = CondaFastPath(create_app(settings, container))  # as `stockade serve` runs it
    config = uvicorn.Config(
        app, host="127.0.0.1", port=settings.port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    if loop is None:
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        running: Callable[[], bool] = thread.is_alive
        stopped: Callable[[], object] = lambda: thread.join(30)  # noqa: E731
    else:
        future = asyncio.run_coroutine_threadsafe(server.serve(), loop)
        running = lambda: not future.done()  # noqa: E731
        stopped = lambda: future.result(30)  # noqa: E731
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline or not running():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        yield container
    finally:
        server.should_exit = True
        stopped()
        container.close()


@contextmanager
def _event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True, name="test-replicas")
    thread.start()
    try:
        yield loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


@contextmanager
def _signed_in(url: str, settings: Settings, container: Container) -> Iterator[LiveServer]:
    token = httpx.post(
        f"{url}/api/v1/tokens",
        json={"name": "tests", "expires_in_days": 30},
        auth=("admin", ADMIN_PASSWORD),
        timeout=60,  # a loaded CI machine (a first sign-in took 7 s under -n 4)
    ).json()["token"]
    live = LiveServer(url=url, settings=settings, container=container, admin_token=token)
    try:
        yield live
    finally:
        live.close()
