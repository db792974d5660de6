"""Download recording benchmark: serving throughput of package GETs with recording on vs off.

Two Stockade servers built the same way (uvicorn, uvloop, httptools, one worker, SQLite), one with
``[downloads] record = true`` (the default: every package GET goes into the in-memory buffer, and
the flusher writes it every ``flush_interval_s``), one with ``record = false``. Both serve the same
public channel holding a small package (~1 KB, where the per-request cost of recording shows most)
and a 1 MiB one. wrk fetches each file in interleaved rounds (on, off, off, on, …), and the
median requests/s of the two servers are compared: the target is on/off >= 0.95.

Each server's CPU time (user + system, its whole process tree, from ``/proc``) over all its rounds,
divided by the requests it answered, gives the CPU cost of a request with and without recording:
a figure the other work on a shared machine disturbs much less than requests/s.

After the rounds the recording server's report must count the requests wrk made (so recording
really happened during the measurement), and its log must hold no "dropped" line.

    .venv/bin/python benchmarks/bench_downloads.py            # 5 rounds of 5 s, ~2 minutes
    .venv/bin/python benchmarks/bench_downloads.py --quick    # 3 rounds of 2 s
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    WrkResult,
    _children,
    banner,
    bench_dir,
    command_line,
    conda_bytes,
    ensure_tools,
    machine,
    stockade_server,
    wrk,
)

CHANNEL = "bench-dl"
TARGET = 0.95
FILES = {
    "small package (~1 KB)": ("tiny", b"x"),
    "1 MiB package": ("mebi", os.urandom(1024 * 1024)),
}


@dataclass
class Server:
    label: str
    url: str
    token: str
    command: str
    log: Path
    pid: int
    runs: dict[str, list[WrkResult]] = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU time used while measured (and writing what it recorded)
    requests: int = 0

    def requests_made(self, duration: float) -> int:
        return sum(round(r.requests_per_s * duration) for runs in self.runs.values() for r in runs)


def _package(name: str, payload: bytes) -> tuple[str, bytes]:
    index = {
        "name": name,
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "subdir": "noarch",
        "noarch": "generic",
        "depends": [],
    }
    return f"{name}-1.0-0.conda", conda_bytes(index, {"share/data.bin": payload})


def _setup(url: str, token: str) -> dict[str, str]:
    """The channel and its two packages, served (their scan verdict given): case -> URL path."""
    with httpx.Client(
        base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=60
    ) as api:
        api.post("/api/v1/channels", json={"name": CHANNEL}).raise_for_status()
        paths = {}
        for case, (name, payload) in FILES.items():
            filename, data = _package(name, payload)
            files = [("files", (filename, data, "application/octet-stream"))]
            api.post(f"/api/v1/channels/{CHANNEL}/files", files=files).raise_for_status()
            paths[case] = f"/conda/{CHANNEL}/noarch/{filename}"
        deadline = time.monotonic() + 120
        for path in paths.values():
            while api.head(path).status_code != 200:  # HEAD requests are not recorded
                if time.monotonic() > deadline:
                    sys.exit(f"{path} was not served within 120 s")
                time.sleep(0.2)
    return paths


def _downloads_recorded(server: Server) -> int:
    headers = {"authorization": f"Bearer {server.token}"}
    deadline = time.monotonic() + 30
    last = -1
    while time.monotonic() < deadline:  # the flusher writes every 2 s: wait until it settles
        report = httpx.get(
            f"{server.url}/api/v1/downloads/report",
            params={"by": "channel"},
            headers=headers,
            timeout=60,
        ).json()
        total = sum(t["downloads"] for t in report["totals"])
        if total == last:
            return total
        last = total
        time.sleep(2.5)
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 3, 2.0
    ensure_tools("wrk")
    banner("download recording: package GETs with recording on vs off")
    print(machine())
    root = bench_dir("downloads")
    shutil.rmtree(root)  # a fresh pair of servers every run
    with ExitStack() as stack:
        servers: list[Server] = []
        for label, record in (("recording on", "true"), ("recording off", "false")):
            data_dir = root / label.replace(" ", "-")
            live = stack.enter_context(
                stockade_server(data_dir, extra_env={"STOCKADE_DOWNLOADS__RECORD": record})
            )
            servers.append(Server(label, live.url, live.token(), live.command, live.log, live.pid))
        paths = {s.label: _setup(s.url, s.token) for s in servers}
        time.sleep(3)  # the scans and publications of the setup are over
        started = {s.label: cpu_seconds(s.pid) for s in servers}
        wrk_total = _measure(servers, paths, args)
        on = servers[0]
        recorded = _downloads_recorded(on)  # waits until the last rows are written
        for server in servers:
            server.cpu_s = cpu_seconds(server.pid) - started[server.label]
            server.requests = server.requests_made(args.duration)
        dropped = "dropped" in on.log.read_text(errors="replace")
    _summary(servers, args, wrk_total, recorded, dropped)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its descendants, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        stack.extend(_children(current))
    return total / tick


def _measure(
    servers: list[Server], paths: dict[str, dict[str, str]], args: argparse.Namespace
) -> int:
    """Interleaved rounds; returns the requests wrk made to the recording server."""
    made = 0
    for n in range(args.rounds):
        order = servers if n % 2 == 0 else list(reversed(servers))
        for case in FILES:
            for server in order:
                result = wrk(
                    server.url + paths[server.label][case],
                    duration=args.duration,
                    connections=args.connections,
                    threads=1,
                )
                if result.non_2xx or result.errors:
                    print(
                        f"  warning: {server.label} {case}: {result.non_2xx} non-2xx {result.errors}"
                    )
                server.runs.setdefault(case, []).append(result)
                if server is servers[0]:
                    made += round(result.requests_per_s * args.duration)
                print(
                    f"  round {n + 1} {server.label:<14} {case:<22} {result.requests_per_s:>9,.0f} req/s"
                )
    return made


def _summary(
    servers: list[Server], args: argparse.Namespace, made: int, recorded: int, dropped: bool
) -> None:
    on, off = servers
    banner(f"summary: median of {args.rounds} interleaved rounds of {args.duration:g} s")
    met = True
    for case in FILES:
        a = statistics.median(r.requests_per_s for r in on.runs[case])
        b = statistics.median(r.requests_per_s for r in off.runs[case])
        ratio = a / b if b else 0.0
        met = met and ratio >= TARGET
        verdict = "MET" if ratio >= TARGET else "NOT met"
        figures = f"on {a:>9,.0f} req/s  off {b:>9,.0f} req/s  {ratio:5.3f}x"
        # each round's on/off pair ran back to back: the median of their ratios, against drift
        pairs = [
            x.requests_per_s / y.requests_per_s
            for x, y in zip(on.runs[case], off.runs[case], strict=True)
            if y.requests_per_s
        ]
        paired = f"median of per-round ratios {statistics.median(pairs):5.3f}x"
        print(f"  {case:<22} {figures}  target >= {TARGET}x: {verdict}; {paired}")
    # wrk's figure is rounded from req/s; a request cut at the end of a run may not count
    share = recorded / made if made else 0.0
    print(
        f"  downloads recorded by the 'on' server: {recorded:,} of ~{made:,} requests ({share:.1%})"
    )
    print(f"  buffer overflow (dropped rows) logged: {'yes' if dropped else 'no'}")
    per = [s.cpu_s / s.requests * 1e6 if s.requests else 0.0 for s in servers]
    extra = per[0] / per[1] - 1 if per[1] else 0.0
    print(
        f"  server CPU per request (whole process, all rounds): on {per[0]:.0f} us,"
        f" off {per[1]:.0f} us ({extra:+.1%})"
    )
    print(f"\nwrk: {on.runs[next(iter(FILES))][0].command}")
    for server in servers:
        print(f"{server.label}: {server.command}")
    print(f"reproduce: {command_line()}")
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
