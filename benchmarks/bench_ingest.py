"""Ingest benchmark: N small packages through ``stockade upload`` (the CLI's default path) until the
channel's ``repodata.json`` lists them all, beside conda-index (and py-rattler's index) indexing the
same files from scratch, in the same run, rounds interleaved.

- Stockade: a real server (uvicorn, ``--workers 2``, the embedded default: SQLite, scanners on,
  jobs in the server); per round a fresh public channel, then ``stockade upload -c CH FILES...``
  as a user types it (the CLI batches and parallelizes by itself), then ``repodata.json`` polled
  until every file is listed. Wall time from the command's start to the last file served. Server
  CPU per package: utime + stime of the server's process tree from ``/proc`` (before/after).
- conda-index: ``python -m conda_index DIR`` on a fresh copy of the same files (no cache), in a
  throwaway venv (``--conda-index-python``; conda-index needs ``conda`` importable).
- py-rattler: ``rattler.index.index_fs`` on another fresh copy (in this venv).

    .venv/bin/python benchmarks/bench_ingest.py                 # 1,000 packages, 3 rounds
    .venv/bin/python benchmarks/bench_ingest.py --quick         # 200 packages, 1 round
    .venv/bin/python benchmarks/bench_ingest.py --profile       # + py-spy of the server's workers
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    ROOT,
    StockadeServer,
    _children,
    banner,
    bench_dir,
    command_line,
    conda_bytes,
    machine,
    package_names,
    stockade_server,
    synthetic_packages,
)

SUBDIRS = ("noarch", "linux-64")
TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP = 20  # packages uploaded first, not timed: each worker's first scan and publication
CONDA_INDEX_PYTHON = os.environ.get("CONDA_INDEX_PYTHON", "/tmp/conda-index-venv/bin/python")
# conda-index imports conda, which is not on PyPI: a venv with conda-index, plus conda's site-packages
SETUP = (
    "python3 -m venv /tmp/conda-index-venv && /tmp/conda-index-venv/bin/pip install conda-index"
    " py-spy && echo CONDA_SITE_PACKAGES > /tmp/conda-index-venv/lib/python3.11/site-packages/"
    "conda.pth"
)


def _packages(count: int) -> Path:
    """``count`` small real ``.conda`` files, half noarch, half linux-64 (built once, reused)."""
    root = bench_dir("ingest", f"packages-{count}")
    if len(list(root.glob("*/*.conda"))) == count:
        return root
    shutil.rmtree(root)
    names = package_names(max(count // 8, 10))
    for i, subdir in enumerate(SUBDIRS):
        share = count // len(SUBDIRS) + (1 if i < count % len(SUBDIRS) else 0)
        folder = root / subdir
        folder.mkdir(parents=True)
        for pkg in synthetic_packages(share, names, subdir):
            (folder / pkg.filename).write_bytes(conda_bytes(pkg.index()))
    return root


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants (the server: supervisor and workers)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
        stack.extend(_children(current))
    return total / TICKS


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes of this script so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _served(url: str, channel: str) -> int:
    count = 0
    for subdir in SUBDIRS:
        response = httpx.get(f"{url}/conda/{channel}/{subdir}/repodata.json", timeout=30)
        if response.status_code == 200:
            body = response.json()
            count += len(body.get("packages.conda", {})) + len(body.get("packages", {}))
    return count


@dataclass(frozen=True)
class Measure:
    seconds: float
    cpu_per_pkg: float  # the server's (Stockade) or the indexer's
    client_cpu_per_pkg: float = 0.0  # the stockade CLI's


def _stockade_round(url: str, token: str, pid: int, files: list[Path], n: int) -> Measure:
    channel = f"ingest-{n}-{time.time_ns() % 10**8}"
    httpx.post(
        f"{url}/api/v1/channels",
        json={"name": channel, "privacy": "public"},
        headers={"authorization": f"Bearer {token}"},
        timeout=30,
    ).raise_for_status()
    env = dict(os.environ, STOCKADE_URL=url, STOCKADE_TOKEN=token, COLUMNS="100")
    env.pop("STOCKADE_PROFILE", None)
    cli = str(Path(PYTHON).parent / "stockade")
    cpu = _cpu_seconds(pid)
    client_cpu = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(
        [cli, "upload", "-c", channel, *map(str, files)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"stockade upload failed:\n{done.stdout.decode()[-3000:]}")
    returned = time.perf_counter() - started
    while _served(url, channel) < len(files):
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    server = (_cpu_seconds(pid) - cpu) / len(files)
    client = (_children_cpu() - client_cpu) / len(files)
    print(f"  (the CLI returned after {returned:.1f}s, all served after {elapsed:.1f}s)")
    return Measure(elapsed, server, client)


def _fresh_copy(source: Path, name: str) -> Path:
    target = bench_dir("ingest", "work") / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    return target


def _conda_index(source: Path, count: int) -> Measure | None:
    if not Path(CONDA_INDEX_PYTHON).exists():
        return None
    target = _fresh_copy(source, "conda-index")
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run(
        [CONDA_INDEX_PYTHON, "-m", "conda_index", str(target)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Measure(time.perf_counter() - started, (_children_cpu() - cpu) / count)


def _rattler_index(source: Path, count: int) -> Measure:
    """Wall time of the process, as for conda-index (``os._exit``: py-rattler may crash at exit)."""
    target = _fresh_copy(source, "rattler")
    code = (
        "import asyncio, os, sys\nfrom rattler.index import index_fs\n"
        "asyncio.run(index_fs(sys.argv[1])); os._exit(0)\n"
    )
    cpu = _children_cpu()
    started = time.perf_counter()
    subprocess.run([PYTHON, "-c", code, str(target)], check=True)
    return Measure(time.perf_counter() - started, (_children_cpu() - cpu) / count)


def _profile(pid: int, seconds: int) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(CONDA_INDEX_PYTHON).parent / "py-spy")
    if not Path(spy).exists():
        print("  (py-spy not found: no profile)")
        return None
    out = bench_dir("ingest") / "profile.txt"
    workers = ",".join(str(p) for p in _children(pid)) or str(pid)
    print(f"  profiling workers {workers} -> {out}")
    return subprocess.Popen(
        [spy, "record", "--subprocesses", "--format", "raw", "--duration", str(seconds),
         "--pid", str(pid), "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _round(
    server: StockadeServer, token: str, source: Path, n: int, spy: bool
) -> dict[str, Measure]:
    """One interleaved round: Stockade, then conda-index, then py-rattler, on the same files."""
    files = sorted(source.glob("*/*.conda"))
    profiler = _profile(server.pid, 600) if spy else None
    out = {"stockade": _stockade_round(server.url, token, server.pid, files, n)}
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(60)
    ref = _conda_index(source, len(files))
    if ref is not None:
        out["conda-index"] = ref
    out["py-rattler"] = _rattler_index(source, len(files))
    return out


def _line(name: str, count: int, runs: list[Measure], ours: float | None) -> str:
    seconds = statistics.median(m.seconds for m in runs)
    cpu_ms = statistics.median(m.cpu_per_pkg for m in runs) * 1000
    text = f"  {name:<28} {count / seconds:7.1f} pkg/s, CPU {cpu_ms:5.1f} ms/pkg"
    if ours is not None:
        text += f" -> stockade/{name}: {ours / (count / seconds):.2f}x"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 packages, 1 round")
    parser.add_argument("--packages", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="py-spy the server (first round)")
    args = parser.parse_args()
    count = args.packages or (200 if args.quick else 1000)
    rounds = args.rounds or (1 if args.quick else 3)
    banner(f"ingest: {count} small packages, stockade upload until served vs conda-index")
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
    source = _packages(count)
    data_dir = bench_dir("ingest", "data")
    shutil.rmtree(data_dir)
    results: dict[str, list[Measure]] = {}
    with stockade_server(data_dir, workers=args.workers) as server:
        token = server.token()
        warm = _packages(WARM_UP)
        _stockade_round(server.url, token, server.pid, sorted(warm.glob("*/*.conda")), -1)
        for n in range(rounds):
            measured = _round(server, token, source, n, spy=args.profile and n == 0)
            for name, measure in measured.items():
                results.setdefault(name, []).append(measure)
            mine = measured["stockade"]
            line = f"  round {n + 1}: stockade {count / mine.seconds:6.1f} pkg/s "
            line += f"(server CPU {mine.cpu_per_pkg * 1000:.1f} ms/pkg, "
            line += f"CLI {mine.client_cpu_per_pkg * 1000:.1f} ms/pkg)"
            for name, ref in measured.items():
                if name != "stockade":
                    line += f"; {name} {count / ref.seconds:6.1f} pkg/s"
            print(line, flush=True)
        command = server.command
    banner(f"summary (medians of {rounds} round(s); load average {os.getloadavg()[0]:.2f})")
    ours = results.pop("stockade")
    rate = count / statistics.median(m.seconds for m in ours)
    print(_line("stockade upload until served", count, ours, None) + " (server)")
    client = statistics.median(m.client_cpu_per_pkg for m in ours) * 1000
    print(f"  {'':<28} the CLI: CPU {client:5.1f} ms/pkg")
    for name, runs in results.items():
        print(_line(name, count, runs, rate))
    if "conda-index" not in results:
        print(f"  conda-index: not found at {CONDA_INDEX_PYTHON}; set CONDA_INDEX_PYTHON ({SETUP})")
    print(f"stockade server: {command}")
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
