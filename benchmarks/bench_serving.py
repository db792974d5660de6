"""Serving benchmark: Stockade vs nginx on the same bytes, same client (wrk), same run.

Measures, for a public channel:

- requests/s of a full GET of a ~1 MB ``repodata.json.zst``;
- requests/s of a conditional GET of it answered 304 (``If-None-Match`` with the current ETag);
- MB/s of a ~380 MB ``repodata.json`` (and the server's RSS while serving it);

through (a) nginx serving the files from disk, (b) Stockade alone (uvicorn, uvloop, httptools,
``--workers N``), (c) nginx in front of Stockade with ``X-Accel-Redirect`` (Stockade checks
access and answers 304s; nginx sends the bytes from the blob store), and (d) the same with nginx's
1 s micro-cache of public answers (``x-accel-cache.conf``). The nginx configs used are
``benchmarks/nginx/*.conf``. Stockade's access log is on (``info``, the default) unless
``--log-level warning``.

Before measuring (d), the script checks with plain HTTP requests that the cache answers public
files and 304s itself, and that a private channel's file fetched with a token (header or URL) is
never stored: the next anonymous request for it gets 401.

The index files are built by the real writer (``build_repodata_json``, ``compress_zst``) from
synthetic records and stored in the blob store; the subdir's published pointers are set directly
(publication itself is measured by ``bench_publication.py``).

    .venv/bin/python benchmarks/bench_serving.py            # full run, ~5 minutes
    .venv/bin/python benchmarks/bench_serving.py --quick    # shorter wrk runs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_PASSWORD,
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
PRIVATE_CHANNEL = "bench-private"  # same index files as CHANNEL's noarch, privacy "private"
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


def _private_channel(data_dir: Path) -> None:
    """A private channel whose ``noarch`` serves the public one's files (for the cache checks)."""
    from sqlalchemy import select

    from stockade.channels.models import Channel, SubdirIndex
    from stockade.container import Container
    from stockade.db.engine import transaction
    from stockade.settings import load_settings

    container = Container.build(load_settings(data_dir=data_dir))
    try:
        with transaction(container.factory) as session:
            if session.scalar(select(Channel).where(Channel.name == PRIVATE_CHANNEL)):
                return
            public = session.scalars(
                select(SubdirIndex)
                .join(Channel, Channel.id == SubdirIndex.channel_id)
                .where(Channel.name == CHANNEL, SubdirIndex.subdir == SMALL_SUBDIR)
            ).one()
            channel = Channel(name=PRIVATE_CHANNEL, privacy="private")
            session.add(channel)
            session.flush()
            session.add(
                SubdirIndex(
                    channel_id=channel.id,
                    subdir=SMALL_SUBDIR,
                    requested_rev=1,
                    published_rev=1,
                    repodata_sha256=public.repodata_sha256,
                    repodata_zst_sha256=public.repodata_zst_sha256,
                    record_count=public.record_count,
                    published_at=public.published_at,
                )
            )
    finally:
        container.close()


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
    log: Path | None = None  # Stockade's log: count the requests that reached it (access log)
    upstream: dict[str, list[int]] = field(default_factory=dict)  # case -> per round


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


def _log_lines(log: Path, start: int) -> int:
    """Access log lines of ``/conda/`` requests written to ``log`` after byte ``start``."""
    with log.open("rb") as fh:
        fh.seek(start)
        data = fh.read()
    return data.count(b"path=/conda/") + data.count(b'"path":"/conda/')


def _run_case(
    target: Target, case: str, etags: dict[str, str], args: argparse.Namespace
) -> WrkResult:
    if target.log is None:
        return _run_wrk(target, case, etags, args)
    time.sleep(0.3)  # the previous target's last access lines are written
    offset = target.log.stat().st_size
    result = _run_wrk(target, case, etags, args)
    time.sleep(0.3)  # this one's are
    target.upstream.setdefault(case, []).append(_log_lines(target.log, offset))
    return result


def _run_wrk(
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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 rounds of 2 s (the 380 MB file: 3 s) instead of 5 of 4 s (6 s)",
    )
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--big-connections", type=int, default=4)
    parser.add_argument(
        "--log-level",
        default="info",
        help="Stockade's log level: info (the default) logs every request, warning does not",
    )
    parser.add_argument(
        "--skip-accel", action="store_true", help="no nginx + X-Accel-Redirect runs (c, d)"
    )
    args = parser.parse_args()
    args.rounds = 2 if args.quick else 5
    args.duration = 2 if args.quick else 4
    args.big_duration = 3 if args.quick else 6
    ensure_tools("nginx", "wrk")
    banner("serving: Stockade vs nginx")
    print(f"machine: {machine()}")
    data_dir = bench_dir("serving", "data")
    files = _build_blobs(data_dir)
    small, big = files.small_size / 1e6, files.big_size / 1e6
    print(f"files: repodata.json.zst {small:.2f} MB, repodata.json {big:.0f} MB")
    root = _static_root(data_dir, files)
    _private_channel(data_dir)
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
    """nginx + X-Accel-Redirect, without and with the micro-cache, in front of a second Stockade
    listening on a unix socket (10% more requests/s than a loopback TCP upstream here). Both nginx
    instances use the same Stockade; they are measured one after the other."""
    socket_path = bench_dir("serving") / "stockade.sock"
    extra = {**env, "STOCKADE_X_ACCEL_REDIRECT": "/_blobs/"}
    server = stack.enter_context(
        stockade_server(data_dir, workers=args.workers, extra_env=extra, uds=socket_path)
    )
    print(f"stockade behind nginx: {server.command}")
    bases = []
    for conf_name, workdir in (
        ("x-accel.conf", "x-accel"),
        ("x-accel-cache.conf", "x-accel-cache"),
    ):
        prefix = bench_dir("serving", workdir)
        shutil.rmtree(prefix / "cache", ignore_errors=True)  # no entries from an earlier run
        port = free_port()
        conf = render(
            HERE / "nginx" / conf_name,
            port=port,
            upstream=f"unix:{socket_path}",
            blobs=f"{data_dir.resolve()}/blobs/",
            prefix=prefix,
            user=_user(),
        )
        stack.enter_context(nginx(conf, prefix))
        bases.append(f"http://127.0.0.1:{port}")
    _check_cache(bases[1], bench_dir("serving", "x-accel-cache") / "cache")
    logged = args.log_level in ("debug", "info")  # requests reaching Stockade are counted
    return [
        Target("nginx + X-Accel", bases[0], server.pid),
        Target("nginx + X-Accel + cache", bases[1], server.pid, log=server.log if logged else None),
    ]


def _check_cache(base: str, cache_dir: Path) -> None:
    """The micro-cache answers public files and 304s itself, and never stores what a request
    with credentials got: a private channel's file is 401 for the anonymous request after it."""
    response = httpx.post(
        f"{base}/api/v1/tokens",
        json={"name": f"bench-{time.time_ns()}", "expires_in_days": 1},
        auth=("admin", ADMIN_PASSWORD),
        timeout=30,
    )
    response.raise_for_status()
    token = str(response.json()["token"])
    public = f"{base}/conda/{CHANNEL}/{SMALL_SUBDIR}/repodata.json.zst"
    private_path = f"/conda/{PRIVATE_CHANNEL}/{SMALL_SUBDIR}/repodata.json.zst"
    checks: list[tuple[str, bool]] = []

    def status(response: httpx.Response) -> str:
        return f"{response.status_code} {response.headers.get('x-cache-status', '-')}"

    with httpx.Client(timeout=60) as http:
        first, second = http.get(public), http.get(public)
        etag = second.headers.get("etag", "")
        checks.append(
            (
                f"public file, 2nd GET from the cache ({status(second)}, ETag {etag[:12]}...)",
                second.status_code == 200
                and second.headers.get("x-cache-status") == "HIT"
                and second.content == first.content
                and etag == f'"{hashlib.sha256(second.content).hexdigest()}"',
            )
        )
        cond = http.get(public, headers={"if-none-match": etag})
        checks.append(
            (
                f"public file, If-None-Match answered 304 by the cache ({status(cond)})",
                cond.status_code == 304 and cond.headers.get("x-cache-status") == "HIT",
            )
        )
        for how, url, headers in (
            (
                "Authorization: Bearer",
                f"{base}{private_path}",
                {"authorization": f"Bearer {token}"},
            ),
            ("token URL /t/TOKEN/conda/...", f"{base}/t/{token}{private_path}", {}),
            ("token URL /conda/t/TOKEN/...", f"{base}/conda/t/{token}/{private_path[7:]}", {}),
        ):
            with_token = http.get(url, headers=headers)
            anonymous = http.get(f"{base}{private_path}")
            checks.append(
                (
                    f"private file with {how}: {status(with_token)}, then anonymous:"
                    f" {status(anonymous)}",
                    with_token.status_code == 200
                    and with_token.content == first.content
                    and "x-cache-status" not in with_token.headers
                    and anonymous.status_code == 401,
                )
            )
        revalidate = http.get(
            f"{base}{private_path}",
            headers={"authorization": f"Bearer {token}", "if-none-match": etag},
        )
        checks.append(
            (
                f"private file with a token and If-None-Match: Stockade answers"
                f" ({status(revalidate)})",
                revalidate.status_code == 304,
            )
        )
    keys = [
        line
        for entry in cache_dir.rglob("*")
        if entry.is_file()
        for line in entry.read_bytes()[:4096].split(b"\n")
        if line.startswith(b"KEY: ")
    ]
    checks.append(
        (
            f"cache entries: {len(keys)}, none of the private channel or a token URL",
            bool(keys) and not any(PRIVATE_CHANNEL.encode() in k or b"/t/" in k for k in keys),
        )
    )
    print("micro-cache checks:")
    for text, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")
    if not all(ok for _, ok in checks):
        sys.exit("micro-cache checks failed: this nginx configuration is not safe")


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
    for row in rows:
        counts = row.target.upstream.get(row.case)
        if counts:
            served = sorted(
                r.requests_per_s * (args.big_duration if "MB/s" in row.case else args.duration)
                for r in row.runs
            )
            print(
                f"  {row.target.label}, {row.case}: requests reaching Stockade per round"
                f" {counts} (of ~{served[len(served) // 2]:,.0f} served)"
            )
    print("\nwrk commands (host and port vary):")
    for case in CASES:
        print(f"  {next(r.runs[0].command for r in rows if r.case == case)}")
    print(f"stockade server: {stockade_cmd}")
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
