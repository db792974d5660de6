"""A passive mirror run at conda-forge scale: time, memory and write locks (issue 18 target 5).

The upstream is the synthetic 600,000-record ``linux-64`` of ``bench_policy.py`` (about 400 MB of
JSON, served as ``repodata.json.zst`` by nginx on loopback, beside an empty ``noarch``), mirrored
under the 10-rule policy of ``bench_mirror_nochange.py``. In the same run:

- the reference: a bare ``orjson.loads`` of the same JSON file, in a fresh process (its peak RSS);
- the first run, then ``--rounds`` runs each after a 1,000-record upstream change (500 records
  patched, 500 new), executed in this process as the job runtime would, with its peak RSS
  (``VmHWM``, reset before each run) and its RSS after the run, against its RSS before;
- the longest write transaction of the run (SQLAlchemy events on the run's engine: from its first
  INSERT/UPDATE/DELETE to its commit or rollback; the heartbeat's included);
- on SQLite, the longest wait for the write lock of a probe that takes it every 50 ms from another
  connection (what any other writer of the server would wait);
- a ``stockade serve`` on the same database (no job runtime) asked ``GET /api/v1/runs/N/logs`` and
  ``GET /api/v1/mirrors`` every 100 ms during each run: answers by status, slowest answer (this
  probe and the lock probe run in their own process, so the run's GIL does not delay them).

    .venv/bin/python benchmarks/bench_mirror_scale.py [--records 600000] [--rounds 3]
        [--database-url postgresql+psycopg://...]

With ``PYTHONMALLOC=malloc`` in the environment, every object comes from glibc's allocator, whose
free pages the run gives back (``mirroring.memory``) even when a few objects outlive it; CPython's
own allocator keeps a whole 1 MiB arena for each such survivor.
"""

from __future__ import annotations

import argparse
import getpass
import json
import multiprocessing
import os
import pickle
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _common import (  # noqa: E402
    ADMIN_PASSWORD,
    PYTHON,
    banner,
    bench_dir,
    command_line,
    free_port,
    machine,
    nginx,
    render,
    stockade_server,
)
from bench_mirror_nochange import the_policy, upstream_folder  # noqa: E402
from bench_policy import ensure_input  # noqa: E402

CHANGED = 1_000

BARE = """
import sys, orjson
data = open(sys.argv[1], "rb").read()
doc = orjson.loads(data)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]) // 1024)
"""

CHANGE = """
import sys, hashlib, orjson, zstandard
source, target, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
doc = orjson.loads(open(source, "rb").read())
part = doc["packages.conda"] or doc["packages"]
names = sorted(part)
for seed in range(1, rounds + 1):  # round N: the changes of rounds 1..N, so N-1 to N is 1,000
    for i in range(500):  # patched in place (a repodata hot-fix): same file, new record
        rec = part[names[(seed * 7919 + i * 997) % len(names)]]
        rec["depends"] = [*rec.get("depends", []), f"patched-{seed} >=1"]
    for i in range(500):  # new builds
        fn = names[(seed * 104729 + i * 1009) % len(names)]
        rec = dict(part[fn])
        new = fn.replace(".conda", f"_r{seed}.conda").replace(".tar.bz2", f"_r{seed}.tar.bz2")
        rec["build"] = rec["build"] + f"_r{seed}"
        rec["sha256"] = hashlib.sha256(new.encode()).hexdigest()
        part[new] = rec
raw = orjson.dumps(doc)
tmp = target + ".tmp"
with open(tmp, "wb") as out:
    out.write(zstandard.ZstdCompressor(level=3, threads=-1).compress(raw))
import os; os.replace(tmp, target)
"""


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)


class WriteTimer:
    """Write transactions on an engine: from BEGIN IMMEDIATE (SQLite write sessions) or the
    first INSERT/UPDATE/DELETE to the commit or rollback."""

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.longest = 0.0
        self.what = ""
        self.count = 0
        self._open: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "before_cursor_execute", self._execute)
        event.listen(engine, "commit", self._end)
        event.listen(engine, "rollback", self._end)

    def reset(self) -> None:
        with self._lock:
            self.longest, self.what, self.count = 0.0, "", 0

    def _begin(self, conn: Any) -> None:
        # SQLite: a write session takes the lock at BEGIN IMMEDIATE (db/engine.py), reads or not
        if conn.engine.dialect.name == "sqlite" and not conn.get_execution_options().get(
            "readonly"
        ):
            key = id(conn.connection.dbapi_connection)
            self._open.setdefault(key, (time.perf_counter(), "BEGIN IMMEDIATE"))

    def _execute(self, conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        verb = statement.lstrip()[:6].upper()
        if verb in ("INSERT", "UPDATE", "DELETE"):
            key = id(conn.connection.dbapi_connection)
            self._open.setdefault(key, (time.perf_counter(), " ".join(statement.split()[:4])))

    def _end(self, conn: Any) -> None:
        opened = self._open.pop(id(conn.connection.dbapi_connection), None)
        if opened is not None:
            took = time.perf_counter() - opened[0]
            with self._lock:
                self.count += 1
                if took > self.longest:
                    self.longest, self.what = took, opened[1]


class Probe(threading.Thread):
    """GETs API pages, and (SQLite) takes the write lock, until stopped."""

    def __init__(self, url: str, token: str, run_id: int, db_file: Path | None) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.run_id, self.db_file = url, token, run_id, db_file
        self.stop = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.slowest = 0.0
        self.lock_wait = 0.0

    def run(self) -> None:
        lock = threading.Thread(target=self._lock_probe, daemon=True)
        if self.db_file is not None:
            lock.start()
        headers = {"authorization": f"Bearer {self.token}"}
        paths = [f"/api/v1/runs/{self.run_id}/logs", "/api/v1/mirrors"]
        with httpx.Client(base_url=self.url, headers=headers, timeout=120) as client:
            while not self.stop.is_set():
                for path in paths:
                    started = time.perf_counter()
                    try:
                        code = client.get(path).status_code
                    except httpx.HTTPError:
                        code = 0
                    self.slowest = max(self.slowest, time.perf_counter() - started)
                    self.statuses[code] += 1
                self.stop.wait(0.1)
        if lock.is_alive():
            lock.join()

    def _lock_probe(self) -> None:
        assert self.db_file is not None
        conn = sqlite3.connect(self.db_file, timeout=120, isolation_level=None)
        while not self.stop.is_set():
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            self.lock_wait = max(self.lock_wait, time.perf_counter() - started)
            conn.execute("ROLLBACK")
            self.stop.wait(0.05)
        conn.close()


def _probe_process(args: tuple[Any, ...], ready: Any, stop: Any, out: Any) -> None:
    """The probe in its own process: in the run's process it would wait for the GIL whenever
    the run makes a long C call, and count that wait as the server's."""
    probe = Probe(*args)
    probe.start()
    ready.set()
    stop.wait()
    probe.stop.set()
    probe.join()
    out.put((dict(probe.statuses), probe.slowest, probe.lock_wait))


def bare_parse_mib(json_path: Path) -> int:
    out = subprocess.run([PYTHON, "-c", BARE, str(json_path)], capture_output=True, check=True)
    return int(out.stdout.split()[-1])


def run_once(
    container: Any, admin: Any, timer: WriteTimer, server: Any, token: str, *, apart: bool
) -> dict[str, Any]:
    from stockade.db.engine import transaction
    from stockade.mirroring.runs import RunService

    with transaction(container.factory) as session:
        run_id = RunService(session, container.secrets).request(admin, "upstream").id
    db_file = None
    if container.settings.db_url.startswith("sqlite"):
        db_file = Path(container.settings.db_url.split("///", 1)[1])
    ctx = multiprocessing.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    args = (server.url, token, run_id, db_file)
    prober = ctx.Process(target=_probe_process, args=(args, ready, stop, out), daemon=True)
    prober.start()
    ready.wait(120)
    timer.reset()
    before = status_kb("VmRSS") / 1024
    reset_peak()
    started = time.perf_counter()
    result = _run_apart(container, run_id) if apart else _run_inline(container, run_id, timer)
    took = time.perf_counter() - started
    stop.set()
    statuses, slowest, lock_wait = out.get(timeout=300)
    prober.join(60)
    after = status_kb("VmRSS") / 1024
    if result["state"] != "completed":
        raise SystemExit(f"the run did not complete: {result['state']}")
    return {
        **result,
        "took": took,
        "before": before,
        "after": after,
        "lock_wait": lock_wait,
        "statuses": statuses,
        "slowest": slowest,
    }


def _run_inline(container: Any, run_id: int, timer: WriteTimer) -> dict[str, Any]:
    """The run in this process (``[mirror] run_apart = "never"``): peak and CPU of this one."""
    cpu = time.thread_time()
    outcome = container.mirror_sync().execute(run_id)
    return {
        "state": outcome.state if outcome else None,
        "counts": outcome.counts if outcome else {},
        "cpu": time.thread_time() - cpu,
        "peak": status_kb("VmHWM") / 1024,
        "server": 0.0,
        "write": timer.longest,
        "writes": timer.count,
        "what": timer.what,
    }


def _run_apart(container: Any, run_id: int) -> dict[str, Any]:
    """The run in a process of its own, started as ``jobs/apart.py`` starts it: peak and CPU of
    that process (``wait4``), and this one's peak beside it (the server's, while it ran)."""
    from stockade.mirroring.models import MirrorRun

    writes = bench_dir("mirror-scale", "writes") / f"{run_id}.json"
    proc = subprocess.Popen(
        [PYTHON, str(HERE / "_apart_child.py"), str(run_id), str(os.getpid())],
        stdin=subprocess.PIPE,
        env={**os.environ, "BENCH_WRITES_OUT": str(writes)},
        start_new_session=True,
    )
    assert proc.stdin is not None
    with proc.stdin:
        proc.stdin.write(pickle.dumps(container.settings))
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the run's process ended with status {proc.returncode}")
    timed = json.loads(writes.read_text())
    with container.factory() as session:
        run = session.get(MirrorRun, run_id)
        state, counts = run.state, dict(run.counts)
    return {
        "state": state,
        "counts": counts,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak": usage.ru_maxrss / 1024,
        "server": status_kb("VmHWM") / 1024,
        "write": timed["longest"],
        "writes": timed["count"],
        "what": timed["what"],
    }


def show(label: str, r: dict[str, Any], bare: int) -> None:
    c = r["counts"]
    where = "in the run's own process" if r["server"] else "in the run's thread"
    beside = f", this process's peak {r['server']:.0f} MiB beside it" if r["server"] else ""
    print(
        f"{label}: {r['took']:.1f} s ({r['cpu']:.1f} CPU-s {where}); "
        f"RSS before {r['before']:.0f} MiB, peak {r['peak']:.0f} MiB {where} "
        f"({r['peak'] / bare:.2f}x the bare parse){beside}, after {r['after']:.0f} MiB "
        f"(+{r['after'] - r['before']:.0f}); longest write transaction {r['write']:.2f} s "
        f"({r['writes']} writes, the longest began {r['what']!r}); lock probe waited at most "
        f"{r['lock_wait']:.2f} s; API answers "
        f"{r['statuses']}, slowest {r['slowest']:.2f} s; added {c.get('added')}, changed "
        f"{c.get('changed')}, removed {c.get('removed')}, kept {c.get('kept')}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=600_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the data folder")
    parser.add_argument(
        "--placement",
        choices=["apart", "inline"],
        default="apart",
        help="apart (the default [mirror] run_apart = auto for a first run and a big mirror): "
        "each run in a process of its own; inline: in this process",
    )
    args = parser.parse_args()

    from stockade.auth.service import UserService
    from stockade.container import Container
    from stockade.db.engine import transaction
    from stockade.mirroring.service import MirrorService, MirrorSpec
    from stockade.policies.service import PolicyService
    from stockade.settings import load_settings

    banner(f"mirror run at scale, {args.records:,}-record upstream subdir")
    print(machine(), "; load average", os.getloadavg())
    print(f"PYTHONMALLOC={os.environ.get('PYTHONMALLOC', '(default: pymalloc)')}")
    source, _extras = ensure_input(args.records)
    root = upstream_folder(args.records)
    bare = bare_parse_mib(source)
    print(f"reference: bare orjson.loads of {source.name} peaks at {bare} MiB", flush=True)
    workdir = bench_dir("mirror-scale", "nginx")
    data_dir = bench_dir("mirror-scale", f"data-{os.getpid()}")
    port = free_port()
    conf = render(
        HERE / "nginx" / "static.conf", port=port, root=root, prefix=workdir, user=getpass.getuser()
    )
    env = {"STOCKADE_EMBEDDED_WORKER": "false", "STOCKADE_OUTBOUND__ALLOW_LOOPBACK": "true"}
    if args.database_url:
        env["STOCKADE_DATABASE_URL"] = args.database_url
    target = root / "linux-64" / "repodata.json.zst"
    pristine = target.with_suffix(".pristine")
    if not pristine.exists():
        pristine.write_bytes(target.read_bytes())
    target.write_bytes(pristine.read_bytes())
    with nginx(conf, workdir), stockade_server(data_dir, extra_env=env) as server:
        token = server.token()
        overrides: dict[str, Any] = {"outbound": {"allow_loopback": True}}  # nginx on loopback
        if args.database_url:
            overrides["database_url"] = args.database_url
        settings = load_settings(data_dir=data_dir, admin_password=ADMIN_PASSWORD, **overrides)
        container = Container.build(settings)
        timer = WriteTimer(container.engine)
        with transaction(container.factory) as session:
            users = UserService(session)
            admin = users.principal_for(users.get_by_name("admin"), via="password")
        with transaction(container.factory) as session:
            spec = MirrorSpec(
                source=f"http://127.0.0.1:{port}", mode="passive", subdirs=["linux-64", "noarch"]
            )
            outbound = settings.outbound.policy()
            MirrorService(session, container.secrets, outbound).create(admin, "upstream", spec)
            PolicyService(session).create(admin, "corporate", the_policy())
            PolicyService(session).assign(admin, "corporate", channel="upstream")
        apart = args.placement == "apart"
        first = run_once(container, admin, timer, server, token, apart=apart)
        show("first run", first, bare)
        changes = []
        for round_ in range(1, args.rounds + 1):
            subprocess.run(
                [PYTHON, "-c", CHANGE, str(source), str(target), str(round_)], check=True
            )
            changes.append(run_once(container, admin, timer, server, token, apart=apart))
            show(f"{CHANGED:,}-record change #{round_}", changes[-1], bare)
        container.close()
    target.write_bytes(pristine.read_bytes())
    median = statistics.median(r["took"] for r in changes) if changes else float("nan")
    median_cpu = statistics.median(r["cpu"] for r in changes) if changes else float("nan")
    peak = max([first["peak"], *(r["peak"] for r in changes)])
    after = max([first["after"] - first["before"], *(r["after"] - r["before"] for r in changes)])
    longest = max([first["write"], *(r["write"] for r in changes)])
    bad = sum(r["statuses"].get(503, 0) for r in [first, *changes])
    print(
        f"summary ({args.placement}): first run {first['took']:.1f} s, "
        f"{first['cpu']:.1f} CPU-s (target <= 60 s); "
        f"{CHANGED:,}-record change median {median:.1f} s, {median_cpu:.1f} CPU-s over "
        f"{len(changes)} (target <= 10 s); peak {peak:.0f} MiB = "
        f"{peak / bare:.2f}x the bare parse (target <= 1.0); RSS after the run +{after:.0f} MiB "
        f"over before (target <= 200); longest write transaction {longest:.2f} s (target <= 1); "
        f"503 answers during runs: {bad}; load average {os.getloadavg()}"
    )
    print(f"reproduce with: {command_line()}")


if __name__ == "__main__":
    main()
