"""A Stockade cluster of REAL processes on loopback, for the fault suite (SPEC §11, issue 16):

PostgreSQL (a fresh database of ``STOCKADE_TEST_PG_URL``), Redis as the job broker, two
``stockade serve`` replicas with ``embedded_worker = false`` (they serve, and run no background
work), two ``stockade worker`` processes (publication, scans, mirror runs, queued jobs), and a
round-robin load balancer in front (:mod:`tests.support.balancer`). Any one process can be killed
with SIGKILL and started again; the others keep running::

    with cluster(tmp_path) as c:
        c.url                                # the balancer: what clients use
        c.kill("worker-1"); c.start("worker-1")
        c.names("replica")                   # ["replica-0", "replica-1"]

Blobs: :data:`BLOBS` chooses a shared blob folder (``filesystem``: every process has the same data
folder) or an S3 server (``s3``: moto's server mode, :mod:`tests.support.s3`; each process has a
data folder of its own, and package downloads redirect to presigned URLs of the store).
Redis runs with its append-only file synced at every write, as a job broker is deployed: a killed
Redis comes back with every job it had acknowledged.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import redis

from tests.conftest import PG_URL
from tests.support.balancer import Balancer
from tests.support.process import PYCACHE, STOCKADE, ServerProcess, sigkill, terminate
from tests.support.redis_server import RedisServer
from tests.support.server import fresh_database

# The one-line choice of the blob store ("filesystem" or "s3"); the environment may override it.
BLOBS = os.environ.get("STOCKADE_TEST_CLUSTER_BLOBS", "s3")
assert BLOBS in ("filesystem", "s3"), f"STOCKADE_TEST_CLUSTER_BLOBS={BLOBS}: filesystem or s3"
Kind = Literal["replica", "worker", "redis"]
KINDS: tuple[Kind, ...] = ("replica", "worker", "redis")
# Short leases and heartbeats: work of a killed process is taken over within seconds.
TIMING = {
    "STOCKADE_MIRROR__HEARTBEAT_S": "0.5",
    "STOCKADE_MIRROR__STALE_AFTER_S": "3",
    "STOCKADE_SCANNING__LEASE_S": "2",
    "STOCKADE_JOBS__POLL_S": "0.1",
    "STOCKADE_PUBLICATION__COALESCE_MS": "20",
}


class Replica(ServerProcess):
    """A ``stockade serve`` of the cluster, logging to its own file in the shared data folder."""

    name: str = "replica"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"


@dataclass
class Worker:
    """``stockade worker``, configured by environment variables as an operator would."""

    name: str
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        marker = f"=== start {self.starts}"
        with self.log_path.open("ab") as log:
            log.write(f"\n{marker}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [str(STOCKADE), "worker"],
                env=self.env,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + 60
        while (
            "Stockade worker:" not in self.log_path.read_text(errors="replace").rsplit(marker)[-1]
        ):
            if not self.alive or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL (no shutdown, no flush), and reap it."""
        sigkill(self.proc)

    def stop(self) -> None:
        terminate(self.proc, 20)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Redis(RedisServer):
    """The cluster's broker: durable (append-only file fsynced at every write)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, durable=True)

    def queued(self) -> int:
        """Jobs waiting in the broker (Huey's queue list of the ``stockade`` instance)."""
        client = redis.Redis.from_url(self.url)
        try:
            return sum(int(client.llen(key)) for key in client.keys("huey.redis.*"))
        finally:
            client.close()


@dataclass
class Cluster:
    data_dir: Path
    db_url: str
    redis: Redis
    replicas: list[Replica]
    workers: list[Worker]
    balancer: Balancer
    kills: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.balancer.url

    @property
    def admin_token(self) -> str:
        token = self.replicas[0].admin_token
        assert token is not None
        return token

    def names(self, kind: Kind) -> list[str]:
        if kind == "redis":
            return ["redis"]
        return [p.name for p in (self.replicas if kind == "replica" else self.workers)]

    def _process(self, name: str) -> Replica | Worker | Redis:
        if name == "redis":
            return self.redis
        return {p.name: p for p in self._servers()}[name]

    def _servers(self) -> list[Replica | Worker]:
        return [*self.replicas, *self.workers]

    def kill(self, name: str) -> None:
        """SIGKILL one process (no shutdown, no flush) and reap it."""
        self._process(name).kill()
        kind = name.split("-", maxsplit=1)[0]
        self.kills[kind] = self.kills.get(kind, 0) + 1

    def start(self, name: str) -> None:
        process = self._process(name)
        if not process.alive:
            process.start()

    def ensure_running(self) -> None:
        for name in ["redis", *self.names("replica"), *self.names("worker")]:
            self.start(name)

    def logs(self, lines: int = 30) -> str:
        parts = [f"--- {p.name}\n{p.log_tail(lines)}" for p in self._servers()]
        return "\n".join(parts)

    def stop(self) -> None:
        self.balancer.stop()
        for process in self._servers():
            process.kill()
        for replica in self.replicas:
            replica.stop()
        self.redis.stop()


def _blob_env(stack: ExitStack, root: Path) -> dict[str, str]:
    if BLOBS == "filesystem":
        return {}  # blobs under the shared data folder
    # imported here: only S3 blobs need moto (tests/support/s3.py)
    from tests.support.s3 import S3Server, start_moto

    proc, endpoint = start_moto(root / "moto.log")
    stack.callback(proc.wait, 30)  # runs after the kill below (last in, first out)
    stack.callback(proc.kill)
    server = S3Server(endpoint, root / "moto.log")
    bucket = server.new_bucket()
    storage = server.storage(bucket)
    env = {"STOCKADE_STORAGE__BACKEND": "s3"}
    env.update({f"STOCKADE_STORAGE__S3__{k.upper()}": str(v) for k, v in storage["s3"].items()})
    return env


def _base_env(data_dir: Path, db_url: str, redis_url: str, blobs: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return {
        **env,
        "STOCKADE_DATA_DIR": str(data_dir),
        "STOCKADE_DATABASE_URL": db_url,
        "STOCKADE_JOBS__REDIS_URL": redis_url,
        "STOCKADE_SECRET_KEY": "fault-suite-secret-key-" + "x" * 24,
        "STOCKADE_LOG_FORMAT": "json",
        "STOCKADE_LOG_LEVEL": "warning",
        "STOCKADE_VULNS__DEFAULT_FEEDS": "false",
        "STOCKADE_OUTBOUND__ALLOW_LOOPBACK": "true",
        "PYTHONPYCACHEPREFIX": str(PYCACHE),
        **TIMING,
        **blobs,
    }


@contextmanager
def cluster(root: Path | None = None) -> Iterator[Cluster]:
    """Start the whole cluster (skips without ``STOCKADE_TEST_PG_URL``); stop it at the end."""
    if not PG_URL:
        pytest.skip("the cluster needs PostgreSQL: set STOCKADE_TEST_PG_URL")
    root = root or Path(tempfile.mkdtemp(prefix="stockade-cluster-"))
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    redis_server = Redis(root)
    with ExitStack() as stack:
        db_url = stack.enter_context(fresh_database("postgresql", data_dir, PG_URL, migrated=True))
        blobs = _blob_env(stack, root)
        redis_server.start()
        stack.callback(redis_server.stop)
        env = _base_env(data_dir, db_url, redis_server.url, blobs)
        replicas = [_replica(i, _own_dir(data_dir, f"replica-{i}"), db_url, env) for i in range(2)]
        workers = [_worker(i, _own_dir(data_dir, f"worker-{i}"), env) for i in range(2)]
        balancer = Balancer(lambda: [r.port for r in replicas])
        built = Cluster(data_dir, db_url, redis_server, replicas, workers, balancer)
        stack.callback(built.stop)
        for process in built._servers():
            process.start()  # one after the other: the first creates the admin
        for replica in replicas[1:]:
            replica.admin_token = replicas[0].admin_token
        balancer.start()
        yield built


def _own_dir(data_dir: Path, name: str) -> Path:
    """With S3 blobs each process has a data folder of its own (nothing shared but the database,
    the store and the broker); with filesystem blobs they all share one."""
    if BLOBS == "filesystem":
        return data_dir
    own = data_dir / name
    own.mkdir(exist_ok=True)
    return own


def _worker(index: int, data_dir: Path, env: dict[str, str]) -> Worker:
    return Worker(f"worker-{index}", data_dir, {**env, "STOCKADE_DATA_DIR": str(data_dir)})


def _replica(index: int, data_dir: Path, db_url: str, env: dict[str, str]) -> Replica:
    own = {k: v for k, v in env.items() if k.startswith("STOCKADE_")}
    own.pop("STOCKADE_DATA_DIR")
    own.pop("STOCKADE_DATABASE_URL")
    own["STOCKADE_EMBEDDED_WORKER"] = "false"
    replica = Replica(data_dir, db_url, env=own)
    replica.name = f"replica-{index}"
    return replica
