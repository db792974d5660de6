"""Publication benchmark: one upload into a big channel, until its new index is published.

Stockade side: a fresh SQLite database (``stockade.db.migrate.upgrade``) is filled through
SQLAlchemy Core with ``--records`` synthetic records in ``linux-64`` (``record_json`` made by
``encode_record``, ~3,500 package names) plus other subdirs, and published once. Then one real
package goes through the real upload path (``validate_upload``, blob store, ``UploadService.record``
and commit), and ``PublicationService.run_pending()`` publishes it. Reported: commit -> the subdir's
new ``repodata.json`` + ``.zst`` + shards + shard index switched in (the moment a server serves
them), and the whole ``run_pending`` (which then also rebuilds the channel's ``channeldata.json``).
This is done with 1 and then with 4 other subdirs populated. Finally the same upload goes through a
live server (HTTP PUT, in-process publisher: no coalescing pause after a quiet spell) while a client polls
``repodata.json.zst`` until the new ETag appears.

Reference: py-rattler's ``index_fs`` over the same channel as real files on disk (tiny real
``.conda`` files with the same names, versions and dependencies), after a full first run: its
incremental run taking in one new package (``target_platform=linux-64``, zst and shards on).

    .venv/bin/python benchmarks/bench_publication.py                # 100,000 records and files
    .venv/bin/python benchmarks/bench_publication.py --quick        # 10,000

The real-file channel is generated once per size and kept under $STOCKADE_BENCH_DIR (the first
100,000-file run also needs index_fs's first full run: a few minutes once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_PASSWORD,
    SyntheticPackage,
    banner,
    bench_dir,
    command_line,
    conda_bytes,
    machine,
    package_names,
    stockade_server,
    synthetic_packages,
    synthetic_record,
    tree_rss_mb,
)

CHANNEL = "big"
SUBDIR = "linux-64"
OTHER_SUBDIRS = ("noarch", "osx-64", "win-64", "linux-aarch64")
NAMES = 3_500
BATCH = 5_000


# --------------------------------------------------------------------------- Stockade database


def _rows(
    pkgs: list[SyntheticPackage], channel_id: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from stockade.conda.repodata import encode_record
    from stockade.core.clock import utcnow

    now = utcnow()
    artifacts, contents = [], []
    for i, pkg in enumerate(pkgs):
        record = synthetic_record(pkg, 1_700_000_000_000 + i)
        artifacts.append(
            {
                "channel_id": channel_id,
                "subdir": pkg.subdir,
                "filename": pkg.filename,
                "name": pkg.name,
                "version": pkg.version,
                "build": pkg.build,
                "build_number": pkg.build_number,
                "format": "conda",
                "sha256": record["sha256"],
                "md5": record["md5"],
                "size": record["size"],
                "record_json": encode_record(record),
                "timestamp_ms": record["timestamp"],
                "indexed_timestamp": record["indexed_timestamp"],
                "license": record["license"],
                "summary": f"{pkg.name} for benchmarks",
                "source": "upload",
                "scan_status": "clean",
                "servable": True,
                "created_at": now,
            }
        )
        run_exports = {"weak": [f"{pkg.name} >={pkg.version}"]} if i % 4 == 0 else {}
        contents.append(
            {
                "sha256": record["sha256"],
                "index_json": pkg.index(),
                "about_json": {"summary": f"{pkg.name} for benchmarks", "license": "BSD-3-Clause"},
                "run_exports_json": run_exports,
                "paths_json": [],
                "link_scripts": [],
                "unpacked_size": 1000,
            }
        )
    return artifacts, contents


def _insert(container: Any, pkgs: list[SyntheticPackage], channel_id: int) -> None:
    from sqlalchemy import insert

    from stockade.channels.models import Artifact, PackageContent
    from stockade.channels.publishing import request_publication
    from stockade.db.engine import transaction

    for start in range(0, len(pkgs), BATCH):
        artifacts, contents = _rows(pkgs[start : start + BATCH], channel_id)
        with transaction(container.factory) as session:
            session.execute(insert(PackageContent), contents)
            session.execute(insert(Artifact), artifacts)
    _mark_scanned(container, channel_id)
    with transaction(container.factory) as session:
        for subdir in {p.subdir for p in pkgs}:
            request_publication(session, channel_id, subdir)


def _mark_scanned(container: Any, channel_id: int) -> None:
    """A verdict of the current scanners for every synthetic row: without one a live server
    rescans them ("rules-changed"), finds no stored file, holds each as an error and republishes
    the subdir over and over (the synthetic rows have no files)."""
    from sqlalchemy import text

    from stockade.core.clock import utcnow
    from stockade.db.engine import transaction

    fingerprint = container.scanners.current().fingerprint
    with transaction(container.factory) as session:
        session.execute(
            text(
                "INSERT INTO artifact_scans (artifact_id, sha256, verdict, findings, errors,"
                " versions, fingerprint, scanned_at, duration_ms, bytes_read)"
                " SELECT id, sha256, 'clean', '[]', '{}', '{}', :fp, :now, 0, 0 FROM artifacts"
                " WHERE channel_id = :channel"
                " AND id NOT IN (SELECT artifact_id FROM artifact_scans)"
            ),
            {"fp": fingerprint, "now": utcnow(), "channel": channel_id},
        )


def _build_database(data_dir: Path, records: int) -> tuple[Any, int]:
    from stockade.channels.models import Channel
    from stockade.container import Container
    from stockade.db.engine import transaction
    from stockade.db.migrate import upgrade
    from stockade.settings import load_settings

    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    settings = load_settings(data_dir=data_dir, admin_password=ADMIN_PASSWORD)
    upgrade(settings.db_url)
    container = Container.build(settings)
    container.bootstrap()
    with transaction(container.factory) as session:
        # serve-first: no scanner runs (the latency a scan adds is bench_scanning.py's)
        channel = Channel(name=CHANNEL, privacy="public", scan_uploads="serve-first")
        session.add(channel)
        session.flush()
        channel_id = channel.id
    names = package_names(NAMES)
    started = time.perf_counter()
    _insert(container, synthetic_packages(records, names, SUBDIR), channel_id)
    print(f"  inserted {records:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
    return container, channel_id


def _populate_others(
    container: Any, channel_id: int, names: list[str], subdirs: tuple[str, ...], count: int
) -> None:
    for subdir in subdirs:
        _insert(container, synthetic_packages(count, names, subdir), channel_id)


def _upload_one(container: Any, package: Path) -> float:
    """The real upload path for one file; returns the time of the commit (perf_counter)."""
    from stockade.auth.service import UserService
    from stockade.channels.upload import UploadService, validate_upload
    from stockade.db.engine import transaction
    from stockade.storage.staging import stage_stream

    with package.open("rb") as fh:
        staged = stage_stream(fh, container.blobs.staging_dir(), package.name, max_size=1 << 30)
    upload = validate_upload(staged, container.limits)
    container.blobs.put_file(staged.path, staged.sha256)
    with transaction(container.factory) as session:
        user = UserService(session).get_by_name("admin")
        principal = UserService(session).principal_for(user, via="password")
        UploadService(session, container.blobs).record_all(
            principal, CHANNEL, [upload], force=False
        )
    return time.perf_counter()


def _new_package(workdir: Path, names: list[str], tag: str) -> Path:
    name = names[len(tag) % len(names)]
    pkg = SyntheticPackage(
        name, f"99.{int(time.time())}", f"h{tag}_0", 0, SUBDIR, ("python >=3.11",)
    )
    path = workdir / pkg.filename
    path.write_bytes(conda_bytes(pkg.index()))
    return path


def _measure_stockade(
    container: Any, channel_id: int, workdir: Path, names: list[str], tag: str
) -> tuple[float, float, float]:
    """(commit -> linux-64 index switched, commit -> run_pending done) in seconds, and the CPU
    seconds of the process (every thread) during ``run_pending``."""
    switched: list[float] = []
    hook: Callable[[int, str], None] | None = container.publisher.on_published

    def on_published(channel_id: int, subdir: str) -> None:
        switched.append(time.perf_counter())
        if hook is not None:
            hook(channel_id, subdir)

    container.publisher.on_published = on_published
    try:
        package = _new_package(workdir, names, tag)
        committed = _upload_one(container, package)
        cpu = time.process_time()
        container.publisher.run_pending()
        cpu = time.process_time() - cpu
        done = time.perf_counter()
    finally:
        container.publisher.on_published = hook
    assert len(switched) == 1, switched
    _check_published(container, channel_id, package.name)
    return switched[0] - committed, done - committed, cpu


def _check_published(container: Any, channel_id: int, filename: str) -> None:
    from stockade.conda.repodata import decode_record

    pointer = container.locator.index(channel_id, SUBDIR)
    document = decode_record(container.blobs.read_bytes(pointer.repodata))
    assert filename in document["packages.conda"], f"{filename} is not in the new repodata.json"


# --------------------------------------------------------------------------- rattler index_fs


def _real_channel(records: int, names: list[str]) -> Path:
    """``records`` tiny real .conda files in linux-64 (same packages as the database), indexed once."""
    from rattler.index import index_fs

    root = bench_dir("publication", f"rattler-{records}")
    subdir = root / SUBDIR
    marker = root / "indexed"
    if marker.is_file():
        return root
    shutil.rmtree(root)
    subdir.mkdir(parents=True)
    (root / "noarch").mkdir()
    started = time.perf_counter()
    for pkg in synthetic_packages(records, names, SUBDIR):
        (subdir / pkg.filename).write_bytes(conda_bytes(pkg.index()))
    print(
        f"  wrote {records:,} real .conda files in {time.perf_counter() - started:.0f}s", flush=True
    )
    started = time.perf_counter()
    asyncio.run(index_fs(root, target_platform=_platform(), write_zst=True, write_shards=True))
    print(f"  index_fs first full run: {time.perf_counter() - started:.1f}s", flush=True)
    marker.write_text("ok")
    return root


def _platform() -> Any:
    from rattler import Platform

    return Platform(SUBDIR)


def _measure_index_fs(root: Path, names: list[str], tag: str) -> float:
    from rattler.index import index_fs

    _new_package(root / SUBDIR, names, tag)
    started = time.perf_counter()
    asyncio.run(index_fs(root, target_platform=_platform(), write_zst=True, write_shards=True))
    return time.perf_counter() - started


# --------------------------------------------------------------------------- floor


def _floor(container: Any, channel_id: int, rounds: int) -> tuple[float, int, int]:
    """The floor of a publication: serialize the subdir's records (as stored, already encoded)
    into ``repodata.json`` and zstd the same bytes at the server's level; median seconds, and the
    sizes of the JSON and of the ``.zst``."""
    from sqlalchemy import select

    from stockade.channels.models import Artifact
    from stockade.conda.repodata import build_repodata_json, compress_zst
    from stockade.db.engine import transaction

    with transaction(container.factory) as session:
        rows = session.execute(
            select(Artifact.filename, Artifact.record_json).where(
                Artifact.channel_id == channel_id,
                Artifact.subdir == SUBDIR,
                Artifact.servable.is_(True),
            )
        ).all()
    tar_bz2 = [(fn, rec) for fn, rec in rows if fn.endswith(".tar.bz2")]
    conda = [(fn, rec) for fn, rec in rows if fn.endswith(".conda")]
    level = container.settings.publication.zstd_level
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        data = build_repodata_json(SUBDIR, tar_bz2, conda, ())
        zst = compress_zst(data, level)
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(data), len(zst)


# --------------------------------------------------------------------------- live server


def _settled_rss(pid: int, limit_s: float = 120.0) -> float:
    """The server's RSS once no process it started is running (a channeldata.json built in a
    process of its own; that process's memory counts while it runs, in the tree's RSS)."""
    from _common import _children

    deadline = time.monotonic() + limit_s
    while _children(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return tree_rss_mb(pid)


def _server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server process and its children so far, the ended
    ones included."""
    from _common import _children

    total = 0.0
    stack = [pid]
    tick = os.sysconf("SC_CLK_TCK")
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, and cutime, cstime: the processes it started that have ended (a
        # channeldata.json built in a process of its own)
        total += sum(int(f) for f in fields[11:15]) / tick
        stack.extend(_children(current))
    return total


def _measure_live(
    data_dir: Path,
    workdir: Path,
    names: list[str],
    rounds: int,
    workers: int,
    floor: Callable[[], float],
    settle: float = 12.0,
) -> dict[str, Any]:
    """Uploads by HTTP PUT to a live server, one at a time; seconds from the PUT being sent to the
    new ``.zst`` being served (a client polls its ETag), server CPU seconds per upload, and the
    server's RSS (all processes) idle, after each publication and a while after the last."""
    out: dict[str, Any] = {"latency": [], "cpu": [], "rss_after": [], "floor": []}
    with stockade_server(data_dir, workers=workers) as server:
        token = server.token()
        url = f"{server.url}/conda/{CHANNEL}/{SUBDIR}/repodata.json.zst"
        with httpx.Client(timeout=60) as client:
            etag = client.get(url).headers["etag"]
            time.sleep(2)
            out["rss_idle"] = _settled_rss(server.pid)
            for attempt in range(rounds):
                package = _new_package(workdir, names, f"live{attempt}")
                body = package.read_bytes()
                cpu = _server_cpu(server.pid)
                sent = time.perf_counter()
                response = client.put(
                    f"{server.url}/api/v1/channels/{CHANNEL}/files/{package.name}",
                    content=body,
                    headers={"authorization": f"Bearer {token}"},
                )
                response.raise_for_status()
                while (
                    answer := client.get(url, headers={"if-none-match": etag})
                ).status_code != 200:
                    if time.perf_counter() - sent > 120:
                        raise RuntimeError("the new index was not served within 120 s")
                    time.sleep(0.01)
                out["latency"].append(time.perf_counter() - sent)
                etag = answer.headers["etag"]
                time.sleep(settle)  # let the channeldata rebuild that follows finish
                out["cpu"].append(_server_cpu(server.pid) - cpu)
                out["rss_after"].append(_settled_rss(server.pid))
                out["floor"].append(floor())  # in this process, between two uploads
            out["command"] = server.command
    return out


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 records instead of 100,000")
    parser.add_argument("--records", type=int, help="records (and real files) in linux-64")
    parser.add_argument("--other", type=int, default=25_000, help="records in each other subdir")
    parser.add_argument("--repeat", type=int, default=3, help="measured uploads per configuration")
    parser.add_argument("--live-rounds", type=int, default=5, help="uploads to the live server")
    parser.add_argument(
        "--settle",
        type=float,
        default=12.0,
        help="seconds between two live uploads (the channeldata.json rebuild after each)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes of the server")
    parser.add_argument("--skip-rattler", action="store_true")
    parser.add_argument(
        "--live-only",
        action="store_true",
        help="reuse the database of an earlier run; measure only the live server and the floor",
    )
    args = parser.parse_args()
    if args.live_only:
        _live_only(args)
        return
    records = args.records or (10_000 if args.quick else 100_000)
    other = min(args.other, records)
    banner(f"publication: one upload into a channel of {records:,} records")
    print(f"machine: {machine()}; load average {_load()}")
    names = package_names(NAMES)
    workdir = bench_dir("publication", "uploads")
    data_dir = bench_dir("publication", "stockade")
    from stockade.core.logging import configure_logging

    configure_logging("warning")
    container, channel_id = _build_database(data_dir, records)
    _populate_others(container, channel_id, names, OTHER_SUBDIRS[:1], other)
    started = time.perf_counter()
    container.publisher.run_pending()
    elapsed = time.perf_counter() - started
    print(f"  first full publication (2 subdirs, {records + other:,} records): {elapsed:.1f}s")
    results: dict[str, list[tuple[float, float, float]]] = {}
    floors: list[float] = []
    for label, extra in (("1 other subdir", ()), ("4 other subdirs", OTHER_SUBDIRS[1:])):
        if extra:
            _populate_others(container, channel_id, names, extra, other)
            container.publisher.run_pending()
        runs = []
        for i in range(args.repeat):  # interleaved with the floor, round by round
            runs.append(_measure_stockade(container, channel_id, workdir, names, f"{label[0]}{i}"))
            floor, json_size, zst_size = _floor(container, channel_id, 1)
            floors.append(floor)
            switch, total, cpu = runs[-1]
            print(
                f"  stockade, {label:<16} commit -> index switched {switch:6.3f}s"
                f" (CPU {cpu:5.2f}s)  run_pending total {total:6.3f}s   floor {floor:6.3f}s",
                flush=True,
            )
        results[label] = runs
    print(f"  floor: repodata.json {json_size / 1e6:.1f} MB, .zst {zst_size / 1e6:.1f} MB")

    def floor_of(rounds: int) -> tuple[float, int, int]:
        return _floor(container, channel_id, rounds)

    live = _measure_live(
        data_dir,
        workdir,
        names,
        args.live_rounds,
        args.workers,
        lambda: floor_of(1)[0],
        args.settle,
    )
    _print_live(live)
    rattler: list[float] = []
    if not args.skip_rattler:
        root = _real_channel(records, names)
        rattler = [_measure_index_fs(root, names, f"r{i}") for i in range(args.repeat)]
        for value in rattler:
            print(f"  rattler index_fs incremental, one new package: {value:6.2f}s", flush=True)
    container.close()
    _summary(records, other, results, (floors, live), rattler)


def _live_only(args: argparse.Namespace) -> None:
    from sqlalchemy import select

    from stockade.channels.models import Channel
    from stockade.container import Container
    from stockade.core.logging import configure_logging
    from stockade.db.engine import transaction
    from stockade.settings import load_settings

    configure_logging("warning")
    banner("publication: live server only, on the database of an earlier run")
    print(f"machine: {machine()}; load average {_load()}")
    data_dir = bench_dir("publication", "stockade")
    container = Container.build(load_settings(data_dir=data_dir, admin_password=ADMIN_PASSWORD))
    with transaction(container.factory) as session:
        channel_id = session.scalar(select(Channel.id).where(Channel.name == CHANNEL))
    _mark_scanned(container, channel_id)  # databases of runs before it was done at insert
    names = package_names(NAMES)
    live = _measure_live(
        data_dir,
        bench_dir("publication", "uploads"),
        names,
        args.live_rounds,
        args.workers,
        lambda: _floor(container, channel_id, 1)[0],
        args.settle,
    )
    container.close()
    _print_live(live)
    _summary(0, 0, {}, (live["floor"], live), [])


def _print_live(live: dict[str, Any]) -> None:
    rows = zip(live["latency"], live["cpu"], live["rss_after"], live["floor"], strict=True)
    for value, cpu, rss, floor in rows:
        print(
            f"  live server: PUT sent -> new .zst served {value:.3f}s (floor {floor:.3f}s),"
            f" server CPU {cpu:.2f}s, RSS after {rss:.0f} MiB (idle {live['rss_idle']:.0f} MiB)",
            flush=True,
        )


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def _summary(
    records: int,
    other: int,
    results: dict[str, list[tuple[float, float, float]]],
    measured: tuple[list[float], dict[str, Any]],
    rattler: list[float],
) -> None:
    floors, live = measured
    banner("summary (medians)")
    ref = statistics.median(rattler) if rattler else None
    floor = statistics.median(floors)
    for label, runs in results.items():
        switch = statistics.median(r[0] for r in runs)
        total = statistics.median(r[1] for r in runs)
        cpu = statistics.median(r[2] for r in runs)
        line = (
            f"  stockade, {records:,} records + {label} of {other:,}:"
            f" index switched {switch:.3f}s (CPU {cpu:.2f}s), run_pending {total:.3f}s;"
            f" floor {floor:.3f}s = {switch / floor:.1f}x the floor"
        )
        if ref:
            line += f"; 1/{ref / switch:.0f} of index_fs"
        print(line)
    latency = live["latency"]
    warm = latency[1:] or latency
    verdict = "MET" if statistics.median(warm) <= 1.0 else "NOT met"
    print(
        "  live server, PUT sent -> new .zst served (uploads apart: no coalescing pause):"
        f" {statistics.median(warm):.3f}s [{min(warm):.3f}-{max(warm):.3f}] warmed up,"
        f" {latency[0]:.3f}s first after start; floor beside it"
        f" {statistics.median(live['floor']):.3f}s;"
        f" target <= 1 s: {verdict}"
    )
    idle, after = live["rss_idle"], live["rss_after"][-1]
    verdict = "MET" if after - idle <= 100 else "NOT met"
    print(
        f"  live server RSS: idle {idle:.0f} MiB, after {len(latency)} publications {after:.0f}"
        f" MiB (+{after - idle:.0f}); target within 100 MiB of idle: {verdict};"
        f" server CPU per upload {statistics.median(live['cpu'][1:] or live['cpu']):.2f}s"
    )
    if ref:
        print(f"  rattler index_fs incremental over {records:,} real files: {ref:.2f}s")
    print(f"  load average at the end: {_load()}")
    print(f"  server: {live['command']}")
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
