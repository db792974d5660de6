"""Startup, idle memory and CLI ``--help`` times, each beside a reference in the same run.

What is measured (interleaved rounds; medians):

- ``stockade serve`` (one process) and ``stockade serve --workers 2``, started on a data folder
  that an earlier start already migrated (the "second start"): wall time from the command to the
  first ``200`` on ``/healthz``, the CPU seconds the process tree spent until then (user + system
  from ``/proc``, dead children included: much less disturbed by other work on the machine than
  wall time), and the idle resident memory of the whole tree (supervisor, workers and
  multiprocessing's helper) once it has stopped growing, with the supervisor's own share.
- Reference, same rounds: bare ``uvicorn`` serving a three-line ASGI app (one process, and
  ``--workers 2``), measured the same way.
- ``--help`` of a few commands (a fresh process each, as typed in a shell), beside
  ``python -c pass``: wall and CPU time.

The figures depend on compiled bytecode: ``make install`` compiles it (``uv sync
--compile-bytecode`` and the project's own modules); the script says whether it is there.

    .venv/bin/python benchmarks/bench_startup.py             # 5 rounds
    .venv/bin/python benchmarks/bench_startup.py --quick     # 2 rounds
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_PASSWORD,
    PYTHON,
    ROOT,
    _children,
    banner,
    bench_dir,
    command_line,
    free_port,
    machine,
    tree_rss_mb,
)

STOCKADE = str(Path(PYTHON).parent / "stockade")
HELLO = """async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""
HELP_COMMANDS = (
    ("python -c pass", [PYTHON, "-c", "pass"]),
    ("stockade --help", [STOCKADE, "--help"]),
    ("stockade mirror run --help", [STOCKADE, "mirror", "run", "--help"]),
    ("stockade upload --help", [STOCKADE, "upload", "--help"]),
    ("stockade serve --help", [STOCKADE, "serve", "--help"]),
    ("stockade channel list --help", [STOCKADE, "channel", "list", "--help"]),
    ("stockade user list --help", [STOCKADE, "user", "list", "--help"]),
    ("stockade cve --help", [STOCKADE, "cve", "--help"]),
    ("stockade signing --help", [STOCKADE, "signing", "--help"]),
    ("stockade quarantine --help", [STOCKADE, "quarantine", "--help"]),
)


@dataclass
class Start:
    seconds: float
    cpu_s: float
    rss_mb: float
    supervisor_mb: float


@dataclass
class Series:
    starts: list[Start] = field(default_factory=list)

    def median(self, pick: Callable[[Start], float]) -> float:
        return statistics.median(pick(s) for s in self.starts)


def _stat_cpu(pid: int, *, children: bool) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: children waited for
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid`` (with its dead children) and its live descendants."""
    total = _stat_cpu(pid, children=True)
    stack = _children(pid)
    while stack:
        current = stack.pop()
        total += _stat_cpu(current, children=True)
        stack.extend(_children(current))
    return total


def own_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def settled_rss(pid: int, *, quiet_s: float = 1.5, limit_s: float = 30.0) -> float:
    """The tree's RSS once it has not grown by more than 1 MiB for ``quiet_s`` seconds."""
    deadline = time.monotonic() + limit_s
    last = tree_rss_mb(pid)
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = tree_rss_mb(pid)
        if abs(now - last) > 1.0:
            stable_since = time.monotonic()
        last = now
        if time.monotonic() - stable_since >= quiet_s:
            break
    return last


def measure_start(args: list[str], env: dict[str, str], url: str, log: Path) -> Start:
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=out,
                                start_new_session=True)  # fmt: skip
    try:
        with httpx.Client(timeout=2) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{args[0]} exited; see {log}")
                try:
                    if client.get(url).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        seconds = time.perf_counter() - started
        cpu = tree_cpu_s(proc.pid)
        rss = settled_rss(proc.pid)
        return Start(seconds, cpu, rss, own_rss_mb(proc.pid))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def server_cases(work: Path) -> dict[str, Callable[[], Start]]:
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    (work / "hello.py").write_text(HELLO)
    base_env = dict(os.environ, STOCKADE_DATA_DIR=str(data), STOCKADE_LOG_LEVEL="warning",
                    STOCKADE_ADMIN_PASSWORD=ADMIN_PASSWORD)  # fmt: skip
    log = work / "server.log"

    def stockade(workers: int) -> Callable[[], Start]:
        def run() -> Start:
            port = free_port()
            env = dict(base_env, STOCKADE_PORT=str(port))
            args = [STOCKADE, "serve", "--workers", str(workers)]
            return measure_start(args, env, f"http://127.0.0.1:{port}/healthz", log)

        return run

    def uvicorn(workers: int) -> Callable[[], Start]:
        def run() -> Start:
            port = free_port()
            env = dict(base_env, PYTHONPATH=str(work))
            args = [PYTHON, "-m", "uvicorn", "hello:app", "--port", str(port),
                    "--workers", str(workers), "--log-level", "warning"]  # fmt: skip
            return measure_start(args, env, f"http://127.0.0.1:{port}/", log)

        return run

    print("first start (migrations, first admin) ...", flush=True)
    stockade(1)()
    return {
        "bare uvicorn, hello app, 1 process": uvicorn(1),
        "stockade serve (1 process)": stockade(1),
        "bare uvicorn, hello app, --workers 2": uvicorn(2),
        "stockade serve --workers 2": stockade(2),
    }


def help_times(rounds: int) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds of each command, interleaved over ``rounds``."""
    walls: dict[str, list[float]] = {name: [] for name, _ in HELP_COMMANDS}
    cpus: dict[str, list[float]] = {name: [] for name, _ in HELP_COMMANDS}
    for _ in range(rounds):
        for name, args in HELP_COMMANDS:
            before = os.times()
            started = time.perf_counter()
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
            walls[name].append(time.perf_counter() - started)
            after = os.times()
            cpus[name].append(
                after.children_user
                - before.children_user
                + after.children_system
                - before.children_system
            )
    return {n: (statistics.median(walls[n]), statistics.median(cpus[n])) for n in walls}


def bytecode_state() -> str:
    sources = list((ROOT / "src" / "stockade").rglob("*.py"))
    compiled = sum(
        1
        for p in sources
        if (p.parent / "__pycache__" / f"{p.stem}.{sys.implementation.cache_tag}.pyc").exists()
    )
    return f"{compiled}/{len(sources)} of the project's modules compiled"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds instead of 5")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    banner("Startup and CLI")
    print(machine())
    print(f"load average before: {os.getloadavg()}; {bytecode_state()}; "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}")  # fmt: skip
    cases = server_cases(bench_dir("startup"))
    series = {name: Series() for name in cases}
    for round_no in range(rounds):
        for name, run in cases.items():
            series[name].starts.append(run())
        print(f"round {round_no + 1}/{rounds} done", flush=True)
    print(f"\n{'server':40s} {'to first 200':>13s} {'CPU s':>7s} {'idle RSS':>10s} "
          f"{'supervisor':>11s}")  # fmt: skip
    for name, s in series.items():
        print(
            f"{name:40s} {s.median(lambda x: x.seconds):12.2f}s "
            f"{s.median(lambda x: x.cpu_s):7.2f} {s.median(lambda x: x.rss_mb):7.0f} MiB "
            f"{s.median(lambda x: x.supervisor_mb):7.0f} MiB"
        )
    print(f"\n{'command':34s} {'wall':>7s} {'CPU':>7s}")
    for name, (wall, cpu) in help_times(max(rounds, 3)).items():
        print(f"{name:34s} {wall:6.2f}s {cpu:6.2f}s")
    print(f"\nload average after: {os.getloadavg()}")
    print(f"reproduce with: {command_line()}")


if __name__ == "__main__":
    main()
