"""Air-gap bundles (issue 15): export and import of a generated bundle, beside ``zip -0``/``unzip``.

One run, the same files for every figure:

0. ``--gb`` GB (default 5, GB = 10^9 bytes) of package files, ``--file-mb`` MB each (default 50):
   valid ``.conda`` files whose ``pkg-*.tar.zst`` holds one incompressible payload (one random
   block shared by every file, with a per-file suffix, so every sha256 differs and making them is
   cheap). They go straight into the exporting side's blob store and into one public, signed
   channel (rows inserted with SQLAlchemy Core: servable, scan status clean; index published by
   ``PublicationService.run_pending``), whose ``noarch`` holds them all. Content trust is set up
   there as ``bench_signing.py`` does: a chain made with ``signing.builders.new_chain`` and
   installed with ``signing.chain.install``, the pkg_mgr key file in ``DATA_DIR/keys``.
1. Export: a live exporting server (uvicorn, one worker, SQLite) and the real CLI,
   ``stockade airgap export --channel C --out DIR`` run as a subprocess with ``STOCKADE_URL`` and
   ``STOCKADE_TOKEN`` (plan and sign on the server, then every member streamed over HTTP and
   written by the resumable zip writer). Figure: bundle bytes / wall time of the command.
   Reference: ``zip -0 -q`` of the same blob files into a new zip (and the same followed by
   ``sync``, since the writer and the blob store fsync and ``zip`` does not).
2. Import: ``unzip -q -o`` of the bundle into a new folder (reference), then a second live server
   (the air-gapped side: ``[airgap] trusted_keys`` = the exporter's pkg_mgr public key,
   ``settle_s = 0``; ``[mirror] heartbeat_s = 0.25`` so that the run's steps, polled every
   50 ms, show roughly where the time goes) with a mirror ``airgap:C`` (mode active): the bundle
   is renamed into its air-gap folder (no copy), the mirror is run now, and the figure is bundle
   bytes / the time from the run-now request to the run's final state (the run verifies the
   signature, copies every file out of the bundle checking its sha256, stores it, reads it as an
   untrusted package, publishes; the malware scans it queues happen after, not waited for).
   Once that server is stopped, ``inspect_package`` over the stored files in one thread shows
   what the run's reading of every new package (``record_abouts``) costs on its own.
3. Server memory: the RSS of each server process (tree) is sampled every 0.1 s while it exports
   or imports (once it has settled after start-up: a new server does one-time work first):
   start and peak are printed, and those of the CLI process. A second, smaller size
   (``--compare-gb``, default a tenth) runs the same way in the same invocation, so the peaks can
   be compared: flat means they do not grow with the bundle.

``sync`` runs before each timed step (not timed), so earlier writes are not flushed inside it.
Work files live under ``$STOCKADE_BENCH_DIR/airgap`` (default ``/tmp/stockade-bench``) and are
deleted at the end of each size (about 3 times ``--gb`` of disk is needed at the peak).

    .venv/bin/python benchmarks/bench_airgap.py                  # 5 GB and 0.5 GB (idle machine)
    .venv/bin/python benchmarks/bench_airgap.py --quick          # 0.25 GB and 0.025 GB, 10 MB files
    .venv/bin/python benchmarks/bench_airgap.py --gb 1 --file-mb 20 --compare-gb 0
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    ADMIN_PASSWORD,
    PYTHON,
    TIMESTAMP_MS,
    RssSampler,
    StockadeServer,
    _tar,
    banner,
    bench_dir,
    command_line,
    machine,
    stockade_server,
    tree_rss_mb,
)

CHANNEL = "airgap-bench"
SUBDIR = "noarch"
MB = 1_000_000
TARGET = 1.5
STOCKADE = Path(PYTHON).parent / "stockade"
LOGS = "the server logs in $STOCKADE_BENCH_DIR/airgap/logs"


@dataclass
class Sizes:
    files: list[tuple[str, str, int]] = field(default_factory=list)  # filename, sha256, size
    blob_paths: list[Path] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(size for _, _, size in self.files)


@dataclass
class Result:
    gb: float
    files: int
    bundle_bytes: int = 0
    figures: dict[str, float] = field(default_factory=dict)  # seconds
    rss: dict[str, tuple[float, float]] = field(default_factory=dict)  # start, peak MiB

    def rate(self, key: str) -> float:
        return self.bundle_bytes / self.figures[key] / MB


# --------------------------------------------------------------------------- tools


def require_tools() -> None:
    missing = [tool for tool in ("zip", "unzip") if shutil.which(tool) is None]
    if missing:
        sys.exit(
            f"bench_airgap: {' and '.join(missing)} not found on PATH; the reference figures "
            f"need them (Debian: apt-get install -y {' '.join(missing)})"
        )
    if not STOCKADE.is_file():
        sys.exit(f"bench_airgap: {STOCKADE} not found (install the project: pip install -e .)")


def sync() -> None:
    subprocess.run(["sync"], check=True)


# --------------------------------------------------------------------------- package files


class PackageMaker:
    """Valid ``.conda`` files of ``size`` bytes of payload, made from one random block."""

    def __init__(self, size: int) -> None:
        self.block = os.urandom(size)
        self.block_sha = hashlib.sha256(self.block)
        self.cctx = zstandard.ZstdCompressor(level=1)

    def make(self, i: int) -> tuple[str, bytes, dict[str, Any]]:
        name = f"airgap-bench-{i:05d}"
        stem = f"{name}-1.0-0"
        index = {
            "name": name,
            "version": "1.0",
            "build": "0",
            "build_number": 0,
            "depends": [],
            "license": "MIT",
            "subdir": SUBDIR,
            "timestamp": TIMESTAMP_MS,
        }
        suffix = i.to_bytes(8, "big") * 4  # the per-file bytes: every sha256 differs
        digest = self.block_sha.copy()
        digest.update(suffix)
        size = len(self.block) + len(suffix)
        member = f"share/airgap-bench/{name}.bin"
        info = tarfile.TarInfo(member)
        info.size, info.mtime, info.mode = size, TIMESTAMP_MS // 1000, 0o644
        padding = b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)
        compressor = self.cctx.compressobj()
        pkg = b"".join(
            [
                compressor.compress(info.tobuf(tarfile.PAX_FORMAT)),
                compressor.compress(self.block),
                compressor.compress(suffix + padding),
                compressor.flush(),
            ]
        )
        paths = {
            "paths": [
                {
                    "_path": member,
                    "path_type": "hardlink",
                    "sha256": digest.hexdigest(),
                    "size_in_bytes": size,
                }
            ],
            "paths_version": 1,
        }
        meta = {
            "info/index.json": json.dumps(index).encode(),
            "info/paths.json": json.dumps(paths).encode(),
            "info/about.json": json.dumps({"summary": f"{name} for benchmarks"}).encode(),
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("metadata.json", b'{"conda_pkg_format_version": 2}')
            zf.writestr(f"pkg-{stem}.tar.zst", pkg)
            zf.writestr(f"info-{stem}.tar.zst", self.cctx.compress(_tar(meta)))
        return f"{stem}.conda", buf.getvalue(), index


# --------------------------------------------------------------------------- exporting side


def build_exporter(data_dir: Path, count: int, file_mb: float) -> tuple[str, Sizes]:
    """The exporting side's database, blobs, published channel and keys; the pkg_mgr public key."""
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
    try:
        container.bootstrap()
        with transaction(container.factory) as session:
            channel = Channel(name=CHANNEL, privacy="public", scan_uploads="serve-first", sign=True)
            session.add(channel)
            session.flush()
            channel_id = channel.id
        public = _set_up_keys(container, data_dir)
        sizes = _store_packages(container, channel_id, count, int(file_mb * MB))
        started = time.perf_counter()
        container.publisher.run_pending()
        print(f"  index published in {time.perf_counter() - started:.1f}s", flush=True)
    finally:
        container.close()
    return public, sizes


def _set_up_keys(container: Any, data_dir: Path) -> str:
    from stockade.core.clock import utcnow
    from stockade.db.engine import transaction
    from stockade.signing.builders import new_chain
    from stockade.signing.chain import install
    from stockade.signing.keys import generate, public_hex, write_key

    root, key_mgr, pkg_mgr = generate(), generate(), generate()
    root_env, key_mgr_env = new_chain(root, key_mgr, public_hex(pkg_mgr), utcnow())
    with transaction(container.factory) as session:
        install(session, [root_env], key_mgr_env)
    keys = data_dir / "keys"
    keys.mkdir(mode=0o700)
    write_key(keys / f"pkg_mgr-{public_hex(pkg_mgr)[:12]}.key", pkg_mgr, None)
    return str(public_hex(pkg_mgr))


def _store_packages(container: Any, channel_id: int, count: int, size: int) -> Sizes:
    from sqlalchemy import insert

    from stockade.channels.models import Artifact
    from stockade.channels.publishing import request_publication
    from stockade.conda.archive import inspect_package
    from stockade.conda.repodata import encode_record
    from stockade.core.clock import now_ms, utcnow
    from stockade.db.engine import transaction

    started = time.perf_counter()
    maker = PackageMaker(size)
    staging = container.blobs.staging_dir()
    sizes, rows = Sizes(), []
    for i in range(count):
        filename, data, index = maker.make(i)
        sha = hashlib.sha256(data).hexdigest()
        path = staging / f"bench-{sha}"
        path.write_bytes(data)
        if i == 0:  # the files are real packages: the import reads them as such
            inspect_package(path, filename, limits=container.limits, now_ms=now_ms())
        container.blobs.put_file(path, sha)
        record = dict(index, sha256=sha, size=len(data), indexed_timestamp=TIMESTAMP_MS + i)
        record["md5"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
        rows.append(_row(channel_id, filename, record, encode_record(record), utcnow()))
        sizes.files.append((filename, sha, len(data)))
        sizes.blob_paths.append(container.blobs.local_path(sha))
    with transaction(container.factory) as session:
        session.execute(insert(Artifact), rows)
        request_publication(session, channel_id, SUBDIR)
    elapsed = time.perf_counter() - started
    print(f"  {count} packages, {sizes.total / MB:,.0f} MB, made and stored in {elapsed:.1f}s")
    return sizes


def _row(
    channel_id: int, filename: str, record: dict[str, Any], encoded: bytes, now: Any
) -> dict[str, Any]:
    return {
        "channel_id": channel_id,
        "subdir": SUBDIR,
        "filename": filename,
        "name": record["name"],
        "version": record["version"],
        "build": record["build"],
        "build_number": record["build_number"],
        "format": "conda",
        "sha256": record["sha256"],
        "md5": record["md5"],
        "size": record["size"],
        "record_json": encoded,
        "timestamp_ms": record["timestamp"],
        "indexed_timestamp": record["indexed_timestamp"],
        "license": record["license"],
        "summary": f"{record['name']} for benchmarks",
        "source": "upload",
        "scan_status": "clean",
        "servable": True,
        "created_at": now,
    }


def export(server: StockadeServer, out_dir: Path, result: Result) -> Path:
    """``stockade airgap export`` as a subprocess; the bundle it wrote."""
    env = dict(os.environ, STOCKADE_URL=server.url, STOCKADE_TOKEN=server.token())
    env["XDG_CONFIG_HOME"] = str(out_dir.parent / "cli-config")  # no stored profile
    env["COLUMNS"] = "250"  # its report on whole lines
    args = [str(STOCKADE), "airgap", "export", "--channel", CHANNEL, "--out", str(out_dir)]
    settle(server.pid)
    sync()
    with RssSampler(server.pid) as rss:
        started = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        with RssSampler(proc.pid) as cli_rss:
            output = proc.communicate()[0].decode()
        result.figures["export"] = time.perf_counter() - started
    if proc.returncode:
        sys.exit(f"bench_airgap: the export failed (exit {proc.returncode}):\n{output}")
    result.rss["exporting server"] = (rss.first, rss.peak)
    result.rss["export CLI"] = (cli_rss.first, cli_rss.peak)
    (bundle,) = out_dir.glob("*.zip")
    result.bundle_bytes = bundle.stat().st_size
    print(f"  export: {output.strip().splitlines()[0]}", flush=True)
    return bundle


def settle(pid: int, limit: float = 30.0) -> None:
    """Wait until the server's RSS is steady (a new server does one-time work after it starts,
    which has nothing to do with what is measured), at most ``limit`` seconds."""
    deadline = time.monotonic() + limit
    last = tree_rss_mb(pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_rss_mb(pid)
        if abs(now - last) < 1.0:
            return
        last = now


def cli_startup() -> float:
    """Seconds ``stockade airgap export --help`` takes: the CLI's start-up (imports), which is
    part of the export's wall time."""
    started = time.perf_counter()
    args = [str(STOCKADE), "airgap", "export", "--help"]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


# --------------------------------------------------------------------------- references


def zip_reference(sizes: Sizes, work: Path, result: Result) -> None:
    target = work / "reference.zip"
    root = sizes.blob_paths[0].parents[2]
    names = [str(p.relative_to(root)) for p in sizes.blob_paths]
    sync()
    started = time.perf_counter()
    subprocess.run(["zip", "-0", "-q", str(target), *names], cwd=root, check=True)
    result.figures["zip -0"] = time.perf_counter() - started
    sync()
    result.figures["zip -0 + sync"] = time.perf_counter() - started
    target.unlink()


def unzip_reference(bundle: Path, work: Path, result: Result) -> None:
    target = work / "unzipped"
    sync()
    started = time.perf_counter()
    subprocess.run(["unzip", "-q", "-o", str(bundle), "-d", str(target)], check=True)
    result.figures["unzip"] = time.perf_counter() - started
    sync()
    result.figures["unzip + sync"] = time.perf_counter() - started
    shutil.rmtree(target)


# --------------------------------------------------------------------------- air-gapped side


def import_bundle(data_dir: Path, bundle: Path, public: str, sizes: Sizes, result: Result) -> None:
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    (data_dir / "stockade.toml").write_text(
        f'[airgap]\ntrusted_keys = ["{public}"]\nsettle_s = 0\n\n[mirror]\nheartbeat_s = 0.25\n'
    )
    with (
        stockade_server(data_dir) as server,
        httpx.Client(base_url=server.url, auth=("admin", ADMIN_PASSWORD), timeout=60) as admin,
    ):
        made = admin.post(
            "/api/v1/mirrors",
            json={
                "name": "from-usb",
                "source": f"airgap:{CHANNEL}",
                "mode": "active",
                "subdirs": [SUBDIR],
                "schedule": "",
                "channel": CHANNEL,
            },
        )
        made.raise_for_status()
        folder = data_dir / "airgap"
        folder.mkdir(exist_ok=True)
        dropped = folder / bundle.name
        bundle.rename(dropped)
        settle(server.pid)
        sync()
        with RssSampler(server.pid) as rss:
            started = time.perf_counter()
            run = admin.post("/api/v1/mirrors/from-usb/runs")
            run.raise_for_status()
            seen: dict[str, list[float]] = {}
            final = _wait_run(admin, int(run.json()["id"]), started, seen)
            result.figures["import"] = time.perf_counter() - started
        result.rss["importing server"] = (rss.first, rss.peak)
        print(f"  import: run {final['state']}: {final.get('summary')}", flush=True)
        print(f"    steps, as polled: {_steps(seen, result.figures['import'])}", flush=True)
        if final["state"] != "completed" or not (folder / "applied" / bundle.name).is_file():
            sys.exit(f"bench_airgap: the bundle was not applied; see {LOGS}")
    stored = _stored(data_dir, sizes)
    if len(stored) != len(sizes.files):
        sys.exit(f"bench_airgap: {len(sizes.files) - len(stored)} files not stored by the import")
    result.figures["read alone"] = _read_alone(data_dir, sizes)


def _read_alone(data_dir: Path, sizes: Sizes) -> float:
    """Seconds ``inspect_package`` takes over the imported files in one thread, server stopped:
    the run reads every new package so (``mirroring.summaries.record_abouts``)."""
    from stockade.conda.archive import inspect_package
    from stockade.conda.package import ValidationLimits
    from stockade.core.clock import now_ms
    from stockade.settings import load_settings
    from stockade.storage.filesystem import FilesystemBlobStore

    blobs = FilesystemBlobStore(load_settings(data_dir=data_dir).blob_dir)
    limits = ValidationLimits()
    sync()
    started = time.perf_counter()
    for filename, sha, _ in sizes.files:
        inspect_package(blobs.path_for(sha), filename, limits=limits, now_ms=now_ms())
    return time.perf_counter() - started


def _stored(data_dir: Path, sizes: Sizes) -> list[str]:
    """The files of ``sizes`` the server at ``data_dir`` holds in its blob store."""
    from stockade.settings import load_settings
    from stockade.storage.filesystem import FilesystemBlobStore

    blobs = FilesystemBlobStore(load_settings(data_dir=data_dir).blob_dir)
    return [fn for fn, sha, _ in sizes.files if blobs.path_for(sha).is_file()]


def _wait_run(
    admin: httpx.Client, run_id: int, started: float, seen: dict[str, list[float]]
) -> dict[str, Any]:
    """Poll the run until it ends; ``seen``: step -> [first seen running, first seen ended]
    (seconds after ``started``; as fresh as the run's heartbeat)."""
    while True:
        run: dict[str, Any] = admin.get(f"/api/v1/runs/{run_id}").json()
        moment = time.perf_counter() - started
        for step in run.get("steps") or []:
            if step["state"] != "pending":
                times = seen.setdefault(step["name"], [moment])
                if step["state"] != "running" and len(times) == 1:
                    times.append(moment)
        if run["state"] in ("completed", "failed", "stopped"):
            return run
        time.sleep(0.05)


def _steps(seen: dict[str, list[float]], total: float) -> str:
    """The run's steps with their rough durations, and the gaps between them (e.g. between the
    download and the publication: reading every new package, ``record_abouts``)."""
    shown, last = [], 0.0
    for name, times in seen.items():
        begin, end = times[0], times[1] if len(times) > 1 else total
        if begin - last > 0.3:
            shown.append(f"(between {begin - last:.1f}s)")
        shown.append(f"{name} {end - begin:.1f}s")
        last = end
    return ", ".join(shown)


# --------------------------------------------------------------------------- one size


def run_size(gb: float, file_mb: float) -> Result:
    count = max(1, round(gb * 1000 / file_mb))
    banner(f"{gb:g} GB: {count} packages of {file_mb:g} MB")
    root = bench_dir("airgap")
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    out_dir = work / "out"
    out_dir.mkdir(parents=True)
    result = Result(gb, count)
    try:
        public, sizes = build_exporter(root / "up", count, file_mb)
        with stockade_server(root / "up") as server:
            bundle = export(server, out_dir, result)
        zip_reference(sizes, work, result)
        unzip_reference(bundle, work, result)
        _discard(root / "up", f"{gb:g}GB")  # the exporter's blobs: no longer needed
        import_bundle(root / "down", bundle, public, sizes, result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for side in ("up", "down"):
            _discard(root / side, f"{gb:g}GB")
    shown = ("export", "zip -0", "zip -0 + sync", "unzip", "unzip + sync", "import", "read alone")
    for key in shown:
        print(f"  {key:<14} {result.figures[key]:7.2f}s  {result.rate(key):7,.0f} MB/s")
    return result


def _discard(data_dir: Path, label: str) -> None:
    """Delete a server's data folder, keeping its log as ``logs/<label>-<folder>.log``."""
    log = data_dir / "server.log"
    if log.is_file():
        kept = bench_dir("airgap", "logs") / f"{label}-{data_dir.name}.log"
        shutil.copyfile(log, kept)
    shutil.rmtree(data_dir, ignore_errors=True)


def summary(results: list[Result], startup: float) -> None:
    banner("summary (MB = 10^6 bytes; bundle bytes / wall time)")
    head = f"  {'size':>7} {'files':>6} {'export':>8} {'zip -0':>8} {'ratio':>6}"
    head += f" {'import':>8} {'unzip':>8} {'ratio':>6}"
    print(head)
    for r in results:
        ex, zp = r.rate("export"), r.rate("zip -0")
        im, uz = r.rate("import"), r.rate("unzip")
        print(
            f"  {r.gb:>5g}GB {r.files:>6} {ex:>8,.0f} {zp:>8,.0f} {zp / ex:>5.2f}x"
            f" {im:>8,.0f} {uz:>8,.0f} {uz / im:>5.2f}x"
        )
    main = results[0]
    for step, ref in (("export", "zip -0"), ("import", "unzip")):
        ratio = main.figures[step] / main.figures[ref]
        verdict = "met" if ratio <= TARGET else "NOT met"
        print(f"  {step}: {ratio:.2f}x the time of {ref} (target <= {TARGET}x): {verdict}")
        ratio_sync = main.figures[step] / main.figures[f"{ref} + sync"]
        print(f"    against {ref} followed by sync: {ratio_sync:.2f}x")
    print(
        f"  the import run reads every new package in full after copying it (inspect_package);"
        f" that alone, one thread, server stopped: {main.figures['read alone']:.2f}s"
    )
    rest = main.figures["export"] - startup
    print(
        f"  CLI start-up (airgap export --help), part of the export time: {startup:.2f}s;"
        f" the export without it: {main.bundle_bytes / rest / MB:,.0f} MB/s"
    )
    banner("memory (RSS of the process tree, MiB: start -> peak)")
    for r in results:
        shown = ", ".join(f"{k} {a:,.0f} -> {b:,.0f}" for k, (a, b) in r.rss.items())
        print(f"  {r.gb:>5g}GB: {shown}")
    print(f"reproduce: {command_line()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gb", type=float, help="bundle size in GB (default 5; --quick 0.25)")
    parser.add_argument(
        "--file-mb", type=float, help="size of each package (default 50; --quick 10)"
    )
    parser.add_argument(
        "--compare-gb",
        type=float,
        help="a second, smaller size for memory (default gb/10; 0: none)",
    )
    parser.add_argument("--quick", action="store_true", help="0.25 GB of 10 MB files")
    args = parser.parse_args()
    require_tools()
    gb = args.gb or (0.25 if args.quick else 5.0)
    file_mb = args.file_mb or (10.0 if args.quick else 50.0)
    compare = gb / 10 if args.compare_gb is None else args.compare_gb
    free = shutil.disk_usage(bench_dir()).free / 1e9
    if free < 3.2 * gb:
        sys.exit(f"bench_airgap: {free:,.1f} GB free under {bench_dir()}; {3.2 * gb:,.1f} needed")
    banner("air-gap bundles: export and import vs zip -0 and unzip")
    print(f"machine: {machine()}")
    print(f"disk: {free:,.0f} GB free under {bench_dir()}")
    from stockade.core.logging import configure_logging

    configure_logging("warning")
    results = [run_size(gb, file_mb)]
    if compare > 0:
        results.append(run_size(compare, min(file_mb, compare * 1000 / 5)))
    summary(results, cli_startup())


if __name__ == "__main__":
    main()
