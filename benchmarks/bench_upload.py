"""Upload benchmark: packages/s for small packages, MB/s and server memory for one 500 MB package.

A real Stockade server (uvicorn, ``--workers 2``) on loopback; clients are httpx:

- small packages (tiny real ``.conda`` files): multipart POST with one file per request and with
  50 files per request, and streamed PUT with one file per request, from 4 concurrent clients;
  every upload is fully validated, stored and recorded, and asks for a publication;
- one 500 MB ``.conda`` (a pkg member of incompressible bytes, built here once) sent as a streamed
  PUT in 1 MiB chunks: MB/s from the first byte sent to the 201, and the server's RSS sampled
  all along (it must stay flat: the body is streamed to a staging file and validated from disk).

    .venv/bin/python benchmarks/bench_upload.py            # 400 small packages + 500 MB
    .venv/bin/python benchmarks/bench_upload.py --quick    # 100 small packages + 200 MB
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RssSampler,
    SyntheticPackage,
    banner,
    bench_dir,
    command_line,
    conda_bytes,
    machine,
    stockade_server,
    write_big_conda,
)

CLIENTS = 4


def _small_packages(count: int, tag: str) -> list[tuple[str, bytes]]:
    out = []
    for i in range(count):
        pkg = SyntheticPackage(f"bench-{tag}-{i % 40}", f"1.{i}", "0", 0, "noarch", ("python",))
        out.append((pkg.filename, conda_bytes(pkg.index())))
    return out


def _channel(url: str, token: str, name: str) -> None:
    response = httpx.post(
        f"{url}/api/v1/channels",
        json={"name": name, "privacy": "public"},
        headers={"authorization": f"Bearer {token}"},
    )
    response.raise_for_status()


MODES = (
    ("multipart, 1 file/request", "mp", 1),
    ("multipart, 50 files/request", "mp50", 50),
    ("PUT, 1 file/request", "put", 1),
)


def _small(url: str, token: str, count: int) -> list[tuple[str, float]]:
    """Upload ``count`` small packages per mode from CLIENTS threads; packages/s per mode."""
    headers = {"authorization": f"Bearer {token}"}
    clients = threading.local()
    made: list[httpx.Client] = []

    def client() -> httpx.Client:
        if not hasattr(clients, "http"):
            clients.http = httpx.Client(headers=headers, timeout=120)
            made.append(clients.http)
        return clients.http  # type: ignore[no-any-return]

    def send(channel: str, kind: str, batch: list[tuple[str, bytes]]) -> None:
        base = f"{url}/api/v1/channels/{channel}/files"
        if kind == "put":
            for filename, data in batch:
                client().put(f"{base}/{filename}", content=data).raise_for_status()
        else:
            files = [("files", (fn, data, "application/octet-stream")) for fn, data in batch]
            client().post(base, files=files).raise_for_status()

    results = []
    stamp = str(int(time.time()))
    for mode, kind, per_request in MODES:
        channel = f"{kind}-{stamp}"
        _channel(url, token, channel)
        packages = _small_packages(count, kind)
        jobs = [packages[i : i + per_request] for i in range(0, count, per_request)]
        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(lambda batch, ch=channel, k=kind: send(ch, k, batch), jobs))
        elapsed = time.perf_counter() - started
        rate = count / elapsed
        results.append((mode, rate))
        print(
            f"  small packages, {mode:<28} {count} in {elapsed:5.2f}s = {rate:6.1f} packages/s",
            flush=True,
        )
    for http in made:
        http.close()
    return results


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _big(url: str, token: str, path: Path, pid: int) -> tuple[float, float, float, float]:
    name = f"big-{int(time.time())}"
    _channel(url, token, name)
    size = path.stat().st_size
    with RssSampler(pid, every=0.05) as rss:
        started = time.perf_counter()
        response = httpx.put(
            f"{url}/api/v1/channels/{name}/files/{path.name}",
            content=_chunks(path),
            headers={"authorization": f"Bearer {token}", "content-length": str(size)},
            timeout=600,
        )
        elapsed = time.perf_counter() - started
    response.raise_for_status()
    return size / elapsed / 1e6, elapsed, rss.first, rss.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 small packages, a 200 MB package")
    parser.add_argument("--small", type=int, help="small packages per mode")
    parser.add_argument("--big-mb", type=int, help="size of the big package's payload in MB")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    count = args.small or (100 if args.quick else 400)
    big_mb = args.big_mb or (200 if args.quick else 500)
    banner("upload: small packages/s, one big package MB/s")
    print(f"machine: {machine()}")
    big = bench_dir("upload", "packages") / f"bigpkg{big_mb}-1.0-0.conda"
    if not big.is_file():
        started = time.perf_counter()
        write_big_conda(big, f"bigpkg{big_mb}", big_mb * 10**6)
        print(
            f"  built {big.name} ({big.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.0f}s"
        )
    data_dir = bench_dir("upload", "data")
    shutil.rmtree(data_dir)  # a fresh server every run
    with stockade_server(data_dir, workers=args.workers) as server:
        token = server.token()
        small = _small(server.url, token, count)
        mb_s, elapsed, rss_first, rss_peak = _big(server.url, token, big, server.pid)
        size_mb = big.stat().st_size / 1e6
        rss = f"server RSS {rss_first:.0f} -> peak {rss_peak:.0f} MiB"
        print(
            f"  big package {size_mb:.0f} MB, streamed PUT: {elapsed:.1f}s = {mb_s:.0f} MB/s; {rss}"
        )
        command = server.command
    banner("summary")
    for mode, rate in small:
        print(f"  small packages, {mode:<28} {rate:6.1f} packages/s ({CLIENTS} clients)")
    print(f"  one {size_mb:.0f} MB package, streamed PUT: {mb_s:.0f} MB/s, {rss}")
    print(f"stockade server: {command}")
    print(f"reproduce: {command_line()}")


if __name__ == "__main__":
    main()
