"""Replicas benchmark (issue 16): throughput of repodata GETs and of uploads with 1 and 2
``stockade serve`` replicas behind nginx, same run, same machine, same load.

The deployment is SPEC §11's: PostgreSQL, Redis as the job broker, one ``stockade worker`` for the
background work (publication), replicas with ``embedded_worker = false`` sharing one blob folder,
and nginx in front balancing round robin (``upstream`` with keep-alive connections). Each replica
is one uvicorn process (``--workers 1``), so "2 replicas" is two processes on the machine.

- repodata: ``wrk`` full GETs of a published ``noarch/repodata.json`` (the channel the upload
  phase filled);
- uploads: Python clients (threads, httpx) each sending small real ``.conda`` packages, one file
  per multipart request; each upload is validated, stored, recorded and asks for a publication.

For each, the figures are requests/s, the CPU the replicas used per request (utime + stime of their
processes from ``/proc``, in ms), and the machine's CPU use over the run (``/proc/stat``): when
the machine is the bottleneck (2 cores shared by replicas, nginx, the worker, PostgreSQL and the
load generator), requests/s cannot scale and CPU-ms per request is the figure that tells whether a
replica costs anything by being one of two.

    .venv/bin/python benchmarks/bench_replicas.py                 # ~3 minutes
    .venv/bin/python benchmarks/bench_replicas.py --quick
    [--pg-url postgresql://...]  (default $STOCKADE_TEST_PG_URL; a database stockade_bench_replicas
    is created afresh in it)
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_PASSWORD,
    ROOT,
    SyntheticPackage,
    banner,
    bench_dir,
    command_line,
    conda_bytes,
    ensure_tools,
    free_port,
    machine,
    nginx,
    prepare_data_dir,
    server_env,
    stockade_server,
    wrk,
)

DATABASE = "stockade_bench_replicas"
UPLOAD_CLIENTS = 8


@dataclass
class Figure:
    replicas: int
    rate: float
    cpu_ms: float  # replicas' CPU per request
    machine_busy: float  # fraction of the machine's CPU used over the run


def _ticks(pid: int) -> int:
    """utime + stime of a process and its children still running, in clock ticks."""
    total = 0
    for task in [pid, *_descendants(pid)]:
        try:
            fields = Path(f"/proc/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def _descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        current = stack.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                kids = [int(k) for k in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            stack.extend(kids)
    return out


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


@contextmanager
def _measure(pids: list[int]) -> Iterator[dict[str, float]]:
    """CPU seconds of ``pids`` and the machine's busy fraction over the block."""
    hz = os.sysconf("SC_CLK_TCK")
    before = sum(_ticks(p) for p in pids)
    busy0, total0 = _machine_ticks()
    out: dict[str, float] = {}
    yield out
    busy1, total1 = _machine_ticks()
    out["cpu_s"] = (sum(_ticks(p) for p in pids) - before) / hz
    out["busy"] = (busy1 - busy0) / max(1, total1 - total0)


@contextmanager
def _database(pg_url: str) -> Iterator[str]:
    admin = sa.create_engine(
        pg_url.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {DATABASE}"))
    url = admin.url.set(database=DATABASE).render_as_string(hide_password=False)
    admin.dispose()
    yield url


@contextmanager
def _redis(workdir: Path) -> Iterator[str]:
    binary = os.environ.get("STOCKADE_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def _worker(data_dir: Path, env: dict[str, str]) -> Iterator[int]:
    log = (data_dir / "worker.log").open("ab")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("stockade")), "worker"],
        env=server_env(data_dir, **env),
        cwd=ROOT,
        stdout=log,
        stderr=log,
    )
    try:
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(20)
        log.close()


NGINX = """
user {user};
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp-client;
    proxy_temp_path {prefix}/tmp-proxy;
    client_max_body_size 0;
    upstream stockade {{
        {servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://stockade;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


@contextmanager
def _balancer(workdir: Path, ports: list[int]) -> Iterator[str]:
    port = free_port()
    servers = "\n        ".join(f"server 127.0.0.1:{p};" for p in ports)
    prefix = workdir / f"nginx-{len(ports)}"
    prefix.mkdir(exist_ok=True)
    text = NGINX.format(user=getpass.getuser(), prefix=prefix, servers=servers, port=port)
    with nginx(text, prefix):
        yield f"http://127.0.0.1:{port}"


def _packages(count: int, tag: str) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        pkg = SyntheticPackage(f"rep-{tag}-{i % 50}", f"1.{i}", "0", 0, "noarch", ("python",))
        out.append((pkg.filename, conda_bytes(pkg.index())))
    return out


def _uploads(url: str, token: str, channel: str, packages: list[tuple[str, bytes]]) -> float:
    """Send every package (one per request) from UPLOAD_CLIENTS threads; seconds taken."""
    local = threading.local()
    made: list[httpx.Client] = []
    lock = threading.Lock()

    def send(item: tuple[str, bytes]) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=120)
            with lock:
                made.append(local.http)
        files = [("files", (item[0], item[1], "application/octet-stream"))]
        local.http.post(f"{url}/api/v1/channels/{channel}/files", files=files).raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(UPLOAD_CLIENTS) as pool:
        list(pool.map(send, packages))
    elapsed = time.perf_counter() - started
    for http in made:
        http.close()
    return elapsed


def _wait_published(url: str, channel: str, count: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/conda/{channel}/noarch/repodata.json", timeout=30)
        if answer.status_code == 200 and len(answer.json().get("packages.conda", {})) >= count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{channel} was not published with {count} records")


def _run(args: argparse.Namespace, replicas: list[tuple[int, int]], balancer: str, token: str,
         stamp: str) -> tuple[Figure, Figure, str]:  # fmt: skip
    """One configuration: uploads, then repodata GETs, through the balancer."""
    pids = [pid for pid, _ in replicas]
    channel = f"replicas-{len(replicas)}-{stamp}"
    headers = {"authorization": f"Bearer {token}"}
    httpx.post(
        f"{balancer}/api/v1/channels",
        json={"name": channel, "privacy": "public"},
        headers=headers,
        timeout=30,
    ).raise_for_status()
    packages = _packages(args.uploads, f"{len(replicas)}{stamp}")
    with _measure(pids) as cpu:
        elapsed = _uploads(balancer, token, channel, packages)
    upload = Figure(
        len(replicas), len(packages) / elapsed, cpu["cpu_s"] * 1000 / len(packages), cpu["busy"]
    )
    _wait_published(balancer, channel, len(packages))
    url = f"{balancer}/conda/{channel}/noarch/repodata.json"
    with _measure(pids) as cpu:
        result = wrk(url, duration=args.duration, connections=args.connections, threads=1)
    requests = result.requests_per_s * args.duration
    get = Figure(len(replicas), result.requests_per_s, cpu["cpu_s"] * 1000 / requests, cpu["busy"])
    if result.non_2xx or result.errors:
        print(f"  wrk: {result.non_2xx} non-2xx, {result.errors}", flush=True)
    return upload, get, result.command


def _configuration(
    args: argparse.Namespace, work: Path, env: dict[str, str], count: int, stamp: str
) -> tuple[Figure, Figure, str]:
    with ExitStack() as stack:
        replicas = []
        for _ in range(count):
            server = stack.enter_context(stockade_server(work / "data", extra_env=env))
            replicas.append((server.pid, int(server.url.rsplit(":", 1)[1])))
        token = server.token()
        balancer = stack.enter_context(_balancer(work, [port for _, port in replicas]))
        return _run(args, replicas, balancer, token, stamp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--pg-url", default=os.environ.get("STOCKADE_TEST_PG_URL"))
    parser.add_argument("--duration", type=float, default=None, help="wrk seconds per config")
    parser.add_argument("--uploads", type=int, default=None, help="packages per config")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    args.duration = args.duration or (5.0 if args.quick else 20.0)
    args.uploads = args.uploads or (100 if args.quick else 400)
    if not args.pg_url:
        raise SystemExit("PostgreSQL: give --pg-url or set STOCKADE_TEST_PG_URL")
    ensure_tools("nginx", "wrk")
    work = bench_dir("replicas")
    shutil.rmtree(work / "data", ignore_errors=True)
    (work / "data").mkdir()
    banner("replicas: repodata GETs and uploads, 1 and 2 replicas behind nginx")
    print(f"machine: {machine()}", flush=True)
    with ExitStack() as stack:
        db_url = stack.enter_context(_database(args.pg_url))
        redis_url = stack.enter_context(_redis(work))
        env = {
            "STOCKADE_DATABASE_URL": db_url,
            "STOCKADE_JOBS__REDIS_URL": redis_url,
            "STOCKADE_EMBEDDED_WORKER": "false",
            "STOCKADE_SECRET_KEY": "bench-replicas-secret-key-" + "x" * 24,
            "STOCKADE_VULNS__DEFAULT_FEEDS": "false",
            "STOCKADE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        }
        prepare_data_dir(work / "data", server_env(work / "data", **env))  # migrated once
        stack.enter_context(_worker(work / "data", env))
        stamp = str(int(time.time()))
        results = {n: _configuration(args, work, env, n, stamp) for n in (1, 2)}
    _report(args, results)


def _report(args: argparse.Namespace, results: dict[int, tuple[Figure, Figure, str]]) -> None:
    print(f"\nload: wrk -t1 -c{args.connections} -d{args.duration:g}s; "
          f"uploads: {args.uploads} packages from {UPLOAD_CLIENTS} httpx threads")  # fmt: skip
    print(f"{'':<26}{'1 replica':>22}{'2 replicas':>22}{'ratio':>8}")
    for index, what, unit in ((1, "repodata.json GET", "req/s"), (0, "upload (1 file)", "pkg/s")):
        one, two = results[1][index], results[2][index]
        print(
            f"{what:<26}{one.rate:>14.1f} {unit:<7}{two.rate:>14.1f} {unit:<7}"
            f"{two.rate / one.rate:>7.2f}x"
        )
        print(
            f"{'  replicas CPU-ms/request':<26}{one.cpu_ms:>14.2f}{'':8}{two.cpu_ms:>14.2f}"
            f"{'':8}{two.cpu_ms / one.cpu_ms:>7.2f}x"
        )
        print(f"{'  machine CPU busy':<26}{one.machine_busy:>14.0%}{'':8}{two.machine_busy:>14.0%}")
    print(f"\nreproduce with: {command_line()}")


if __name__ == "__main__":
    main()
