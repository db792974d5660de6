"""Package file and shard serving benchmark: Stockade alone vs nginx static, same run (issue 18).

One Stockade server (uvicorn, uvloop, httptools, ``--workers N``, SQLite) serves a public and a
private channel, each holding the same small ``.conda`` (~3.9 KB) uploaded through the API and
published (its shard too). nginx serves the same bytes from disk (hard links to the blobs, the
layout of a static channel) with ``benchmarks/nginx/static.conf``.

Cases, for the package file and for its shard: a full GET, and a conditional GET answered 304
(``If-None-Match`` with the current ETag); on Stockade each for the public channel, the private one
with ``Authorization: Bearer``, and the private one with the ``/t/TOKEN/`` URL form. Every round
runs every case on every target back to back (interleaved), and the summary prints the median of
the rounds and its ratio to nginx for the same file in the same run (target >= 0.3x).

Stockade's CPU time (user + system, its whole process tree, from ``/proc``) over all the rounds of
a case, divided by the requests answered, gives its CPU cost per request: a figure that the other
work on a shared machine disturbs much less than requests/s. The same for nginx.

    .venv/bin/python benchmarks/bench_package_files.py            # 3 rounds of 3 s, ~3 minutes
    .venv/bin/python benchmarks/bench_package_files.py --quick    # 2 rounds of 1 s
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
import msgpack
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    WrkResult,
    banner,
    bench_dir,
    command_line,
    conda_bytes,
    ensure_tools,
    free_port,
    machine,
    nginx,
    render,
    stockade_server,
    wrk,
)
from bench_downloads import cpu_seconds

HERE = Path(__file__).resolve().parent
PUBLIC = "bench-pkg"
PRIVATE = "bench-pkg-private"
NAME = "smallpkg"
TARGET = 0.3
FILES = ("package", "shard")
KINDS = ("GET", "304")


@dataclass
class Case:
    label: str  # e.g. "stockade public", "nginx static"
    file: str  # "package" | "shard"
    kind: str  # "GET" | "304"
    url: str
    headers: list[str]
    pid: int
    runs: list[WrkResult] = field(default_factory=list)
    cpu_s: float = 0.0
    requests: int = 0

    @property
    def median(self) -> float:
        return statistics.median(r.requests_per_s for r in self.runs)


def _package() -> tuple[str, bytes]:
    index = {
        "name": NAME,
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "subdir": "noarch",
        "noarch": "generic",
        "depends": [],
    }
    payload = os.urandom(3000)  # incompressible: the .conda is ~3.9 KB
    return f"{NAME}-1.0-0.conda", conda_bytes(index, {"share/data.bin": payload})


def _setup(url: str, token: str) -> dict[str, str]:
    """Both channels with the package, served with its shard: path -> ETag, per file kind."""
    auth = {"authorization": f"Bearer {token}"}
    filename, data = _package()
    paths: dict[str, str] = {}
    with httpx.Client(base_url=url, headers=auth, timeout=60) as api:
        for channel, privacy in ((PUBLIC, "public"), (PRIVATE, "private")):
            api.post(
                "/api/v1/channels", json={"name": channel, "privacy": privacy}
            ).raise_for_status()
            files = [("files", (filename, data, "application/octet-stream"))]
            api.post(f"/api/v1/channels/{channel}/files", files=files).raise_for_status()
        deadline = time.monotonic() + 120
        for channel in (PUBLIC, PRIVATE):
            shard = None
            while shard is None:
                if time.monotonic() > deadline:
                    sys.exit(f"{channel}: package or shard not served within 120 s")
                time.sleep(0.2)
                if api.head(f"/conda/{channel}/noarch/{filename}").status_code != 200:
                    continue
                index = api.get(f"/conda/{channel}/noarch/repodata_shards.msgpack.zst")
                if index.status_code != 200:
                    continue
                shards = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(index.content))
                found = shards["shards"].get(NAME)
                shard = found.hex() if found else None
            paths[f"{channel} package"] = f"/conda/{channel}/noarch/{filename}"
            paths[f"{channel} shard"] = f"/conda/{channel}/noarch/shards/{shard}.msgpack.zst"
    return paths


def _blob(data_dir: Path, sha: str) -> Path:
    return data_dir / "blobs" / sha[:2] / sha[2:4] / sha


def _static_root(data_dir: Path, url: str, paths: dict[str, str]) -> Path:
    """The same bytes laid out as a static channel (hard links to Stockade's blobs)."""
    root = bench_dir("package-files", "static")
    for key in (f"{PUBLIC} package", f"{PUBLIC} shard"):
        etag = httpx.head(url + paths[key]).headers["etag"].strip('"')
        target = root / paths[key].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        os.link(_blob(data_dir, etag), target)
    return root


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _cases(stockade: str, pid: int, static: str, token: str, paths: dict[str, str]) -> list[Case]:
    cases: list[Case] = []
    bearer = [f"Authorization: Bearer {token}"]
    for file in FILES:
        public, private = paths[f"{PUBLIC} {file}"], paths[f"{PRIVATE} {file}"]
        variants = [
            ("nginx static", static + public, [], 0),
            ("stockade public", stockade + public, [], pid),
            ("stockade private Bearer", stockade + private, bearer, pid),
            ("stockade private /t/", f"{stockade}/t/{token}{private}", [], pid),
        ]
        for kind in KINDS:
            for label, url, headers, server in variants:
                extra = list(headers)
                if kind == "304":
                    probe = httpx.get(url, headers=dict(h.split(": ", 1) for h in headers))
                    probe.raise_for_status()
                    extra.append(f"If-None-Match: {probe.headers['etag']}")
                cases.append(Case(label, file, kind, url, extra, server))
    return cases


def _measure(cases: list[Case], nginx_pid: int, args: argparse.Namespace) -> None:
    for case in cases:  # warm every cache (bytes, lookups, credentials, page cache)
        wrk(case.url, duration=1, connections=4, headers=case.headers)
    for n in range(args.rounds):
        for case in cases:
            pid = case.pid or nginx_pid
            before = cpu_seconds(pid)
            result = wrk(
                case.url,
                duration=args.duration,
                connections=args.connections,
                headers=case.headers,
            )
            case.cpu_s += cpu_seconds(pid) - before
            case.requests += round(result.requests_per_s * args.duration)
            case.runs.append(result)
            wrong = result.non_2xx if case.kind == "GET" else 0
            flag = f"  non-2xx {wrong}" if wrong or result.errors else ""
            print(
                f"  [{n + 1}/{args.rounds}] {case.label:<24} {case.file:<8} {case.kind:<4}"
                f" {result.requests_per_s:>9,.0f} req/s  p99 {result.latency_p99_ms:.2f} ms"
                f"{flag} {result.errors}",
                flush=True,
            )


def _summary(cases: list[Case], stockade_cmd: str, args: argparse.Namespace) -> None:
    banner(f"summary: median of {args.rounds} interleaved rounds, ratio to nginx in the same run")
    print(f"load average at the end: {os.getloadavg()}")
    for file in FILES:
        for kind in KINDS:
            group = [c for c in cases if c.file == file and c.kind == kind]
            base = next(c for c in group if c.label == "nginx static").median
            for case in group:
                ratio = case.median / base if base else 0.0
                cpu = case.cpu_s / case.requests * 1e6 if case.requests else 0.0
                verdict = ""
                if case.pid:
                    verdict = f"  target >= {TARGET}x: {'MET' if ratio >= TARGET else 'NOT met'}"
                print(
                    f"  {file:<8} {kind:<4} {case.label:<24} {case.median:>9,.0f} req/s"
                    f" {ratio:5.2f}x  CPU {cpu:6.0f} us/request{verdict}"
                )
    print(f"\nwrk: {cases[0].runs[0].command}")
    print(f"stockade server: {stockade_cmd}")
    print(f"reproduce: {command_line()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 1 s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--no-record",
        action="store_true",
        help="[downloads] record = false (every package GET is recorded by default)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 2, 1.0
    ensure_tools("nginx", "wrk")
    banner("package files and shards: Stockade alone vs nginx static")
    print(f"machine: {machine()}; load average at the start: {os.getloadavg()}")
    root = bench_dir("package-files")
    shutil.rmtree(root, ignore_errors=True)  # a fresh server and channel every run
    data_dir = bench_dir("package-files", "data")
    with ExitStack() as stack:
        env = {"STOCKADE_DOWNLOADS__RECORD": "false"} if args.no_record else {}
        server = stack.enter_context(stockade_server(data_dir, workers=args.workers, extra_env=env))
        token = server.token()
        paths = _setup(server.url, token)
        static_root = _static_root(data_dir, server.url, paths)
        workdir = bench_dir("package-files", "nginx")
        port = free_port()
        conf = render(
            HERE / "nginx" / "static.conf",
            port=port,
            root=static_root,
            prefix=workdir,
            user=_user(),
        )
        stack.enter_context(nginx(conf, workdir))
        nginx_pid = int((workdir / "nginx.pid").read_text())
        time.sleep(2)  # the setup's scans and publications are over
        static = f"http://127.0.0.1:{port}"
        cases = _cases(server.url, server.pid, static, token, paths)
        _measure(cases, nginx_pid, args)
    _summary(cases, server.command, args)


if __name__ == "__main__":
    main()
