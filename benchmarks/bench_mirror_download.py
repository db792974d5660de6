"""Mirror download throughput (issue 4): Stockade's Downloader vs plain concurrent httpx.

Generates N files (random bytes, 1 to 8 MB mixed; default 400 files, ~1 GB) served from disk by
nginx on loopback (``benchmarks/nginx/static.conf``; the Python test upstream of
``tests/support/upstream.py`` with ``--server python``), then measures in the same run, rounds
interleaved:

(a) reference: plain ``httpx.AsyncClient`` with the same concurrency (``concurrency`` worker
    tasks pulling URLs from one list, connection pool of the same size), each body streamed with
    ``aiter_bytes()`` into its own file while its sha256 is computed in the event loop, the digest
    compared with the expected one. No fsync, no blob store: the cheapest way to land verified
    bytes on disk with httpx;
(b) ``stockade.mirroring.downloader.Downloader.download_all`` into a fresh ``FilesystemBlobStore``
    (verification of sha256 and size, temporary file, fsync and atomic rename by ``put_file``,
    ``exists`` check before each file).

Each round starts from empty target folders; the figure is total bytes / wall time, median of the
rounds, and the ratio (b)/(a) (target >= 0.80).

    .venv/bin/python benchmarks/bench_mirror_download.py                 # 400 files, ~1 GB, 3 rounds
    .venv/bin/python benchmarks/bench_mirror_download.py --quick         # 100 files, ~250 MB
    .venv/bin/python benchmarks/bench_mirror_download.py --total-mb 2000 --files 800 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

from _common import banner, bench_dir, command_line, free_port, machine, nginx, render  # noqa: E402

from stockade.mirroring.downloader import Downloader, DownloadItem  # noqa: E402
from stockade.mirroring.sources import SourceConfig  # noqa: E402
from stockade.storage.filesystem import FilesystemBlobStore  # noqa: E402

CHANNEL = "conda/mirror"
SUBDIR = "noarch"


def generate(root: Path, count: int, total_mb: int) -> list[dict[str, object]]:
    """``count`` files of random bytes, 1-8 MB mixed, ~``total_mb`` in all (kept between runs;
    ``root`` is one folder per ``count`` and ``total_mb``)."""
    folder = root / CHANNEL / SUBDIR
    manifest = root / "manifest.json"
    if manifest.is_file():
        return list(json.loads(manifest.read_text()))
    shutil.rmtree(root / CHANNEL, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = random.Random(4)
    weights = [rng.uniform(1, 8) for _ in range(count)]
    scale = total_mb * 1e6 / sum(weights)
    block = os.urandom(8 << 20)
    files = []
    for i, weight in enumerate(weights):
        size = int(weight * scale)
        offset = rng.randrange(len(block) - 64)
        data = (i.to_bytes(8, "big") + block[offset:] + block)[:size]
        name = f"pkg{i:04d}-1.0-0.conda"
        (folder / name).write_bytes(data)
        files.append({"filename": name, "size": size, "sha256": hashlib.sha256(data).hexdigest()})
    manifest.write_text(json.dumps(files))
    return files


@contextmanager
def upstream(root: Path, kind: str) -> Iterator[str]:
    if kind == "python":
        from tests.support.upstream import Upstream

        with Upstream(root) as up:
            yield up.url
        return
    import pwd

    workdir = bench_dir("mirror", "nginx")
    port = free_port()
    user = pwd.getpwuid(os.geteuid()).pw_name
    conf = render(HERE / "nginx" / "static.conf", port=port, root=root, prefix=workdir, user=user)
    with nginx(conf, workdir):
        yield f"http://127.0.0.1:{port}"


async def _reference(urls: list[tuple[str, str]], dest: Path, concurrency: int) -> int:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    pending = iter(urls)
    total = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal total
        for url, expected in pending:
            digest = hashlib.sha256()
            async with client.stream("GET", url) as response:
                response.raise_for_status()
                with (dest / url.rsplit("/", 1)[1]).open("wb") as fh:
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                        fh.write(chunk)
                        total += len(chunk)
            assert digest.hexdigest() == expected, url

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return total


def run_reference(base: str, files: list[dict[str, object]], work: Path, concurrency: int) -> float:
    dest = work / "reference"
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    urls = [(f"{base}/{CHANNEL}/{SUBDIR}/{f['filename']}", str(f["sha256"])) for f in files]
    started = time.perf_counter()
    total = asyncio.run(_reference(urls, dest, concurrency))
    elapsed = time.perf_counter() - started
    shutil.rmtree(dest)
    return total / elapsed / 1e6


def run_stockade(base: str, files: list[dict[str, object]], work: Path, concurrency: int) -> float:
    store_root = work / "blobs"
    shutil.rmtree(store_root, ignore_errors=True)
    blobs = FilesystemBlobStore(store_root)
    items = [
        DownloadItem(
            SUBDIR,
            str(f["filename"]),
            str(f["sha256"]),
            int(str(f["size"])),
            f"{base}/{CHANNEL}/{SUBDIR}/{f['filename']}",
        )
        for f in files
    ]
    downloader = Downloader(SourceConfig(f"{base}/{CHANNEL}"), blobs, concurrency=concurrency)
    started = time.perf_counter()
    summary = downloader.download_all(items)
    elapsed = time.perf_counter() - started
    assert not summary.failed, summary.failed[:3]
    assert summary.done == len(items)
    shutil.rmtree(store_root)
    return summary.bytes / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 files, ~250 MB")
    parser.add_argument("--files", type=int, default=None)
    parser.add_argument("--total-mb", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server", choices=("nginx", "python"), default="nginx")
    args = parser.parse_args()
    count = args.files or (100 if args.quick else 400)
    total_mb = args.total_mb or (250 if args.quick else 1000)
    banner("mirror download throughput: Downloader vs plain httpx")
    print(f"machine: {machine()}")
    root = bench_dir("mirror", f"upstream-{count}-{total_mb}")
    work = bench_dir("mirror", "work")
    started = time.perf_counter()
    files = generate(root, count, total_mb)
    size_mb = sum(int(str(f["size"])) for f in files) / 1e6
    print(
        f"files: {len(files)} ({size_mb:,.0f} MB, 1-8 MB each) in {time.perf_counter() - started:.1f}s"
    )
    print(
        f"upstream: {args.server} on loopback; concurrency {args.concurrency}; {args.rounds} rounds"
    )
    reference: list[float] = []
    ours: list[float] = []
    with upstream(root, args.server) as base:
        run_reference(base, files[:20], work, args.concurrency)  # warm the page cache and pools
        for round_no in range(1, args.rounds + 1):
            reference.append(run_reference(base, files, work, args.concurrency))
            ours.append(run_stockade(base, files, work, args.concurrency))
            print(
                f"round {round_no}: httpx {reference[-1]:,.0f} MB/s, "
                f"Downloader {ours[-1]:,.0f} MB/s, ratio {ours[-1] / reference[-1]:.2f}",
                flush=True,
            )
    ref, got = statistics.median(reference), statistics.median(ours)
    ratio = got / ref
    print(f"\nmedian: plain httpx {ref:,.0f} MB/s; Downloader {got:,.0f} MB/s")
    print(f"ratio {ratio:.2f} (target >= 0.80): {'met' if ratio >= 0.8 else 'NOT met'}")
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
