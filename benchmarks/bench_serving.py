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

    .venv/bin/python benchmarks/bench_serving.py            # full run, ~4 minutes
    .venv/bin/python benchmarks/bench_serving.py --quick    # shorter wrk runs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RssSampler,
    StockadeServer,
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
        pairs = [(p.filename, encode_record(synthetic_record(p, 1_700_000_000_000 + i))) for i, p in enumerate(pkgs)]
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
class Row:
    target: str
    case: str
    result: WrkResult
    rss: str = ""


def _measure(label: str, base: str, files: Files, args: argparse.Namespace, pid: int | None) -> list[Row]:
    rows: list[Row] = []
    small = f"{base}/conda/{CHANNEL}/{SMALL_SUBDIR}/repodata.json.zst"
    big = f"{base}/conda/{CHANNEL}/{BIG_SUBDIR}/repodata.json"
    size = int(httpx.head(small).headers["content-length"])
    assert size == files.small_size, (size, files.small_size)
    # warm caches (bytes cache, locator, page cache)
    wrk(small, duration=1, connections=4)
    result = wrk(small, duration=args.duration, connections=args.connections)
    rows.append(Row(label, "1 MB .zst full GET", result))
    etag = _etag(small)
    result = wrk(small, duration=args.duration, connections=args.connections, headers=[f"If-None-Match: {etag}"])
    rows.append(Row(label, "1 MB .zst 304", result))
    if pid is not None:
        with RssSampler(pid) as rss:
            result = wrk(big, duration=args.big_duration, connections=args.big_connections, timeout="60s")
        rows.append(Row(label, "380 MB .json MB/s", result, f"{rss.first:.0f} -> peak {rss.peak:.0f} MiB"))
    else:
        result = wrk(big, duration=args.big_duration, connections=args.big_connections, timeout="60s")
        rows.append(Row(label, "380 MB .json MB/s", result))
    for row in rows[-3:]:
        r = row.result
        extra = f"  rss {row.rss}" if row.rss else ""
        bad = f"  NON-2xx/3xx={r.non_2xx}" if r.non_2xx and "304" not in row.case else ""
        print(
            f"  {label:<22} {row.case:<20} {r.requests_per_s:>10,.0f} req/s {r.transfer_mb_s:>9,.0f} MB/s"
            f"  p50 {r.latency_p50_ms:.2f} ms  p99 {r.latency_p99_ms:.2f} ms{bad}{extra} {r.errors}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 s wrk runs instead of 10 s")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--big-connections", type=int, default=4)
    parser.add_argument("--skip-accel", action="store_true", help="skip the nginx + X-Accel-Redirect run")
    args = parser.parse_args()
    args.duration = 5 if args.quick else 10
    args.big_duration = 8 if args.quick else 15
    ensure_tools("nginx", "wrk")
    banner("serving: Stockade vs nginx")
    print(f"machine: {machine()}")
    data_dir = bench_dir("serving", "data")
    files = _build_blobs(data_dir)
    print(f"files: repodata.json.zst {files.small_size / 1e6:.2f} MB, repodata.json {files.big_size / 1e6:.0f} MB")
    root = _static_root(data_dir, files)
    rows: list[Row] = []
    workdir = bench_dir("serving", "nginx-static")
    port = free_port()
    with nginx(render(HERE / "nginx" / "static.conf", port=port, root=root, prefix=workdir, user=_user()), workdir):
        rows += _measure("nginx (static files)", f"http://127.0.0.1:{port}", files, args, None)
    with stockade_server(data_dir, workers=args.workers) as server:
        rows += _measure(f"stockade ({args.workers} workers)", server.url, files, args, server.pid)
        stockade_cmd = server.command
    if not args.skip_accel:
        rows += _accel(data_dir, files, args)
    _summary(rows, stockade_cmd)


def _accel(data_dir: Path, files: Files, args: argparse.Namespace) -> list[Row]:
    upstream = free_port()
    extra = {"STOCKADE_X_ACCEL_REDIRECT": "/_blobs/"}
    workdir = bench_dir("serving", "nginx-accel")
    port = free_port()
    with stockade_server(data_dir, workers=args.workers, extra_env=extra, port=upstream) as server:
        conf = render(
            HERE / "nginx" / "x-accel.conf",
            port=port,
            upstream=f"127.0.0.1:{upstream}",
            blobs=f"{data_dir.resolve()}/blobs/",
            prefix=workdir,
            user=_user(),
        )
        with nginx(conf, workdir):
            return _measure("nginx + X-Accel", f"http://127.0.0.1:{port}", files, args, server.pid)


def _summary(rows: list[Row], stockade_cmd: str) -> None:
    banner("summary (ratio to nginx static in the same run)")
    base = {row.case: row.result for row in rows if row.target.startswith("nginx (static")}
    targets = {"1 MB .zst full GET": 0.5, "1 MB .zst 304": 0.2, "380 MB .json MB/s": 0.5}
    for row in rows:
        ref = base[row.case]
        metric = "transfer_mb_s" if "MB/s" in row.case else "requests_per_s"
        value, ref_value = getattr(row.result, metric), getattr(ref, metric)
        ratio = value / ref_value if ref_value else 0.0
        unit = "MB/s" if "MB/s" in row.case else "req/s"
        goal = 0.8 if row.target.startswith("nginx + X-Accel") else targets[row.case]
        verdict = "" if row.target.startswith("nginx (static") else f"  target >= {goal}x: {'MET' if ratio >= goal else 'NOT met'}"
        print(f"  {row.target:<22} {row.case:<20} {value:>10,.0f} {unit:<5} {ratio:5.2f}x{verdict}")
    print("\nwrk commands (URL varies):")
    for case in dict.fromkeys(r.case for r in rows):
        print(f"  {next(r.result.command for r in rows if r.case == case)}")
    print(f"stockade server: {stockade_cmd}")
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
