"""Serving benchmark: Stockade vs nginx on the same bytes, same client (wrk), same run.

Measures, for a public channel:

- requests/s of a full GET of a ~1 MB ``repodata.json.zst``;
- requests/s of a conditional GET of it answered 304 (``If-None-Match`` with the current ETag);
- MB/s of a ~380 MB ``repodata.json`` (and the server's RSS while serving it);

through (a) nginx serving the files from disk, (b) Stockade alone (uvicorn, uvloop, httptools,
``--workers N``), and (c) nginx in front of Stockade with ``X-Accel-Redirect`` (Stockade checks
access and answers 304s; nginx sends the bytes from the blob store). The nginx configs used are
``benchmarks/nginx/*.conf``.

The index files are built by the real writer (``build_repodata_json``, ``compress_zst``) from
synthetic records and stored in the blob store; the subdir's published pointers are set directly
(publication itself is measured by ``bench_publication.py``).

    .venv/bin/python benchmarks/bench_serving.py            # full run, ~5 minutes
    .venv/bin/python benchmarks/bench_serving.py --quick    # shorter wrk runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RssSampler,
    WrkResult,
    banner,
    bench_dir,
    command_line,
    ensure_tools,
    free_port,
    machine,
    nginx,
    package_names,
    render,
    stockade_server,
    synthetic_packages,
    synthetic_record,
    wrk,
)

HERE = Path(__file__).resolve().parent
CHANNEL = "bench"
SMALL_SUBDIR = "noarch"  # ~1 MB repodata.json.zst
BIG_SUBDIR = "linux-64"  # ~380 MB repodata.json
SMALL_RECORDS = 9_000
BIG_TARGET = 392 * 10**6


@dataclass
class Files:
    small_zst: str
    big_json: str
    small_size: int
    big_size: int


def _build_blobs(data_dir: Path) -> Files:
    """Generate the index files once (cached in the data dir) and point the subdirs at them."""
    marker = data_dir / "serving-files.json"
    if marker.is_file():
        return Files(**json.loads(marker.read_text()))
    from sqlalchemy import delete

    from stockade.channels.models import Channel, SubdirIndex
    from stockade.conda.repodata import build_repodata_json, compress_zst, encode_record
    from stockade.container import Container
    from stockade.core.clock import utcnow
    from stockade.db.engine import transaction
    from stockade.db.migrate import upgrade
    from stockade.settings import load_settings

    settings = load_settings(data_dir=data_dir)
    upgrade(settings.db_url)
    container = Container.build(settings)
    names = package_names(3_500)
    started = time.perf_counter()

    def repodata(subdir: str, count: int) -> bytes:
        pkgs = synthetic_packages(count, names, subdir)
        pairs = [
            (p.filename, encode_record(synthetic_record(p, 1_700_000_000_000 + i)))
            for i, p in enumerate(pkgs)
        ]
        return build_repodata_json(subdir, (), pairs, ())

    small_json = repodata(SMALL_SUBDIR, SMALL_RECORDS)
    small_zst = compress_zst(small_json, 19)
    per_record = len(repodata(BIG_SUBDIR, 2_000)) / 2_000
    big_json = repodata(BIG_SUBDIR, int(BIG_TARGET / per_record))
    big_zst = compress_zst(big_json, 3)
    shas = {
        "small_json": container.blobs.put_bytes(small_json),
        "small_zst": container.blobs.put_bytes(small_zst),
        "big_json": container.blobs.put_bytes(big_json),
        "big_zst": container.blobs.put_bytes(big_zst),
    }
    now = utcnow()
    with transaction(container.factory) as session:
        session.execute(delete(Channel).where(Channel.name == CHANNEL))
        channel = Channel(name=CHANNEL, privacy="public")
        session.add(channel)
        session.flush()
        for subdir, json_sha, zst_sha, count in (
            (SMALL_SUBDIR, shas["small_json"], shas["small_zst"], SMALL_RECORDS),
            (BIG_SUBDIR, shas["big_json"], shas["big_zst"], 0),
        ):
            session.add(
                SubdirIndex(
                    channel_id=channel.id,
                    subdir=subdir,
                    requested_rev=1,
                    published_rev=1,
                    repodata_sha256=json_sha,
                    repodata_zst_sha256=zst_sha,
                    record_count=count,
                    published_at=now,
                )
            )
    container.close()
    files = Files(shas["small_zst"], shas["big_json"], len(small_zst), len(big_json))
    marker.write_text(json.dumps(files.__dict__))
    print(f"generated index files in {time.perf_counter() - started:.1f}s", flush=True)
    return files


def _blob_path(data_dir: Path, sha: str) -> Path:
    return data_dir / "blobs" / sha[:2] / sha[2:4] / sha


def _static_root(data_dir: Path, files: Files) -> Path:
    """The same bytes laid out as nginx would serve a static channel (hard links to the blobs)."""
    root = bench_dir("serving", "static")
    for subdir, name, sha in (
        (SMALL_SUBDIR, "repodata.json.zst", files.small_zst),
        (BIG_SUBDIR, "repodata.json", files.big_json),
    ):
        target = root / "conda" / CHANNEL / subdir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        os.link(_blob_path(data_dir, sha), target)
    return root


def _user() -> str:
    """nginx workers must read the blobs (mode 0600, owned by the server's user)."""
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _etag(url: str) -> str:
    response = httpx.get(url, timeout=60)
    response.raise_for_status()
    return response.headers["etag"]


@dataclass
class Target:
    label: str
    base: str
    pid: int | None  # the Stockade server to watch (RSS), if any
    rss_first: float = 0.0
    rss_peak: float = 0.0


@dataclass
class Row:
    target: Target
    case: str
    runs: list[WrkResult]

    @property
    def metric(self) -> str:
        return "transfer_mb_s" if "MB/s" in self.case else "requests_per_s"

    @property
    def value(self) -> float:
        """The median of the rounds."""
        values = sorted(getattr(r, self.metric) for r in self.runs)
        return values[len(values) // 2]


CASES = ("1 MB .zst full GET", "1 MB .zst 304", "380 MB .json MB/s")
TARGETS = {"1 MB .zst full GET": 0.5, "1 MB .zst 304": 0.2, "380 MB .json MB/s": 0.5}
ACCEL_TARGET = 0.8


def _run_case(
    target: Target, case: str, etags: dict[str, str], args: argparse.Namespace
) -> WrkResult:
    small = f"{target.base}/conda/{CHANNEL}/{SMALL_SUBDIR}/repodata.json.zst"
    big = f"{target.base}/conda/{CHANNEL}/{BIG_SUBDIR}/repodata.json"
    if case == CASES[0]:
        return wrk(small, duration=args.duration, connections=args.connections)
    if case == CASES[1]:
        header = f"If-None-Match: {etags[target.label]}"
        return wrk(small, duration=args.duration, connections=args.connections, headers=[header])
    if target.pid is None:
        return wrk(big, duration=args.big_duration, connections=args.big_connections, timeout="60s")
    with RssSampler(target.pid) as rss:
        result = wrk(
            big, duration=args.big_duration, connections=args.big_connections, timeout="60s"
        )
    target.rss_first = target.rss_first or rss.first
    target.rss_peak = max(target.rss_peak, rss.peak)
    return result


def _measure(targets: list[Target], files: Files, args: argparse.Namespace) -> list[Row]:
    """Every case on every target, interleaved round by round (the machine's noise hits all)."""
    etags: dict[str, str] = {}
    for target in targets:
        small = f"{target.base}/conda/{CHANNEL}/{SMALL_SUBDIR}/repodata.json.zst"
        size = int(httpx.head(small).headers["content-length"])
        assert size == files.small_size, (target.label, size, files.small_size)
        wrk(small, duration=1, connections=4)  # warm caches (bytes, locator, page cache)
        etags[target.label] = _etag(small)
    rows = [Row(t, case, []) for case in CASES for t in targets]
    for case in CASES:
        for round_no in range(args.rounds):
            for row in rows:
                if row.case != case:
                    continue
                result = _run_case(row.target, case, etags, args)
                row.runs.append(result)
                bad = (
                    f" non-2xx/3xx={result.non_2xx}" if result.non_2xx and "304" not in case else ""
                )
                print(
                    f"  [{round_no + 1}/{args.rounds}] {row.target.label:<24} {case:<20}"
                    f" {result.requests_per_s:>9,.0f} req/s {result.transfer_mb_s:>8,.0f} MB/s"
                    f"  p50 {result.latency_p50_ms:.2f} ms p99 {result.latency_p99_ms:.2f} ms"
                    f"{bad} {result.errors}",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s instead of 5 of 4 s")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--big-connections", type=int, default=4)
    parser.add_argument(
        "--log-level", default="warning", help="Stockade's log level (info logs every request)"
    )
    parser.add_argument(
        "--skip-accel", action="store_true", help="no nginx + X-Accel-Redirect runs"
    )
    args = parser.parse_args()
    args.rounds = 2 if args.quick else 5
    args.duration = 3 if args.quick else 4
    args.big_duration = 5 if args.quick else 6
    ensure_tools("nginx", "wrk")
    banner("serving: Stockade vs nginx")
    print(f"machine: {machine()}")
    data_dir = bench_dir("serving", "data")
    files = _build_blobs(data_dir)
    small, big = files.small_size / 1e6, files.big_size / 1e6
    print(f"files: repodata.json.zst {small:.2f} MB, repodata.json {big:.0f} MB")
    root = _static_root(data_dir, files)
    env = {"STOCKADE_LOG_LEVEL": args.log_level}
    with ExitStack() as stack:
        workdir = bench_dir("serving", "nginx-static")
        port = free_port()
        conf = render(
            HERE / "nginx" / "static.conf", port=port, root=root, prefix=workdir, user=_user()
        )
        stack.enter_context(nginx(conf, workdir))
        targets = [Target("nginx (static files)", f"http://127.0.0.1:{port}", None)]
        server = stack.enter_context(stockade_server(data_dir, workers=args.workers, extra_env=env))
        targets.append(Target(f"stockade ({args.workers} workers)", server.url, server.pid))
        stockade_cmd = server.command
        if not args.skip_accel:
            targets += _accel_targets(stack, data_dir, args, env)
        rows = _measure(targets, files, args)
    _summary(rows, stockade_cmd, args)


def _accel_targets(
    stack: ExitStack, data_dir: Path, args: argparse.Namespace, env: dict[str, str]
) -> list[Target]:
    """nginx + X-Accel-Redirect in front of a second Stockade, listening on a unix socket (10%
    more requests/s than a loopback TCP upstream here)."""
    socket_path = bench_dir("serving") / "stockade.sock"
    extra = {**env, "STOCKADE_X_ACCEL_REDIRECT": "/_blobs/"}
    server = stack.enter_context(
        stockade_server(data_dir, workers=args.workers, extra_env=extra, uds=socket_path)
    )
    workdir = bench_dir("serving", "x-accel")
    port = free_port()
    conf = render(
        HERE / "nginx" / "x-accel.conf",
        port=port,
        upstream=f"unix:{socket_path}",
        blobs=f"{data_dir.resolve()}/blobs/",
        prefix=workdir,
        user=_user(),
    )
    stack.enter_context(nginx(conf, workdir))
    print(f"stockade behind nginx: {server.command}")
    return [Target("nginx + X-Accel", f"http://127.0.0.1:{port}", server.pid)]


def _summary(rows: list[Row], stockade_cmd: str, args: argparse.Namespace) -> None:
    banner(f"summary: median of {args.rounds} interleaved rounds, ratio to nginx in the same run")
    base = {
        row.case: row.value
        for row in rows
        if row.target.pid is None and "nginx (static" in row.target.label
    }
    for row in rows:
        ratio = row.value / base[row.case] if base[row.case] else 0.0
        unit = "MB/s" if "MB/s" in row.case else "req/s"
        verdict = ""
        if row.target.label != "nginx (static files)":
            goal = ACCEL_TARGET if "X-Accel" in row.target.label else TARGETS[row.case]
            verdict = f"  target >= {goal}x: {'MET' if ratio >= goal else 'NOT met'}"
        rss = ""
        if "MB/s" in row.case and row.target.pid is not None:
            rss = f"  server RSS {row.target.rss_first:.0f} -> peak {row.target.rss_peak:.0f} MiB"
        figure = f"{row.value:>9,.0f} {unit:<5} {ratio:5.2f}x"
        print(f"  {row.target.label:<24} {row.case:<20} {figure}{verdict}{rss}")
    print("\nwrk commands (host and port vary):")
    for case in CASES:
        print(f"  {next(r.runs[0].command for r in rows if r.case == case)}")
    print(f"stockade server: {stockade_cmd}")
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
